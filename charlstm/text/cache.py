"""The corpus cache: a corpus is read once, encoded once, then memory-mapped.

    $CHARLSTM_CORPUS_CACHE, else $XDG_CACHE_HOME/charlstm/corpora, else ~/.cache/charlstm/corpora
      <key>/                key: the sha256 of the files' own sha256s, in order
        scan.json           what the first reading found: each file's size, hash,
                            characters and problem, the usable training files'
                            characters, and how often each character of a
                            validation file occurs
        tokens-<v>.u8       the ids under vocabulary v (.u16 or .u32 for a larger
                            vocabulary), every document preceded by the boundary
                            symbol when there are several

      <key of texts>/       the same for texts to score (`prepare_texts`), keyed
                            by their hashes alone: a training corpus's key never
                            matches one, since it always has training files

A run hashes its files (about 1 GB/s on the 2-core CPU), finds the scan and
token file of that content, and maps the token file: training then reads its
windows from the page cache, and the process's memory does not grow with the
corpus. Only a new text, or a new vocabulary for it (a fine-tuned model's),
is read and encoded again. Files are written under a temporary name and
renamed into place, so a crash never leaves a half-written one, and the
processes of a multi-process run take turns through a lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from charlstm.errors import CorpusError
from charlstm.text import scan as scanning
from charlstm.text.corpus import Document
from charlstm.text.saving import write_failure, write_whole
from charlstm.text.scan import Scanned

ENV_CACHE = "CHARLSTM_CORPUS_CACHE"
# What a first reading records, problems' words included: 2 since UTF-16
# files are named as such (a cached 1 called them binary).
SCAN_FORMAT = 2


def root() -> Path:
    """The folder every corpus's cache lives under."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "charlstm" / "corpora"


# A text of several files is known by a sha256 of theirs, which checkpoints
# record (`Corpus.sha256`). Until 2026-12-04 it was the cache folder's key,
# so a new SCAN_FORMAT gave every run on a folder another text (an upgrade
# walkthrough, 2026-12-06): runs made from 2026-12-01 to 2026-12-04 recorded
# it with 1, those since with 2, the number the identity keeps from now on.
IDENTITY_FORMAT = 2
LEGACY_IDENTITY_FORMATS = (1,)


def key(train: tuple[Scanned, ...] | list[str], val: tuple[Scanned, ...] | list[str]) -> str:
    """The folder of the cache the files' first reading is kept in."""
    return identity(train, val, SCAN_FORMAT)


def identity(
    train: tuple[Scanned, ...] | list[str], val: tuple[Scanned, ...] | list[str], form: int = IDENTITY_FORMAT
) -> str:
    """The sha256 a text of several files is known by, from its files' own."""
    digest = hashlib.sha256(f"charlstm-corpus-{form}\n".encode())
    for kind, items in (("train", train), ("val", val)):
        for item in items:
            digest.update(f"{kind} {item if isinstance(item, str) else item.sha256}\n".encode())
    return digest.hexdigest()


def load_scan(
    directory: Path, docs: tuple[Document, ...], hashes: list[str], counted: int
) -> scanning.ScanResult | None:
    """The first reading's results; the last `counted` documents are the validation files."""
    try:
        stored = json.loads((directory / "scan.json").read_text(encoding="utf-8"))
        if stored.get("format") != SCAN_FORMAT or [f["sha256"] for f in stored["files"]] != hashes:
            return None
        files = []
        for k, (d, f) in enumerate(zip(docs, stored["files"], strict=True)):
            counts = None
            if k >= len(docs) - counted and f["problem"] is None:
                # Scans from before validation files were counted lack this: read them again.
                counts = tuple(sorted((str(c), int(n)) for c, n in f["counts"].items()))
            files.append(Scanned(str(d.path), int(f["size"]), f["sha256"], int(f["chars"]), f["problem"], counts))
        # Without validation files, "charset" is the training files' characters, in every version.
        charset = stored["train_charset"] if counted else stored.get("train_charset", stored["charset"])
        return scanning.ScanResult(tuple(files), str(charset))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None  # not there, or unreadable: read the files again


def save_scan(directory: Path, result: scanning.ScanResult) -> None:
    files = []
    for f in result.files:
        entry = {"path": f.path, "size": f.size, "sha256": f.sha256, "chars": f.chars, "problem": f.problem}
        files.append(entry if f.counts is None else {**entry, "counts": dict(f.counts)})
    # "charset" stays every usable file's characters, which versions before
    # "train_charset" read as the vocabulary of a new run.
    every = set(result.charset).union(c for f in result.files for c, _ in f.counts or ())
    record = {"format": SCAN_FORMAT, "files": files, "charset": "".join(sorted(every))}
    text = json.dumps({**record, "train_charset": result.charset}, ensure_ascii=False)
    write_atomically(directory / "scan.json", lambda out: out.write(text.encode("utf-8")))


def complete(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def map_tokens(path: Path, dtype: np.dtype) -> tuple[np.ndarray, mmap.mmap]:
    try:
        with path.open("rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as err:
        raise CorpusError(f"cannot map the token file {path}: {err.strerror}") from None
    return np.frombuffer(mapped, dtype), mapped


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    try:
        write_whole(path, write, buffering=scanning.CHUNK_BYTES)
    except OSError as err:
        raise unwritable(path, err) from None


def sweep(directory: Path) -> None:
    """Remove the partial token files of writers that died (a process ended
    at once by a second Ctrl-C, a kill), which could be as large as the
    text. Called under the folder's lock, which every writer of a token file
    holds, so no live writer of this machine is at work on them; a file
    whose writer may be alive is left. Not on Windows: there os.kill(pid, 0)
    sends a Ctrl-C to the process instead of asking whether it lives, and
    the folder has no lock, so its partial files stay."""
    if os.name == "nt":
        return
    for tmp in directory.glob("tokens-*.tmp"):
        written_by = re.fullmatch(r"tokens-.*\.([0-9]{1,9})\.tmp", tmp.name)
        if written_by is None or int(written_by[1]) == os.getpid():
            continue
        try:
            os.kill(int(written_by[1]), 0)
        except ProcessLookupError:
            _remove(tmp)
        except OSError:  # another user's process, alive
            pass


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):  # another sweeper may have removed it first
        tmp.unlink(missing_ok=True)


class CacheUnwritable(CorpusError):
    """The corpus cache cannot be written: training needs it; scoring given
    texts can read them into memory instead."""


def unwritable(path: Path, err: OSError) -> CorpusError:
    return CacheUnwritable(
        f"cannot write the corpus cache {path}: {write_failure(path, err)}; point {ENV_CACHE} at a folder you can "
        "write to, with room for the encoded text"
    )


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the cache folder's lock: one process encodes, the others wait and map its file."""
    try:
        import fcntl
    except ImportError:  # not on a POSIX system: encode without a lock (a rename still keeps files whole)
        yield
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = (directory / "lock").open("a")
    except OSError as err:
        raise unwritable(directory / "lock", err) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
