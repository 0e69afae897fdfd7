"""Characters <-> integer ids.

The vocabulary is a string of distinct characters (Unicode code points),
character i having id i, stored in every checkpoint as that string. A new
run's vocabulary is the sorted set of its text's characters; a fine-tuned
run's is the old vocabulary with the new text's unseen characters appended
(`grown`), so every old character keeps its id. Encoding works on code
point arrays with a binary search, so a large text is encoded without a
Python-level loop over its characters.

A corpus of several documents also has BOUNDARY, which marks where a
document starts (see text/streams.py and core/model.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from charlstm.errors import CharlstmError, ConfigError

# Characters handled at a time: large texts are converted piece by piece, so
# the temporaries stay a few tens of MB whatever the corpus size.
CHUNK = 1 << 22

# The document boundary: U+FDD0 is one of Unicode's noncharacters, code
# points set aside for a program's internal use and never assigned to text.
# Every document of a multi-document corpus is preceded by it; reading it
# zeroes the model's recurrent state.
BOUNDARY = "\ufdd0"


def code_points(text: str) -> np.ndarray:
    """text -> (N,) uint32 code points."""
    # UTF-32-LE is one fixed-width unit per code point: a zero-copy view gives
    # every character's code point as an integer.
    # surrogatepass: a lone surrogate (what undecodable bytes in a command
    # line become) is a code point like any other, reported as unknown.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def token_dtype(size: int) -> np.dtype:
    """The narrowest unsigned integer type that holds ids 0 .. size - 1."""
    for dtype in (np.uint8, np.uint16):
        if size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint32)


@dataclass(frozen=True)
class Vocab:
    chars: str  # distinct; character i has id i
    _sorted: np.ndarray = field(init=False, repr=False, compare=False)  # (V,) code points, ascending
    _ids: np.ndarray = field(init=False, repr=False, compare=False)  # (V,) the id of each of _sorted

    def __post_init__(self) -> None:
        if not isinstance(self.chars, str):
            raise CharlstmError(f"vocabulary must be a string, got {type(self.chars).__name__}")
        if not self.chars:
            raise CharlstmError("vocabulary is empty")
        if len(set(self.chars)) != len(self.chars):
            raise CharlstmError("vocabulary must not repeat a character")
        points = code_points(self.chars)
        order = np.argsort(points, kind="stable")
        object.__setattr__(self, "_sorted", points[order])
        object.__setattr__(self, "_ids", order.astype(np.int32))

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        unique: set[int] = set()
        for start in range(0, len(text), CHUNK):
            unique.update(np.unique(code_points(text[start : start + CHUNK])).tolist())
        return cls("".join(map(chr, sorted(unique))))

    def grown(self, chars: Iterable[str]) -> Vocab:
        """This vocabulary with the characters of `chars` it lacks appended,
        in sorted order: every character it has keeps its id."""
        new = sorted(set(chars) - set(self.chars))
        return self if not new else Vocab(self.chars + "".join(new))

    @property
    def size(self) -> int:
        return len(self.chars)

    @property
    def characters(self) -> int:
        """How many characters it holds: its size, less the document
        boundary (a symbol of it, never a character of a text), as every
        summary counts them."""
        return self.size - (BOUNDARY in self.chars)

    @property
    def boundary_id(self) -> int | None:
        """The document boundary's id, if this vocabulary has one."""
        found = self.chars.find(BOUNDARY)
        return None if found < 0 else found

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` that the vocabulary lacks, sorted."""
        return sorted(set(Vocab.from_text(text).chars) - set(self.chars)) if text else []

    def ids_of(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) code points -> (N,) int32 ids, and (N,) bool: whether each is in the vocabulary."""
        found = np.minimum(np.searchsorted(self._sorted, points), len(self._sorted) - 1)
        return self._ids[found], self._sorted[found] == points

    def lookup_table(self) -> np.ndarray:
        """(largest code point + 1,) int32: the id of each code point, -1 for
        those outside the vocabulary (index it with points clipped to its length)."""
        table = np.full(int(self._sorted[-1]) + 1, -1, np.int32)
        table[self._sorted] = self._ids
        return table

    def encode(self, text: str) -> np.ndarray:
        """text -> (N,) int32 ids; raises naming any character not in the vocabulary."""
        ids = np.empty(len(text), dtype=np.int32)
        for start in range(0, len(text), CHUNK):
            points = code_points(text[start : start + CHUNK])
            found, known = self.ids_of(points)
            if not known.all():
                missing = "".join(self.unknown(text))
                raise ConfigError(f"characters not in the model's vocabulary: {missing!r}")
            ids[start : start + len(points)] = found
        return ids

    def decode(self, ids: np.ndarray | list[int]) -> str:
        table = code_points(self.chars)
        return table[np.asarray(ids, dtype=np.int64)].tobytes().decode("utf-32-le", "surrogatepass")
