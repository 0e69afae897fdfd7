"""Text in, ids out: the vocabulary (`vocab`), finding a corpus's files
(`corpus`), whether a file is text and reading it (`textfile`; in a
stream: `scan`), the corpus cache and its mapped token files
(`tokens`), what a run records of its corpus (`manifest`), and cutting
the ids into the streams and windows training reads (`streams`).
NumPy (and JAX only to register a batch as a pytree); nothing here knows
about the model."""
