"""Splitting a text and cutting it into training windows.

Batching follows char-rnn: the training text is cut into B contiguous
streams, and step s reads window (s mod W) of every stream, where W windows
of T characters fit in one stream. The LSTM's (h, c) is carried from one
window to the next, so the model sees context far longer than T while
gradients are truncated at T (truncated backprop through time). The carry is
reset when a pass over the data wraps around, and also every R windows in
each stream, staggered so that about B/R streams start afresh at every step:
text is generated from a zero state, and a model that only ever saw zero
states once per pass starts every sample with garbage. Because the window is a pure
function of the step number, the data position needs no state of its own,
and a resumed run reads exactly the characters an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import jax
import numpy as np

from charlstm.errors import CorpusError
from charlstm.flags import flag
from charlstm.text.vocab import Vocab

Text = TypeVar("Text", str, np.ndarray)


def split(ids: Text, val_fraction: float) -> tuple[Text, Text]:
    """(N,) ids, or a text -> the training part and the held-out tail."""
    n_val = int(len(ids) * val_fraction)
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Batch:
    inputs: np.ndarray  # (B, T) int32
    targets: np.ndarray  # (B, T) int32: inputs shifted one character on
    reset: np.ndarray  # (B,) bool: streams whose carried state is zeroed before this window


class Streams:
    """B contiguous streams over `ids`, read T characters at a time."""

    def __init__(self, ids: np.ndarray, batch: int, seq_len: int, reset_windows: int = 0, what: str = "training text"):
        stream_len = (len(ids) - 1) // batch
        self.windows = stream_len // seq_len  # W
        if self.windows < 1:
            need = batch * seq_len + 1
            raise CorpusError(
                f"{what} is too short: {len(ids)} characters, but {batch} streams of "
                f"{seq_len} need at least {need}; use a longer text or a smaller "
                f"{flag('batch_size')} / {flag('seq_len')}"
            )
        used = batch * stream_len
        self._inputs = ids[:used].reshape(batch, stream_len)  # (B, S)
        self._targets = ids[1 : used + 1].reshape(batch, stream_len)  # (B, S)
        self.seq_len = seq_len
        self.batch = batch
        self.reset_windows = reset_windows  # R; 0: only at the start of a pass
        self._offsets = (np.arange(batch) * reset_windows) // batch if reset_windows else None  # (B,)

    def window(self, step: int, rows: slice = slice(None)) -> Batch:
        """The batch read at `step`: window (step mod W) of every stream, or
        only of the streams in `rows` (one process's share of a multi-process run)."""
        w = step % self.windows
        cols = slice(w * self.seq_len, (w + 1) * self.seq_len)
        reset = np.full(self.batch, w == 0)
        if self._offsets is not None:
            reset |= (w + self._offsets) % self.reset_windows == 0
        return Batch(self._inputs[rows, cols], self._targets[rows, cols], reset[rows])

    def __len__(self) -> int:
        """Windows in one pass."""
        return self.windows


def layout(
    text: str, vocab: Vocab, batch: int, seq_len: int, val_fraction: float, reset_chars: int = 0
) -> tuple[Streams, np.ndarray]:
    """Training streams and the validation ids (scored by `core/scorer.py`)."""
    ids = vocab.encode(text)
    train_ids, val_ids = split(ids, val_fraction)
    # Resets happen between windows: reset_chars is rounded down to whole
    # windows, and is at least one (a --seq-len beyond it resets every window).
    train = Streams(train_ids, batch, seq_len, max(1, reset_chars // seq_len) if reset_chars else 0)
    if len(val_ids) < 2:
        raise CorpusError(
            f"validation split is too short: {len(val_ids)} characters ({flag('val_fraction')} {val_fraction:g} of "
            f"{len(ids)}); it needs at least 2: use a larger {flag('val_fraction')} or a longer text"
        )
    return train, val_ids
