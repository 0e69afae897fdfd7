"""Looking inside a trained model: what its gates and cells do on a text.

`record` (the gates, states and predictions per character, as the model
records them), `features` (text features and the units that follow them) and
`page` (the self-contained HTML page that shows them).

(`charlstm.introspect` is a subpackage; the standard library's `inspect` module,
which JAX and dataclasses use, is untouched: absolute imports never reach it.)
"""
