"""Splitting a corpus into training and validation text, and cutting the
training text into windows.

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

A corpus of several documents is one token file in which every document
starts with the boundary symbol (text/vocab.py), and reading that symbol
zeroes the model's state (core/model.py): windows may run from one document
into the next, but nothing the model computes does. The training and
validation texts are lists of ranges of that file (`Segments`), read where
they lie, never copied whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import jax
import numpy as np

from charlstm.errors import CorpusError
from charlstm.flags import flag
from charlstm.text.tokenfile import Tokens

Text = TypeVar("Text", str, np.ndarray)
Range = tuple[int, int]  # [start, stop) of the token file

# With this many documents or more, validation holds out whole documents
# (at least two at the default --val-fraction) rather than a share of each.
MANY_DOCUMENTS = 20
# Windows read between releases of the token file's pages (Tokens.release).
RELEASE_EVERY = 1024


def split(ids: Text, val_fraction: float) -> tuple[Text, Text]:
    """(N,) ids, or a text -> the training part and the held-out tail."""
    n_val = int(len(ids) * val_fraction)
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


class Segments:
    """Ranges of a token array read as one sequence of int32 ids, in place."""

    def __init__(
        self, ids: np.ndarray, ranges: Sequence[Range], check: Callable[[np.ndarray], np.ndarray] | None = None
    ):
        self.ids = ids
        self._check = check  # applied to every read (Tokens.checked: a damaged file is refused)
        self.ranges = _merged(ranges)
        lengths = np.array([b - a for a, b in self.ranges], np.int64)
        self._first = np.array([a for a, _ in self.ranges], np.int64)  # (R,)
        self._offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # (R + 1,)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: Any) -> np.ndarray:
        """Ids at positions `index` (an int array of any shape, or a slice), as int32."""
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        positions = np.asarray(index, np.int64)
        if len(self.ranges) == 1:
            out = np.asarray(self.ids[self._first[0] + positions], np.int32)
        else:
            segment = np.searchsorted(self._offsets, positions, side="right") - 1
            out = np.asarray(self.ids[self._first[segment] + positions - self._offsets[segment]], np.int32)
        return out if self._check is None else self._check(out)


def _merged(ranges: Sequence[Range]) -> list[Range]:
    out: list[Range] = []
    for a, b in ranges:
        if b <= a:
            continue
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out or [(0, 0)]


@dataclass(frozen=True)
class Split:
    """Which part of a corpus trains and which validates."""

    kind: str  # "tail" (one document's end), "tails" (each document's), "documents" (whole ones) or "files"
    train: list[Range]
    val: list[Range]
    held_out: tuple[int, ...] = ()  # the documents held out whole ("documents"), by index


def split_documents(tokens: Tokens, val_fraction: float, hashes: Sequence[str], copies_together: bool = True) -> Split:
    """The validation text: the --val-file documents if there are any; else,
    with MANY_DOCUMENTS or more, whole documents, chosen in an order fixed by
    their content's sha256 (`hashes`) until they hold `val_fraction` of the
    text (documents that would take it past 1.5 times that are passed over;
    copies of one text are held out or trained on together, never split, so
    that validation never scores a text training read);
    else the last `val_fraction` of each document. `copies_together` False:
    one copy at a time, as runs made before 2026-12-05 were split (their
    corpus entry says which, `manifest.summary`): a resume or an eval of
    such a run must read the split it trained and validated on."""
    n = tokens.train_docs
    starts, lengths = tokens.starts, tokens.lengths
    ends = starts + lengths
    if n < len(starts):
        return Split("files", [(0, int(ends[n - 1]))], [(int(starts[n]), int(ends[-1]))])
    mark = int(tokens.boundary)
    chars = lengths - mark
    if n >= MANY_DOCUMENTS:
        target = val_fraction * float(chars.sum())
        copies: dict[str | int, list[int]] = {}
        for k in sorted(range(n), key=lambda k: (hashes[k], k)):
            copies.setdefault(hashes[k] if copies_together else k, []).append(k)
        held, got = [], 0
        for group in copies.values():  # in the hashes' order
            if got >= target:
                break
            size = int(chars[group].sum())
            if got + size <= 1.5 * target:
                held += group
                got += size
        if held and got >= 0.5 * target:
            kept = set(held)
            pieces = [
                [(int(starts[k]), int(ends[k])) for k in range(n) if (k in kept) == side] for side in (False, True)
            ]
            return Split("documents", pieces[0], pieces[1], tuple(sorted(held)))
    train, val = [], []
    for k in range(n):
        n_val = int(chars[k] * val_fraction)
        train.append((int(starts[k]), int(ends[k]) - n_val))
        if n_val:
            # A held-out end is read like a document, after the boundary symbol.
            val += [(int(starts[k]), int(starts[k]) + mark), (int(ends[k]) - n_val, int(ends[k]))]
    return Split("tail" if n == 1 else "tails", train, val)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Batch:
    inputs: np.ndarray  # (B, T) int32
    targets: np.ndarray  # (B, T) int32: inputs shifted one character on
    reset: np.ndarray  # (B,) bool: streams whose carried state is zeroed before this window


class Streams:
    """B contiguous streams over `ids` (an array, or Segments of a token file), read T characters at a time."""

    def __init__(
        self,
        ids: np.ndarray | Segments,
        batch: int,
        seq_len: int,
        reset_windows: int = 0,
        release: Callable[[], None] | None = None,
    ):
        stream_len = (len(ids) - 1) // batch  # S
        self.windows = stream_len // seq_len  # W
        if self.windows < 1:
            need = batch * seq_len + 1
            raise CorpusError(
                f"training text is too short: {_characters(len(ids))}, but {batch} streams of "
                f"{seq_len} need at least {need}; use a longer text or a smaller "
                f"{flag('batch_size')} / {flag('seq_len')}"
            )
        self.ids = ids  # what the streams read
        self._first = np.arange(batch, dtype=np.int64) * stream_len  # (B,) where each stream starts
        self._offsets = np.arange(seq_len + 1, dtype=np.int64)  # (T + 1,) a window and the target after it
        self.seq_len = seq_len
        self.batch = batch
        self.reset_windows = reset_windows  # R; 0: only at the start of a pass
        self._resets = (np.arange(batch) * reset_windows) // batch if reset_windows else None  # (B,)
        self._release, self._reads = release, 0

    def window(self, step: int, rows: slice = slice(None)) -> Batch:
        """The batch read at `step`: window (step mod W) of every stream, or
        only of the streams in `rows` (one process's share of a multi-process run)."""
        w = step % self.windows
        positions = self._first[rows, None] + w * self.seq_len + self._offsets[None, :]  # (B, T + 1)
        ids = np.asarray(self.ids[positions], np.int32)  # (B, T + 1)
        reset = np.full(self.batch, w == 0)
        if self._resets is not None:
            reset |= (w + self._resets) % self.reset_windows == 0
        self._reads += 1
        if self._release is not None and self._reads % RELEASE_EVERY == 0:
            self._release()
        return Batch(np.ascontiguousarray(ids[:, :-1]), np.ascontiguousarray(ids[:, 1:]), reset[rows])

    def __len__(self) -> int:
        """Windows in one pass."""
        return self.windows

    @property
    def chars_per_pass(self) -> int:
        """The characters one pass reads: B streams of W whole windows of T.
        The rest of each stream (fewer than T characters) is never read."""
        return self.batch * self.windows * self.seq_len


@dataclass(frozen=True)
class Layout:
    train: Streams
    val: Segments  # the held-out ids, scored whole at each validation pass
    split: Split


def layout(
    tokens: Tokens,
    hashes: Sequence[str],
    batch: int,
    seq_len: int,
    val_fraction: float,
    reset_chars: int = 0,
    copies_together: bool = True,
) -> Layout:
    """Training streams and the validation ids of a corpus's token file;
    `hashes` are its documents' sha256s (see `split_documents`)."""
    cut = split_documents(tokens, val_fraction, hashes, copies_together)
    # Resets happen between windows: reset_chars is rounded down to whole
    # windows, and is at least one (a --seq-len beyond it resets every window).
    windows = max(1, reset_chars // seq_len) if reset_chars else 0
    train = Streams(Segments(tokens.ids, cut.train, tokens.checked), batch, seq_len, windows, release=tokens.release)
    val = Segments(tokens.ids, cut.val, tokens.checked)
    if len(val) < 2:
        if cut.kind == "files":
            raise CorpusError(
                f"the validation text ({flag('val_file')}) is too short: {_characters(len(val))}; it needs at least 2"
            )
        total = int(tokens.lengths[: tokens.train_docs].sum())
        raise CorpusError(
            f"validation split is too short: {_characters(len(val))} ({flag('val_fraction')} {val_fraction:g} of "
            f"{total:,}); it needs at least 2: use a larger {flag('val_fraction')}, a longer text, or a "
            f"{flag('val_file')}"
        )
    return Layout(train, val, cut)


def _characters(n: int) -> str:
    return "1 character" if n == 1 else f"{n:,} characters"
