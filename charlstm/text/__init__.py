"""Text in, ids out: the vocabulary (`vocab`), reading corpora (`corpus`)
and cutting them into the streams and windows training reads (`streams`).
NumPy (and JAX only to register a batch as a pytree); nothing here knows
about the model."""
