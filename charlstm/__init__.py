"""charlstm: character-level text generation with an LSTM in JAX."""

__version__ = "0.1.0"
