"""Reading a corpus: one UTF-8 text file, or a shipped corpus by its name.

A corpus is read whole, checked (not empty, not binary, valid UTF-8) and
hashed, so that a resumed run can tell whether its text changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from charlstm.errors import CorpusError


@dataclass(frozen=True)
class Corpus:
    path: str
    text: str
    sha256: str


def shipped_corpora() -> dict[str, Path]:
    """Corpora that ship with charlstm, by file name."""
    candidates = [
        Path(str(resources.files("charlstm"))) / "corpora",  # installed wheel
        Path(__file__).resolve().parents[2] / "corpora",  # source checkout
    ]
    for folder in candidates:
        if folder.is_dir():
            return {p.name: p for p in sorted(folder.glob("*.txt"))}
    return {}


def resolve_corpus_path(path: str) -> tuple[Path, bool]:
    """The file to read, and whether it is a shipped corpus standing in for `path`."""
    given = Path(path)
    if given.exists():
        return given, False
    shipped = shipped_corpora()
    if given.name in shipped and given.parent == Path():
        return shipped[given.name], True
    hint = f" (shipped corpora: {', '.join(shipped)})" if shipped else ""
    raise CorpusError(f"corpus file not found: {path}{hint}")


def read_corpus(path: Path) -> Corpus:
    if path.is_dir():
        raise CorpusError(f"corpus path is a directory, not a text file: {path}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CorpusError(f"cannot read corpus {path}: {err.strerror}") from None
    if not raw:
        raise CorpusError(f"corpus is empty: {path}")
    if b"\x00" in raw[:65536]:
        raise CorpusError(f"corpus looks like binary data, not text: {path}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"corpus is not valid UTF-8: {path} (byte offset {err.start}: {raw[err.start : err.start + 4]!r})"
        ) from None
    return Corpus(str(path), text, hashlib.sha256(raw).hexdigest())
