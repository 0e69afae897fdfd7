"""The pure JAX core: no files, clocks or printing.

`cells` (the LSTM, layer-normalised LSTM and GRU with their backward passes),
`model` (embedding, recurrent layers, head), `state` (train state, optimizer,
schedule), `step` (the jitted `train_step(state, batch) -> (state, metrics)`),
`sampler`, `scorer` (loss over a text with carried state) and `sharding` (how
the state and batch are laid out over a device mesh).
"""
