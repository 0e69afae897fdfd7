"""Text in, ids out: the vocabulary (`vocab`), reading corpora (`corpus`)
and cutting them into the streams and windows training reads (`streams`).
NumPy only; nothing here knows about the model."""
