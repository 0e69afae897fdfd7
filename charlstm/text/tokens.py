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
import dataclasses
import hashlib
import json
import mmap
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from charlstm.errors import CorpusError, shown
from charlstm.flags import flag
from charlstm.text import scan as scanning
from charlstm.text.corpus import EMPTY, Document, Source, find, given_alone, left_out, refusal
from charlstm.text.scan import Progress, Scanned, no_progress
from charlstm.text.vocab import Vocab, token_dtype

ENV_CACHE = "CHARLSTM_CORPUS_CACHE"
SCAN_FORMAT = 1
_SUFFIX = {1: "u8", 2: "u16", 4: "u32"}


def cache_root() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "charlstm" / "corpora"


@dataclass(frozen=True)
class Corpus:
    """A corpus read and checked: its usable documents, in order."""

    source: Source
    train: tuple[Scanned, ...]  # training documents
    val: tuple[Scanned, ...]  # validation documents (--val-file), if any
    skipped: tuple[Scanned, ...]  # files left out, each with its problem
    charset: str  # every character of the training documents, sorted (not the validation files')
    directory: Path  # its folder in the cache
    roots: tuple[Path, ...]  # the files and folders given, resolved
    shipped: bool = False  # a shipped corpus stood in for a name not found here
    from_cache: bool = False  # the first reading's results came from the cache

    @property
    def documents(self) -> tuple[Scanned, ...]:
        return self.train + self.val

    @property
    def boundary(self) -> bool:
        """Whether documents are marked: only where several of them meet."""
        return len(self.train) > 1 or len(self.val) > 1

    @property
    def path(self) -> str:
        """What the corpus is called (in `charlstm runs`, `info`, messages):
        the first file or folder given that was not left out whole, resolved."""
        return self.sources[0]

    @property
    def sources(self) -> tuple[str, ...]:
        """The files and folders given, each once, but for files left out
        whole (all of them where every one was), resolved."""
        left_out = {Path(d.path).resolve() for d in self.skipped}
        kept = [root for root in self.roots if root.resolve() not in left_out]
        return tuple(dict.fromkeys(str(root) for root in kept or self.roots))

    @property
    def sha256(self) -> str:
        """A single file's sha256 (as runs recorded before folders), else that of the files' hashes."""
        if len(self.documents) == 1:
            return self.documents[0].sha256
        return _key(self.train, self.val)

    @property
    def chars(self) -> int:
        return sum(d.chars for d in self.documents)


def _key(train: tuple[Scanned, ...] | list[str], val: tuple[Scanned, ...] | list[str]) -> str:
    digest = hashlib.sha256(f"charlstm-corpus-{SCAN_FORMAT}\n".encode())
    for kind, items in (("train", train), ("val", val)):
        for item in items:
            digest.update(f"{kind} {item if isinstance(item, str) else item.sha256}\n".encode())
    return digest.hexdigest()


def _hash(path: Path, progress: Progress, done: int, total: int) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(scanning.CHUNK_BYTES):
                digest.update(chunk)
                done += len(chunk)
                progress("hashing", done, total)
    except OSError as err:
        raise CorpusError(f"cannot read {path}: {err.strerror}") from None
    return digest.hexdigest()


def prepare(source: Source, progress: Progress = no_progress) -> Corpus:
    """Find, hash and check the files `source` names (each read once, ever,
    for the checking: later runs find the results in the cache)."""
    found = find(source)
    directory, result, from_cache = _scanned(found.train, found.val, progress, "corpus", cache_needed=True)
    n = len(found.train)
    val_paths = {f.path for f in result.files[n:]}  # the --val-file documents
    bad = tuple(f for f in result.files if f.problem is not None)
    if bad and not source.skip_bad_files:
        _refuse(bad, alone=len(result.files) == 1, val_paths=val_paths)
    usable = [f.problem is None and f.chars > 0 for f in result.files]
    # Left out too, and listed with the files that are not text (corpus.json),
    # but never refused: a source tree's empty __init__.py files are normal.
    empty = tuple(dataclasses.replace(f, problem=EMPTY) for f in result.files if f.problem is None and not f.chars)
    train = tuple(f for f, ok in zip(result.files[:n], usable[:n], strict=True) if ok)
    val = tuple(f for f, ok in zip(result.files[n:], usable[n:], strict=True) if ok)
    if not train:
        what = found.train[0].path if len(found.train) == 1 else "every file of the corpus"
        # Raised before read() reports the files left out: name them here, or the user never sees why.
        left_out = tuple(_problem(f) for f in bad + empty)
        raise CorpusError(
            f"corpus is empty: {what}" if not bad else "no usable text: every file was left out (listed above)",
            details=left_out if bad else (),
        )
    if source.val_files and not val:
        left_out = tuple(_problem(f) for f in bad + empty if f.path in val_paths)
        raise CorpusError(f"{flag('val_file')}: no usable text in {', '.join(source.val_files)}", details=left_out)
    return Corpus(source, train, val, bad + empty, result.charset, directory, found.roots, found.shipped, from_cache)


def _scanned(
    train: tuple[Document, ...], val: tuple[Document, ...], progress: Progress, what: str, *, cache_needed: bool
) -> tuple[Path, scanning.ScanResult, bool]:
    """Hash the documents, then take the first reading's results from the
    cache or read them (and cache them: where the cache cannot be written,
    an error if `cache_needed`, else only the next reading's shortcut is
    lost): their folder in the cache, the results, and whether they came
    from it. `what` names the text in an error."""
    docs = train + val
    total = sum(d.size for d in docs)
    hashes, done = [], 0
    for d in docs:
        hashes.append(_hash(d.path, progress, done, total))
        done += d.size
    directory = cache_root() / _key(hashes[: len(train)], hashes[len(train) :])
    result = _load_scan(directory, docs, hashes, counted=len(val))
    if result is not None:
        return directory, result, True
    result = scanning.scan(docs, progress, counted=len(val))
    if [f.sha256 for f in result.files] != hashes:
        raise CorpusError(f"the {what} changed while it was being read; run again")
    try:
        _save_scan(directory, result)
    except CacheUnwritable:
        if cache_needed:
            raise
    return directory, result, False


def prepare_texts(source: Source, progress: Progress = no_progress) -> Corpus:
    """The files `source` names as texts to score under a trained model's
    vocabulary (`charlstm eval`): a Corpus whose documents are all
    validation documents, each checked once in a stream, so a text of any
    size can be scored in place from its token file (`open_tokens`).

    Of a folder's files or several, empty ones are left out (in `skipped`),
    and with `skip_bad_files` those that are not UTF-8 text, which otherwise
    stop the reading; one file given alone must be usable text."""
    found = find(source)
    # The texts given (`source` names no --val-file), each counted as a validation file is.
    directory, result, from_cache = _scanned((), found.train, progress, "text", cache_needed=False)
    alone = given_alone(source, found)
    usable, unusable = [], []
    for f in result.files:
        problem = f.problem or EMPTY  # for a file of no characters
        if f.problem is None and f.chars:
            usable.append(f)
        elif alone:
            raise refusal(f.path, problem, "the text")
        else:
            left_out(f.path, problem, source.skip_bad_files)  # refuses a file that is not text without the option
            unusable.append(dataclasses.replace(f, problem=problem))
    if not usable:
        raise CorpusError("no usable text: every file was left out", details=tuple(map(_problem, unusable)))
    val, skipped = tuple(usable), tuple(unusable)
    return Corpus(source, (), val, skipped, "", directory, found.roots, found.shipped, from_cache)


def refuse_copied_validation(corpus: Corpus) -> None:
    """Refuse, for a new run, a --val-file that holds a training file's text
    under another path (a copy): the model would validate on what it trains
    on. (Runs made before this check still resume and evaluate.)"""
    by_hash = {d.sha256: d for d in corpus.train}
    for d in corpus.val:
        if d.sha256 in by_hash:
            raise CorpusError(
                f"{flag('val_file')} {shown(d.path)} has the same text as the training file "
                f"{shown(by_hash[d.sha256].path)}: validation must be text the model does not train on"
            )


def _problem(file: Scanned) -> str:
    """A file left out or refused, and why, on a line of its own."""
    return f"{shown(file.path)}: {file.problem}"


def _refuse(bad: tuple[Scanned, ...], alone: bool, val_paths: set[str]) -> None:
    """Stop on files that are not text: the one file of a corpus in the
    message itself, several each on a line of their own before it. A
    validation file is named as one: --skip-bad-files would leave it out
    and then find no validation text."""
    lines = tuple(f"{flag('val_file')} {_problem(f)}" if f.path in val_paths else _problem(f) for f in bad)
    if alone:
        raise CorpusError(lines[0])
    them = "it" if len(bad) == 1 else "them"
    if all(f.path in val_paths for f in bad):
        advice = f"fix {them}, or give another {flag('val_file')}"
    elif any(f.path in val_paths for f in bad):
        advice = (
            f"fix {them}, or leave the training files out with {flag('skip_bad_files')} and give another "
            f"{flag('val_file')}"
        )
    else:
        advice = f"fix {them}, or leave {them} out with {flag('skip_bad_files')}"
    raise CorpusError(
        f"{'a file is' if len(bad) == 1 else f'{len(bad)} files are'} not usable text (listed above): {advice}",
        details=lines,
    )


def _load_scan(
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
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # not there, or unreadable: read the files again


def _save_scan(directory: Path, result: scanning.ScanResult) -> None:
    files = []
    for f in result.files:
        entry = {"path": f.path, "size": f.size, "sha256": f.sha256, "chars": f.chars, "problem": f.problem}
        files.append(entry if f.counts is None else {**entry, "counts": dict(f.counts)})
    # "charset" stays every usable file's characters, which versions before
    # "train_charset" read as the vocabulary of a new run.
    every = set(result.charset).union(c for f in result.files for c, _ in f.counts or ())
    record = {"format": SCAN_FORMAT, "files": files, "charset": "".join(sorted(every))}
    text = json.dumps({**record, "train_charset": result.charset}, ensure_ascii=False)
    _write_atomically(directory / "scan.json", lambda out: out.write(text.encode("utf-8")))


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
        raise CorpusError(f"the corpus has characters the vocabulary lacks: {''.join(missing)!r}")
    known = set(vocab.chars)
    left_out = [{c: n for c, n in d.counts or () if c not in known} for d in corpus.val]
    kept = [d.chars - sum(out.values()) for d, out in zip(corpus.val, left_out, strict=True)]
    skipped = {c: sum(out.get(c, 0) for out in left_out) for c in sorted(set().union(*left_out))}
    # Texts given to score count as `Model.evaluate` counts them, boundary
    # symbols included; a run's validation files must hold text of their own.
    left = sum(kept) + (len(corpus.val) * int(boundary) if not corpus.train else 0)
    if skipped and left < 2:
        named = ", ".join(shown(d.path) for d in corpus.val)
        if corpus.train:  # the validation files of a run, not texts given to score
            named = f"{flag('val_file')} {named}"
        gone = sum(skipped.values())
        raise CorpusError(
            f"{named}: almost none of the text is in the model's vocabulary ({gone:,} character"
            f"{'s' * (gone != 1)} skipped, {left} left): nothing to score"
        )
    dtype = token_dtype(vocab.size)
    tag = hashlib.sha256(vocab.chars.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    path = corpus.directory / f"tokens-{tag}.{_SUFFIX[dtype.itemsize]}"
    lengths = np.array([d.chars for d in corpus.train] + kept, np.int64) + int(boundary)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    size = int(lengths.sum()) * dtype.itemsize
    seconds = None
    if not _complete(path, size):
        with _locked(corpus.directory):
            if not _complete(path, size):  # another process may have written it meanwhile
                _sweep(corpus.directory)
                started = time.perf_counter()
                total = sum(d.size for d in corpus.documents)

                def write(out: BinaryIO) -> None:
                    done = scanning.encode(corpus.train, vocab, boundary, out, 0, total, progress)
                    scanning.encode(corpus.val, vocab, boundary, out, done, total, progress, True)

                _write_atomically(path, write)
                seconds = time.perf_counter() - started
    ids, mapped = _map(path, dtype)
    return Tokens(path, ids, starts, lengths, len(corpus.train), boundary, seconds, skipped, mapped, vocab.size)


def _complete(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _map(path: Path, dtype: np.dtype) -> tuple[np.ndarray, mmap.mmap]:
    try:
        with path.open("rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as err:
        raise CorpusError(f"cannot map the token file {path}: {err.strerror}") from None
    return np.frombuffer(mapped, dtype), mapped


def _write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb", buffering=scanning.CHUNK_BYTES) as out:
            write(out)
        os.replace(tmp, path)
    except OSError as err:
        _remove(tmp)
        raise _unwritable(path, err) from None
    except BaseException:
        _remove(tmp)
        raise


def _sweep(directory: Path) -> None:
    """Remove the partial token files of writers that died (a process ended
    at once by a second Ctrl-C, a kill), which could be as large as the
    text. Called under the folder's lock, which every writer of a token file
    holds, so no live writer of this machine is at work on them; a file
    whose writer may be alive is left."""
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
    # Where the file could not be written it may not be removable either
    # (a read-only folder, a path through a file): its error is the one to tell.
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


class CacheUnwritable(CorpusError):
    """The corpus cache cannot be written: training needs it; scoring given
    texts can read them into memory instead."""


def _unwritable(path: Path, err: OSError) -> CorpusError:
    return CacheUnwritable(
        f"cannot write the corpus cache {path}: {err.strerror}; point {ENV_CACHE} at a folder you can write to, "
        "with room for the encoded text"
    )


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
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
        raise _unwritable(directory / "lock", err) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
