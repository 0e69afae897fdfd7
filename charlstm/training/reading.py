"""A run's text, read for a session, and what is said of it on the way.

`read` prepares the corpus a Source names (`text/tokens.prepare`) and
reports to the caller's `on_event` the files it left out and the characters
a text's author rarely means to teach (Windows line endings, a byte-order
mark); `report_ready` reports the corpus a run will train on, once it is
encoded.
"""

from __future__ import annotations

from pathlib import Path

from charlstm.errors import shown
from charlstm.flags import flag
from charlstm.text import manifest
from charlstm.text.corpus import Source
from charlstm.text.scan import Progress
from charlstm.text.textfile import EMPTY, files_holding
from charlstm.text.tokens import Corpus, prepare
from charlstm.training import events
from charlstm.training.events import EventHandler
from charlstm.training.run import Run


def progress_reporter(on_event: EventHandler | None) -> Progress:
    """The reading's progress (`text/scan.py`) as Reading events to `on_event`."""

    def progress(phase: str, done: int, total: int) -> None:
        if on_event is not None:
            on_event(events.Reading(phase, done, total))

    return progress


def read(source: Source, on_event: EventHandler | None, step: int = 0) -> Corpus:
    """The corpus `source` names, checked; each file left out reported to
    `on_event`, and its warnings as of `step` (a resumed run's)."""
    corpus = prepare(source, progress_reporter(on_event))
    if on_event is not None:
        for bad in corpus.skipped:
            if bad.problem != EMPTY:
                on_event(events.Skipped(bad.path, bad.problem or ""))
        empty = tuple(f.path for f in corpus.skipped if f.problem == EMPTY)
        if empty:  # one event for them all: a source tree may have hundreds of empty __init__.py
            on_event(events.SkippedEmpty(empty))
        if corpus.not_files:
            on_event(events.SkippedNotFiles(corpus.not_files))
        if corpus.other_case:
            on_event(events.SkippedOtherCase(corpus.other_case))
        for message in _unwanted_characters(corpus):
            on_event(events.Warned(step, "text", message))
    return corpus


def _unwanted_characters(corpus: Corpus) -> list[str]:
    """Warnings for characters a text's author rarely means to teach: the
    model learns them like any other and writes them in its samples. The
    files are read as they are, byte for byte (a run resumes on the same
    text), so converting them is the user's choice; of several, the first
    few that hold them are named."""
    found = []
    if "\r" in corpus.charset and _no_windows_line_ends(corpus):
        where = _in_files(corpus, b"\r")
        found.append(
            f"the text{where} has carriage returns ('\\r') but no Windows line endings ('\\r\\n'): the model "
            "learns and writes them, and in a terminal each one sends its line back to the start; "
            "remove them first (tr -d '\\r' < FILE > NEW), or where they end lines, as in old Mac files, make "
            "them '\\n' (tr '\\r' '\\n' < FILE > NEW), unless they are what you want"
        )
    elif "\r" in corpus.charset:
        where = _in_files(corpus, b"\r")
        found.append(
            f"the text{where} has carriage returns ('\\r': Windows line endings, '\\r\\n'): the model learns and "
            f"writes them, and {flag('stop')} '\\n\\n' will not meet its blank lines ('\\r\\n\\r\\n'); convert "
            "the files to '\\n' line endings first (dos2unix FILE) unless that is what you want"
        )
    if "\ufeff" in corpus.charset:
        where = _in_files(corpus, "\ufeff".encode(), at_start=True)
        found.append(
            f"the text{where} has U+FEFF, the byte-order mark some editors start a UTF-8 file with: the model "
            "learns it and writes it, invisible, in its samples; remove it from the files first "
            "(sed -i '1s/^\\xEF\\xBB\\xBF//' FILE)"
        )
    return found


def _no_windows_line_ends(corpus: Corpus) -> bool:
    """Whether the training files hold no '\\r\\n' at all, as far as
    the bounded search reads (where it stops short, they may)."""
    files, whole = files_holding([Path(d.path) for d in corpus.train], b"\r\n", limit=1)
    return whole and not files


def _in_files(corpus: Corpus, needle: bytes, at_start: bool = False) -> str:
    """' (in a.txt, b.txt, ...)': where a corpus of several files holds
    `needle`, as far as a bounded search finds; '' for one file, or none found."""
    if len(corpus.train) < 2:
        return ""
    files, whole = files_holding([Path(d.path) for d in corpus.train], needle, at_start=at_start)
    if not files:
        return ""
    more = "" if whole else ", and maybe more"
    return f" (in {', '.join(shown(p) for p in files)}{more})"


def report_ready(run: Run, on_event: EventHandler | None) -> None:
    """Tell `on_event` of the corpus `run` trains on (CorpusReady), once it is encoded."""
    if on_event is None:
        return
    entry, train, val = run.corpus_entry, run.corpus.train, run.corpus.val
    on_event(
        events.CorpusReady(
            path=run.corpus.path,
            files=len(train),
            val_files=len(val),
            chars=sum(d.chars for d in train),
            size=sum(d.size for d in train),
            vocab_size=run.vocab.size,
            validation=manifest.describe_validation(entry, run.train_config.val_fraction),
            tokens=str(run.tokens.path),
            encoded_seconds=run.tokens.encoded_seconds,
            checked=not run.corpus.from_cache,
            val_chars=sum(d.chars for d in val),
            val_size=sum(d.size for d in val),
            boundary=run.vocab.boundary_id is not None,
            skipped=dict(run.tokens.skipped),
            sources=run.corpus.sources,
        )
    )
