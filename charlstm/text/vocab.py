"""Characters <-> integer ids.

The vocabulary is the sorted set of characters (Unicode code points) of the
training text, stored in every checkpoint as a string. Encoding works on code
point arrays with a binary search, so a large corpus is encoded without a
Python-level loop over its characters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlstm.errors import CharlstmError

# Characters handled at a time: large texts are converted piece by piece, so
# the temporaries stay a few tens of MB whatever the corpus size.
CHUNK = 1 << 22


def _code_points(text: str) -> np.ndarray:
    # UTF-32-LE is one fixed-width unit per code point: a zero-copy view gives
    # every character's code point as an integer.
    # surrogatepass: a lone surrogate (what undecodable bytes in a command
    # line become) is a code point like any other, reported as unknown.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


@dataclass(frozen=True)
class Vocab:
    chars: str  # sorted, unique

    def __post_init__(self) -> None:
        if not self.chars:
            raise CharlstmError("vocabulary is empty")
        if list(self.chars) != sorted(set(self.chars)):
            raise CharlstmError("vocabulary must be sorted unique characters")

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        unique: set[int] = set()
        for start in range(0, len(text), CHUNK):
            unique.update(np.unique(_code_points(text[start : start + CHUNK])).tolist())
        return cls("".join(map(chr, sorted(unique))))

    @property
    def size(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` that the vocabulary lacks, sorted."""
        return sorted(set(Vocab.from_text(text).chars) - set(self.chars)) if text else []

    def encode(self, text: str) -> np.ndarray:
        """text -> (N,) int32 ids; raises naming any character not in the vocabulary."""
        table = _code_points(self.chars)
        ids = np.empty(len(text), dtype=np.int32)
        for start in range(0, len(text), CHUNK):
            points = _code_points(text[start : start + CHUNK])
            found = np.minimum(np.searchsorted(table, points), len(table) - 1)
            if not np.array_equal(table[found], points):
                missing = "".join(self.unknown(text))
                raise CharlstmError(f"characters not in the model's vocabulary: {missing!r}")
            ids[start : start + len(points)] = found
        return ids

    def decode(self, ids: np.ndarray | list[int]) -> str:
        table = np.array([ord(c) for c in self.chars], dtype="<u4")
        return table[np.asarray(ids, dtype=np.int64)].tobytes().decode("utf-32-le", "surrogatepass")
