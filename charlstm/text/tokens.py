"""A corpus prepared: its files found, hashed and checked (`prepare`, or
`prepare_texts` for texts to score under a trained model's vocabulary),
then encoded under a vocabulary and mapped (`tokenfile.open_tokens`). What
is read once is kept in the corpus cache (`cache.py`): a text is read and
encoded once, ever."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

from charlstm.errors import CorpusError, shown
from charlstm.flags import flag
from charlstm.text import cache
from charlstm.text import scan as scanning
from charlstm.text.corpus import (
    BAD_NAME,
    Document,
    Found,
    Source,
    all_left_out,
    find,
    given_alone,
    leave_out,
    refuse_unusable,
    unreadable,
)
from charlstm.text.folder import escaped
from charlstm.text.scan import Progress, Scanned, no_progress
from charlstm.text.textfile import EMPTY, cannot_read, refusal


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
    # A folder's entries that are neither files nor folders (a link to
    # nothing, a pipe), (path, why) each: never read, never refused.
    not_files: tuple[tuple[str, str], ...] = ()
    # A folder's files the default --glob leaves out only for the case of
    # their extension (NOTES.TXT): never read, said to be.
    other_case: tuple[str, ...] = ()
    # The sha256 a resumed run recorded for this text, where an earlier
    # version computed it otherwise (`matches`): the run keeps it, so that
    # its checkpoints all name the text alike.
    recorded_as: str | None = None

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
        """A single file's sha256 (as runs recorded before folders), else that
        of the files' hashes; or what the run resumed on it recorded, where
        that names the same text (`recorded_as`)."""
        if self.recorded_as is not None:
            return self.recorded_as
        if len(self.documents) == 1:
            return self.documents[0].sha256
        return cache.identity(self.train, self.val)

    def matches(self, recorded: str | None) -> bool:
        """Whether `recorded` (a checkpoint's corpus sha256) names this text,
        as this version computes it or as an earlier one did."""
        if recorded is None:
            return False
        if recorded == self.sha256 or len(self.documents) == 1:
            return recorded == self.sha256
        return recorded in {cache.identity(self.train, self.val, form) for form in cache.LEGACY_IDENTITY_FORMATS}

    @property
    def chars(self) -> int:
        return sum(d.chars for d in self.documents)

    def unknown_in_val(self, chars: str) -> list[dict[str, int]]:
        """Each validation document's characters that `chars` (a vocabulary)
        lacks, and how often each occurs: what scoring it leaves out."""
        known = set(chars)
        return [{c: n for c, n in d.counts or () if c not in known} for d in self.val]


def _hash(path: Path, progress: Progress, done: int, total: int) -> str:
    """The file's sha256 (an OSError where it cannot be read)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(scanning.CHUNK_BYTES):
            digest.update(chunk)
            done += len(chunk)
            progress("hashing", done, total)
    return digest.hexdigest()


def prepare(source: Source, progress: Progress = no_progress) -> Corpus:
    """Find, hash and check the files `source` names (each read once, ever,
    for the checking: later runs find the results in the cache)."""
    found = find(source)
    directory, result, from_cache = _scanned(
        found.train, found.val, progress, "corpus", cache_needed=True, skip_unreadable=source.skip_bad_files
    )
    n = len(found.train)
    val_paths = {f.path for f in result.files[n:]}  # the --val-file documents
    bad = tuple(f for f in result.files if f.problem is not None) + _badly_named(found)
    if bad and not source.skip_bad_files:
        refuse_unusable(
            [(f.path, f.problem or "") for f in bad],
            alone=len(result.files) == 1,
            val_paths=val_paths,
            val_others=any(f.problem is None and f.chars > 0 for f in result.files[n:]),
        )
    usable = [f.problem is None and f.chars > 0 for f in result.files]
    # Left out too, and listed with the files that are not text (corpus.json),
    # but never refused: a source tree's empty __init__.py files are normal.
    empty = tuple(dataclasses.replace(f, problem=EMPTY) for f in result.files if f.problem is None and not f.chars)
    train = tuple(f for f, ok in zip(result.files[:n], usable[:n], strict=True) if ok)
    val = tuple(f for f, ok in zip(result.files[n:], usable[n:], strict=True) if ok)
    if not train:
        what = shown(found.train[0].path) if len(found.train) == 1 else "every file of the corpus"
        # Raised before read() reports the files left out: name them here, or the user never sees why.
        left_out = tuple(_problem(f) for f in bad + empty)
        raise CorpusError(
            f"corpus is empty: {what}" if not bad else all_left_out([f.path for f in bad + empty]),
            details=left_out if bad else (),
        )
    if source.val_files and not val:
        # The --val-file files left out, those left out for their names too (never read, so not in `val_paths`).
        given = [escaped(Path(v).resolve()) for v in source.val_files]
        named = {f.path for f in _badly_named(found) if any(f.path == g or f.path.startswith(g + "/") for g in given)}
        left_out = tuple(_problem(f) for f in bad + empty if f.path in val_paths | named)
        if len(left_out) == 1:  # one file, and why, on the one line
            raise CorpusError(f"{flag('val_file')}: no usable text in {left_out[0]}")
        raise CorpusError(
            f"{flag('val_file')}: no usable text in {', '.join(escaped(Path(v)) for v in source.val_files)}",
            details=left_out,
        )
    return Corpus(
        source, train, val, bad + empty, result.charset, directory, found.roots, found.shipped, from_cache,
        found.irregular, found.other_case,
    )  # fmt: skip


def _scanned(
    train: tuple[Document, ...],
    val: tuple[Document, ...],
    progress: Progress,
    what: str,
    *,
    cache_needed: bool,
    skip_unreadable: bool = False,
) -> tuple[Path, scanning.ScanResult, bool]:
    """Hash the documents, then take the first reading's results from the
    cache or read them (and cache them: where the cache cannot be written,
    an error if `cache_needed`, else only the next reading's shortcut is
    lost): their folder in the cache, the results, and whether they came
    from it. `what` names the text in an error; a file that cannot be read
    is one, unless `skip_unreadable` (a result with its problem)."""
    total = sum(d.size for d in train + val)
    hashes, done = [], 0
    # Files that cannot be read (no permission, an I/O error), with
    # `skip_unreadable` left out as files that are not text are, by their
    # place among the documents; never cached.
    unread: dict[int, Scanned] = {}
    for k, d in enumerate(train + val):
        try:
            hashes.append(_hash(d.path, progress, done, total))
        except OSError as err:
            if not skip_unreadable:
                raise cannot_read(d.path, err, several=len(train + val) > 1) from None
            unread[k] = Scanned(str(d.path), d.size, "", 0, unreadable(err))
        done += d.size
    if unread:
        train, val = (
            tuple(d for k, d in enumerate(train) if k not in unread),
            tuple(d for k, d in enumerate(val, len(train)) if k not in unread),
        )
    docs = train + val
    directory = cache.root() / cache.key(hashes[: len(train)], hashes[len(train) :])
    result = cache.load_scan(directory, docs, hashes, counted=len(val))
    from_cache = result is not None
    if result is None:
        result = scanning.scan(docs, progress, counted=len(val))
        if [f.sha256 for f in result.files] != hashes:
            raise CorpusError(f"the {what} changed while it was being read; run again")
        try:
            cache.save_scan(directory, result)
        except cache.CacheUnwritable:
            if cache_needed:
                raise
    if unread:
        readable = iter(result.files)
        files = [unread[k] if k in unread else next(readable) for k in range(len(docs) + len(unread))]
        result = dataclasses.replace(result, files=tuple(files))
    return directory, result, from_cache


def _badly_named(found: Found) -> tuple[Scanned, ...]:
    """The files --skip-bad-files left out for their names (never read)."""
    return tuple(Scanned(path, 0, "", 0, BAD_NAME) for path in found.badly_named)


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
    directory, result, from_cache = _scanned(
        (), found.train, progress, "text", cache_needed=False, skip_unreadable=source.skip_bad_files
    )
    alone = given_alone(source, found)
    usable, unusable = [], []
    for f in result.files:
        problem = f.problem or EMPTY  # for a file of no characters
        if f.problem is None and f.chars:
            usable.append(f)
        elif alone:
            raise refusal(f.path, problem, "the text")
        else:
            unusable.append(dataclasses.replace(f, problem=problem))
    unusable += _badly_named(found)
    leave_out([(f.path, f.problem or EMPTY) for f in unusable], source.skip_bad_files, bool(usable))
    val, skipped = tuple(usable), tuple(unusable)
    return Corpus(source, (), val, skipped, "", directory, found.roots, found.shipped, from_cache)


def refuse_unfit_validation(corpus: Corpus, chars: str) -> None:
    """Refuse, for a new run whose vocabulary is `chars`, a --val-file it
    could not validate on (`_refuse_copied`, `_refuse_unscored`). Only new
    runs: runs made before these checks still resume and evaluate."""
    _refuse_copied(corpus)
    _refuse_unscored(corpus, chars)


def _refuse_copied(corpus: Corpus) -> None:
    """A --val-file that holds a training file's text under another path (a
    copy): the model would validate on what it trains on."""
    by_hash = {d.sha256: d for d in corpus.train}
    for d in corpus.val:
        if d.sha256 in by_hash:
            raise CorpusError(
                f"{flag('val_file')} {shown(d.path)} has the same text as the training file "
                f"{shown(by_hash[d.sha256].path)}: validation must be text the model does not train on"
            )


def _refuse_unscored(corpus: Corpus, chars: str) -> None:
    """--val-file texts of which more is left out (characters `chars`
    lacks) than left to score: a validation loss over the few left would be
    logged as the run's."""
    gone = sum(sum(out.values()) for out in corpus.unknown_in_val(chars))
    left = sum(d.chars for d in corpus.val) - gone
    if gone > left >= 2:  # fewer left: `open_tokens` says there is nothing to score
        files = ", ".join(shown(d.path) for d in corpus.val)
        raise CorpusError(
            f"{flag('val_file')} {files}: most of the text is not in the model's vocabulary ({gone:,} characters "
            f"skipped, {left:,} left): a validation loss over the rest would not say how the model does on it; "
            "give a validation text like the training text"
        )


def _problem(file: Scanned) -> str:
    """A file left out or refused, and why, on a line of its own."""
    return f"{shown(file.path)}: {file.problem}"
