"""A corpus's token file: its ids under one vocabulary, encoded once into
the corpus cache (`cache.py`) and mapped, never read into memory whole.

`open_tokens` encodes a prepared corpus (`tokens.py`) under a vocabulary
where the cache lacks its file, then maps it; `Tokens` is the mapped file,
with where each document starts and which are the training text.
"""

from __future__ import annotations

import hashlib
import mmap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from charlstm.errors import CorpusError, named, shown
from charlstm.flags import flag
from charlstm.text import cache
from charlstm.text import scan as scanning
from charlstm.text.scan import Progress, no_progress
from charlstm.text.tokens import Corpus
from charlstm.text.vocab import Vocab, token_dtype

_SUFFIX = {1: "u8", 2: "u16", 4: "u32"}


@dataclass
class Tokens:
    """A corpus's ids under one vocabulary, mapped from its token file."""

    path: Path
    ids: np.ndarray  # (N,) the mapped file, read-only
    starts: np.ndarray  # (D,) int64: where each document starts (at its boundary symbol, if marked)
    lengths: np.ndarray  # (D,) int64: each document's ids, its boundary symbol included
    train_docs: int  # the first this many documents are the training text
    boundary: bool  # whether every document starts with the boundary symbol
    encoded_seconds: float | None  # how long encoding took, or None: found in the cache
    # Characters of the validation files left out of the token file (not in
    # the vocabulary): how often each occurred, as `Score.skipped` counts them.
    skipped: dict[str, int] = field(default_factory=dict)
    _map: mmap.mmap | None = field(default=None, repr=False)
    vocab_size: int | None = None  # ids read are checked against it (`checked`)

    def checked(self, ids: np.ndarray) -> np.ndarray:
        """`ids` read from this file, refused if one lies beyond the vocabulary.

        The file is trusted by its size alone (hashing it at every start
        would double the time a run spends reading its corpus), so a file
        damaged after it was written (a bad disk, another program) shows
        here: its bytes decode to ids the model has no row for, which would
        otherwise train on as garbage or end as a "diverged" run. The check
        is one max over each window or validation slice read, a few
        microseconds a step."""
        if self.vocab_size is not None and ids.size and int(ids.max()) >= self.vocab_size:
            raise CorpusError(
                f"the cached token file {self.path} is damaged: it holds id {int(ids.max())}, and the vocabulary "
                f"has {self.vocab_size} characters. Delete it and run again: charlstm encodes the text anew"
            )
        return ids

    def release(self) -> None:
        """Let go of the pages read so far: they stay in the page cache, but
        no longer count towards this process's memory."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)


def open_tokens(
    corpus: Corpus, vocab: Vocab, progress: Progress = no_progress, *, boundary: bool | None = None
) -> Tokens:
    """The corpus's token file under `vocab`, encoded if the cache lacks it,
    mapped. The validation files' characters that `vocab` lacks are left out
    of it (and counted in `Tokens.skipped`), as `charlstm eval` leaves them out.
    `boundary`: whether to mark each document with the boundary symbol
    (default: where several meet); texts to score are read as the model
    learned to read, marked if it learned several documents, however many
    are given."""
    boundary = corpus.boundary if boundary is None else boundary
    missing = sorted(set(corpus.charset) - set(vocab.chars))
    if missing:
        raise CorpusError(f"the corpus has characters the vocabulary lacks: {named(missing)}")
    left_out = corpus.unknown_in_val(vocab.chars)
    kept = [d.chars - sum(out.values()) for d, out in zip(corpus.val, left_out, strict=True)]
    skipped = {c: sum(out.get(c, 0) for out in left_out) for c in sorted(set().union(*left_out))}
    # Texts given to score count as `Model.evaluate` counts them, boundary
    # symbols included; a run's validation files must hold text of their own.
    left = sum(kept) + (len(corpus.val) * int(boundary) if not corpus.train else 0)
    if skipped and left < 2:
        files = ", ".join(shown(d.path) for d in corpus.val)
        if corpus.train:  # the validation files of a run, not texts given to score
            files = f"{flag('val_file')} {files}"
        gone = sum(skipped.values())
        raise CorpusError(
            f"{files}: almost none of the text is in the model's vocabulary ({gone:,} character"
            f"{'s' * (gone != 1)} skipped, {left} left): nothing to score"
        )
    dtype = token_dtype(vocab.size)
    tag = hashlib.sha256(vocab.chars.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    path = corpus.directory / f"tokens-{tag}.{_SUFFIX[dtype.itemsize]}"
    lengths = np.array([d.chars for d in corpus.train] + kept, np.int64) + int(boundary)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    size = int(lengths.sum()) * dtype.itemsize
    seconds = None
    if not cache.complete(path, size):
        with cache.locked(corpus.directory):
            if not cache.complete(path, size):  # another process may have written it meanwhile
                cache.sweep(corpus.directory)
                started = time.perf_counter()
                total = sum(d.size for d in corpus.documents)

                def write(out: BinaryIO) -> None:
                    done = scanning.encode(corpus.train, vocab, boundary, out, 0, total, progress)
                    scanning.encode(corpus.val, vocab, boundary, out, done, total, progress, True)

                cache.write_atomically(path, write)
                seconds = time.perf_counter() - started
    ids, mapped = cache.map_tokens(path, dtype)
    return Tokens(path, ids, starts, lengths, len(corpus.train), boundary, seconds, skipped, mapped, vocab.size)
