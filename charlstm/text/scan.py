"""Reading a corpus's files in a stream: one pass to check, hash and collect
their characters, one to encode them into a token file.

Neither pass holds a file whole: both read CHUNK_BYTES at a time, so memory
stays at a few chunks whatever the corpus size. ASCII chunks (most of most
text) take a fast path through `bytes.translate`, which runs at memory
speed; others are decoded, turned into code points and looked up with NumPy.
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from charlstm.errors import CorpusError
from charlstm.text.corpus import Document
from charlstm.text.textfile import binary_or_invalid, cannot_read, cut_at_end, not_utf8
from charlstm.text.vocab import BOUNDARY, Vocab, code_points, token_dtype

CHUNK_BYTES = 1 << 22

# (phase, bytes done, bytes in all): "reading" (checking and hashing), "hashing" (a cached
# corpus's files, checked against the cache: tokens.py) or "encoding".
Progress = Callable[[str, int, int], None]


def no_progress(phase: str, done: int, total: int) -> None:
    """A Progress that reports nothing."""


@dataclass(frozen=True)
class Scanned:
    """One file as the first pass found it."""

    path: str
    size: int
    sha256: str
    chars: int  # characters, if it is text
    problem: str | None  # why it is not usable text, or None
    # A validation file's (character, occurrences), by character: it is scored
    # under the training text's vocabulary, and what that lacks is left out.
    counts: tuple[tuple[str, int], ...] | None = None


@dataclass(frozen=True)
class ScanResult:
    files: tuple[Scanned, ...]
    charset: str  # every character of the usable training files, sorted (not the counted ones')


class _Charset:
    """The characters seen so far; a file's additions can be taken back."""

    def __init__(self) -> None:
        self.seen = np.zeros(0x110000, bool)  # by code point
        self.ascii = b""  # the ASCII ones, for bytes.translate

    def add_ascii(self, chunk: bytes) -> list[int]:
        rest = chunk.translate(None, self.ascii)  # the bytes not seen yet: usually none
        if not rest:
            return []
        return self._add(np.array(sorted(set(rest)), np.uint32))

    def add(self, points: np.ndarray) -> list[int]:
        fresh = points[~self.seen[points]]
        return self._add(np.unique(fresh)) if len(fresh) else []

    def _add(self, new: np.ndarray) -> list[int]:
        self.seen[new] = True
        self.ascii += bytes(int(p) for p in new if p < 128)
        return new.tolist()

    def take_back(self, points: list[int]) -> None:
        self.seen[points] = False
        gone = set(points)
        self.ascii = bytes(p for p in self.ascii if p not in gone)

    def chars(self) -> str:
        return "".join(map(chr, np.flatnonzero(self.seen)))


class _Counts:
    """How often each character of one file occurs (a validation file's)."""

    def __init__(self) -> None:
        self.by_point: dict[int, int] = {}

    def add_ascii(self, chunk: bytes) -> list[int]:
        n = np.bincount(np.frombuffer(chunk, np.uint8), minlength=128)  # (128,)
        present = np.flatnonzero(n)
        return self._add(present, n[present])

    def add(self, points: np.ndarray) -> list[int]:
        present, n = np.unique(points, return_counts=True)
        return self._add(present, n)

    def _add(self, points: np.ndarray, n: np.ndarray) -> list[int]:
        new = [p for p in points.tolist() if p not in self.by_point]
        for p, k in zip(points.tolist(), n.tolist(), strict=True):
            self.by_point[p] = self.by_point.get(p, 0) + k
        return new

    def pairs(self) -> tuple[tuple[str, int], ...]:
        return tuple((chr(p), k) for p, k in sorted(self.by_point.items()))


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK_BYTES):
        yield chunk


def _byte_offset(path: Path, needle: bytes) -> int:
    """Where `needle` first occurs in the file, in bytes; -1 where it does not.
    A second read, made only to say where a refused file goes wrong."""
    try:
        with path.open("rb") as f:
            done, tail = 0, b""  # done: bytes read before `tail + chunk` starts
            for chunk in _chunks(f):
                window = tail + chunk
                found = window.find(needle)
                if found >= 0:
                    return done + found
                tail = window[len(window) - (len(needle) - 1) :]
                done += len(window) - len(tail)
    except OSError:
        pass
    return -1


def scan(documents: Sequence[Document], progress: Progress, counted: int = 0) -> ScanResult:
    """Check, hash and count every document; the characters of those that
    are text. The last `counted` documents (the validation files) add
    nothing to the charset, which makes the vocabulary: each keeps how often
    each of its characters occurs instead (`Scanned.counts`)."""
    total = sum(d.size for d in documents)
    charset = _Charset()
    done = 0
    files = []
    for k, doc in enumerate(documents):

        def report(n: int, before: int = done) -> None:
            progress("reading", before + n, total)

        sink = _Counts() if k >= len(documents) - counted else charset
        scanned, added = _scan_one(doc.path, sink, report)
        if isinstance(sink, _Counts):
            if scanned.problem is None:
                scanned = replace(scanned, counts=sink.pairs())
        elif scanned.problem is not None:
            charset.take_back(added)
        files.append(scanned)
        done += scanned.size
    progress("reading", total, total)
    return ScanResult(tuple(files), charset.chars())


def _scan_one(path: Path, charset: _Charset | _Counts, progress: Callable[[int], None]) -> tuple[Scanned, list[int]]:
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    chars, offset, added = 0, 0, []
    problem: str | None = None
    try:
        with path.open("rb") as f:
            for chunk in _chunks(f):
                digest.update(chunk)
                if offset == 0:
                    problem = binary_or_invalid(chunk)  # its start, for a NUL
                if problem is None:
                    pending = decoder.getstate()[0]
                    if chunk.isascii() and not pending:
                        chars += len(chunk)
                        added += charset.add_ascii(chunk)
                    else:
                        try:
                            text = decoder.decode(chunk)
                        except UnicodeDecodeError as err:
                            at = err.start - len(pending)
                            problem = not_utf8(offset + at, (pending + chunk)[err.start : err.start + 4])
                        else:
                            chars += len(text)
                            added += charset.add(code_points(text))
                offset += len(chunk)
                progress(offset)
    except OSError as err:
        raise cannot_read(path, err) from None
    if problem is None and decoder.getstate()[0]:
        left = decoder.getstate()[0]
        problem = cut_at_end(left, utf8_before=chars < offset - len(left))  # fewer characters than bytes before
    if problem is None and ord(BOUNDARY) in added:
        at = _byte_offset(path, BOUNDARY.encode())
        where = f" (at byte offset {at:,})" if at >= 0 else ""
        problem = (
            f"contains U+{ord(BOUNDARY):04X}{where}, a Unicode noncharacter that charlstm reserves to mark documents"
        )
    return Scanned(str(path), offset, digest.hexdigest(), chars, problem), added


def encode(
    documents: Sequence[Scanned],
    vocab: Vocab,
    boundary: bool,
    out: BinaryIO,
    done: int,
    total: int,
    progress: Progress,
    leave_out_unknown: bool = False,
) -> int:
    """Write `documents`' ids to `out` in the vocabulary's token dtype, each
    preceded by the boundary symbol if `boundary`; the bytes read so far. A
    file whose content no longer matches its hash is an error. Characters
    the vocabulary lacks are an error too, or with `leave_out_unknown` (the
    validation files) are left out."""
    dtype = token_dtype(vocab.size)
    table = vocab.lookup_table()  # (largest code point + 1,) int32, -1 outside the vocabulary
    # One byte per id and per ASCII character: bytes.translate maps a chunk in one call.
    fast = dtype == np.uint8
    ascii_ids = bytes(int(table[b]) if b < len(table) and table[b] >= 0 else 0 for b in range(256)) if fast else b""
    unknown_ascii = bytes(b for b in range(128) if b >= len(table) or table[b] < 0) if leave_out_unknown else b""
    mark = np.array([vocab.boundary_id or 0], dtype).tobytes()
    for doc in documents:
        if boundary:
            out.write(mark)
        digest = hashlib.sha256()
        decoder = codecs.getincrementaldecoder("utf-8")()
        with open(doc.path, "rb") as f:
            for chunk in _chunks(f):
                digest.update(chunk)
                if fast and chunk.isascii() and not decoder.getstate()[0]:
                    out.write(chunk.translate(ascii_ids, unknown_ascii))
                else:
                    points = code_points(decoder.decode(chunk))  # (N,)
                    ids = table[np.minimum(points, len(table) - 1)]  # (N,)
                    known = (ids >= 0) & (points < len(table))  # (N,)
                    if not known.all():
                        if not leave_out_unknown:
                            raise CorpusError(f"{doc.path} has characters it did not have when it was first read")
                        ids = ids[known]
                    out.write(ids.astype(dtype).tobytes())
                done += len(chunk)
                progress("encoding", done, total)
        if digest.hexdigest() != doc.sha256:
            raise CorpusError(f"{doc.path} changed while it was being read; run again")
    return done
