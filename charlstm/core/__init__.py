"""The pure JAX core: no files, clocks or printing.

`cells` (the LSTM with its backward pass, and what the other cells share),
`ln_lstm` (the layer-normalised LSTM), `gru` (the GRU), `model` (embedding,
recurrent layers, head), `state` (train state, optimizer, schedule), `step`
(the jitted `train_step(state, batch) -> (state, metrics)`), `sampler`,
`generation` (texts from the sampler), `generation` (texts from it),
`scorer` (loss over a text with carried state) and `sharding` (how the state
and batch are laid out over a device mesh).
"""
