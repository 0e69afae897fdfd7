"""Text in, ids out: the vocabulary (`vocab`), the files a user names
(`corpus`; which of a folder's files are read: `folder`), whether a file
is text and reading it (`textfile`; in a stream: `scan`), a corpus prepared
(`tokens`) and encoded into its mapped token file (`tokenfile`), the
cache of those files (`cache`), what a run records of its corpus
(`manifest`), cutting the ids into the streams and windows training
reads (`streams`), and charlstm's own files written whole, never half
(`saving`).
NumPy (and JAX only to register a batch as a pytree); nothing here knows
about the model."""
