"""One text file: whether it is text, read whole or its head, and how its problems are named.

Text is UTF-8: a file that is not (UTF-16, a one-byte encoding, binary
data) is named with what it is and where, and the fix (`iconv`, `tr`).
`text/corpus.py` finds the files of a corpus; this reads and checks one.
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from charlstm.errors import CorpusError, shown
from charlstm.flags import flag

NOT_UTF8 = "not valid UTF-8"


@dataclass(frozen=True)
class TextFile:
    """A text file read whole and checked."""

    path: str
    text: str
    sha256: str


def cannot_read(path: Path | str, err: OSError, several: bool = False) -> CorpusError:
    """The error for a file that cannot be read (no permission, an I/O
    error); where `several` are read, naming the option that leaves such
    files out instead."""
    hint = f" ({flag('skip_bad_files')} leaves out the files that cannot be read)" if several else ""
    return CorpusError(f"cannot read {path}: {err.strerror}{hint}")


def read_corpus(path: Path, what: str = "corpus") -> TextFile:
    """One UTF-8 text file, read whole and checked (not empty, not binary,
    valid UTF-8); `what` names it in the errors."""
    if path.is_dir():
        raise CorpusError(f"{path} is a folder; this reads one text file")
    try:
        text, problem = read_checked(path)
    except OSError as err:
        raise cannot_read(path, err) from None
    if text is None:
        raise refusal(path, problem or EMPTY, what)
    return text


def refusal(path: Path | str, problem: str, what: str) -> CorpusError:
    """The error for one file, read alone, that is not usable text."""
    if problem == EMPTY:
        return CorpusError(f"{what} is empty: {shown(path)}")
    return CorpusError(f"{shown(path)}: {problem}{encoding_hint([problem])}")


def encoding_hint(problems: Iterable[str]) -> str:
    """For files that are not UTF-8: most likely a one-byte encoding's."""
    if any(problem.startswith(NOT_UTF8) for problem in problems):
        return "; to read Latin-1 or Windows-1252 text, convert it first (iconv -f CP1252 -t UTF-8 FILE > NEW)"
    return ""


def read_size(path: Path) -> int:
    """A file's size in bytes now."""
    try:
        return path.stat().st_size
    except OSError as err:
        raise cannot_read(path, err) from None


def read_head(path: Path, chars: int) -> str:
    """The first `chars` characters of a UTF-8 text file, read in chunks:
    a file of any size costs only what is kept. The file is assumed checked
    (`tokens.prepare_texts`)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts, left = [], chars
    try:
        with path.open("rb") as f:
            while left > 0 and (chunk := f.read(1 << 16)):
                parts.append(decoder.decode(chunk)[:left])
                left -= len(parts[-1])
    except (OSError, UnicodeDecodeError) as err:
        raise CorpusError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    return "".join(parts)


EMPTY = "empty"  # the problem of a file with no characters, wherever one is left out or refused


def read_checked(path: Path) -> tuple[TextFile | None, str | None]:
    """The file read whole, or None and why it is not usable text: EMPTY,
    binary, or not valid UTF-8 (an OSError where it cannot be read at all)."""
    raw = path.read_bytes()
    problem = binary_or_invalid(raw, raw) if raw else EMPTY
    if problem is not None:
        return None, problem
    return TextFile(str(path), raw.decode("utf-8"), hashlib.sha256(raw).hexdigest()), None


# A NUL in a file's first 64 KiB marks it as binary: text never has one.
# Up to this many in a file of over a hundred times as many bytes are named
# as stray NULs in text, where they are.
STRAY_NULS = 4
BINARY_PROBE = 1 << 16


def _utf16(head: bytes) -> bool:
    """Whether a file starting with `head` is UTF-16 text (Windows' "Unicode"):
    a byte-order mark, not UTF-32's, then what decodes as UTF-16."""
    if not head.startswith((b"\xff\xfe", b"\xfe\xff")) or head.startswith(b"\xff\xfe\x00\x00"):
        return False
    sample = head[: BINARY_PROBE - BINARY_PROBE % 2]
    try:
        sample.decode("utf-16")
    except UnicodeDecodeError:  # a pair cut at the sample's end is rare enough to call binary
        return False
    return True


def _utf8_but_cut(head: bytes) -> bool:
    """Whether `head` is UTF-8 text, but for a character cut at its end."""
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.reason == "unexpected end of data"
    return True


def binary_or_invalid(head: bytes, raw: bytes | None = None) -> str | None:
    """Why a file starting with `head` (its first BINARY_PROBE bytes are
    looked at; and, if given, all of whose bytes are `raw`) is not text, or
    None."""
    if _utf16(head):
        return "UTF-16 text, not UTF-8: convert it first (iconv -f UTF-16 -t UTF-8 FILE > NEW)"
    probe = head[:BINARY_PROBE]
    if b"\x00" in probe:
        where = f"byte offset {probe.index(0):,}"
        if probe.count(0) <= STRAY_NULS < len(probe) // 100 and _utf8_but_cut(probe.replace(b"\x00", b"")):
            return f"has a NUL byte at {where}, which text never has: remove it (tr -d '\\000' < FILE > NEW)"
        return f"looks like binary data, not text (a NUL byte at {where})"
    if raw is not None:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            if err.reason == "unexpected end of data" and err.end == len(raw):
                return cut_at_end(raw[err.start :], utf8_before=not raw[: err.start].isascii())
            return not_utf8(err.start, raw[err.start : err.start + 4])
    return None


def not_utf8(offset: int, found: bytes) -> str:
    """`offset` -1: the file's last byte."""
    where = "its last byte" if offset < 0 else f"byte offset {offset:,}"
    return f"{NOT_UTF8} ({where}: {found!r})"


def cut_at_end(found: bytes, utf8_before: bool) -> str:
    """A file whose last bytes, `found`, begin a UTF-8 character it does not
    finish: cut short (`head -c`, a copy that stopped) where the rest shows
    it is UTF-8 (`utf8_before`: characters of several bytes) or `found` is a
    lead byte and its continuations; else one byte of another encoding (a
    Latin-1 file ending in "é") is as likely."""
    if len(found) < 2 and not utf8_before:
        return not_utf8(-1, found)
    count = len(found)
    last = f"its last {count} bytes, {found!r}, begin one" if count > 1 else f"its last byte, {found!r}, begins one"
    cut = f"remove {'them' if count > 1 else 'it'} (truncate -s -{count} FILE) or copy it again"
    if utf8_before:
        return f"ends in the middle of a character ({last}): the file was cut short; {cut}"
    # Nothing before them is UTF-8's own: as likely two bytes of a one-byte encoding ("é…" in Windows-1252).
    return (
        f"ends in the middle of a UTF-8 character ({last}): if the file was cut short, {cut}; if it is Latin-1 or "
        "Windows-1252 text, convert it (iconv -f CP1252 -t UTF-8 FILE > NEW)"
    )


# How much `files_holding` reads at most looking for the files to name:
# a warning's detail, not worth reading gigabytes for.
HOLDING_READ = 256 * 2**20


def files_holding(
    paths: Sequence[Path], needle: bytes, limit: int = 3, at_start: bool = False
) -> tuple[list[Path], bool]:
    """The first `limit` of `paths` whose bytes hold `needle` (at their
    start only, with `at_start`), and whether every path was looked at:
    reading stops after HOLDING_READ bytes. An unreadable file is passed over."""
    found: list[Path] = []
    budget = HOLDING_READ
    for path in paths:
        if len(found) == limit:
            return found, False
        try:
            with path.open("rb") as f:
                if at_start:
                    hit = f.read(len(needle)) == needle
                else:
                    hit, tail = False, b""
                    while not hit and budget > 0 and (block := f.read(min(2**20, budget))):
                        budget -= len(block)
                        hit, tail = needle in tail + block, block[-len(needle) + 1 :] if len(needle) > 1 else b""
        except OSError:
            continue
        if hit:
            found.append(path)
        if budget <= 0:
            return found, False
    return found, True
