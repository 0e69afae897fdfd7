"""The pure JAX core: no files, clocks or printing.

`cells` (what the cells share, and why their backward passes are written by
hand), `lstm` (the textbook LSTM), `ln_lstm` (the layer-normalised LSTM),
`gru` (the GRU), `model` (embedding, recurrent layers, head), `state` (train
state, optimizer, schedule), `step` (the jitted `train_step(state, batch, hyper) ->
(state, metrics)`, `hyper` the traced schedule, clip and decay), `sampler` (generation in one compiled loop),
`generation` (texts from the sampler), `scorer` (loss over a text with
carried state) and `sharding` (how the state and batch are laid out over a
device mesh).
"""
