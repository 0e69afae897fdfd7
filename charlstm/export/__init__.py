"""Taking a trained model out of charlstm: portable weights and a page that writes.

`weights` writes the parameters as a `.safetensors` file plus a JSON file
that says what they are (configuration, vocabulary, tensor names and
shapes), readable with NumPy alone; `page` writes one self-contained HTML
file that runs the model in a browser.
"""
