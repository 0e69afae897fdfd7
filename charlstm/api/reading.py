"""How a model reads the texts a caller gives `evaluate` and `inspect`: as
documents or end to end, without the characters its vocabulary lacks, and
never a file's name in place of its text; and the run's held-out text, read
again from its corpus.

A text is read the way the model's training read its own: where it learned
several documents, each starts after the boundary symbol (U+FDD0) from a
zero state; where it learned one text, documents run end to end.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from charlstm.api.runs import TextFiles
from charlstm.errors import ConfigError, CorpusError
from charlstm.text import manifest, streams
from charlstm.text.tokenfile import open_tokens
from charlstm.text.tokens import prepare
from charlstm.text.vocab import BOUNDARY, Vocab


def one_document(
    vocab: Vocab, text: str | Sequence[str] | TextFiles, documents: bool
) -> str | Sequence[str] | TextFiles:
    """A text given alone is one document: a model trained on several
    reads it from its start, after the boundary symbol, as `charlstm
    eval` reads a file and its validation read its own documents (read
    from a zero state without the symbol, its first characters scored
    worse than they are)."""
    if isinstance(text, str) and not documents and BOUNDARY in vocab.chars:
        return [text]
    return text


def joined(vocab: Vocab, texts: Sequence[str]) -> tuple[str, dict[str, int]]:
    """Documents as one text, as this model's training read them: each
    after the boundary symbol where it learned several, else end to end;
    and the boundary symbols found in them, left out of the first."""
    check_documents(texts)
    if BOUNDARY not in vocab.chars:  # known() counts the symbol as unknown
        return "".join(texts), {}
    stray = sum(text.count(BOUNDARY) for text in texts)
    marked = "".join(BOUNDARY + text.replace(BOUNDARY, "") for text in texts)
    return marked, {BOUNDARY: stray} if stray else {}


def known(
    vocab: Vocab, text: object, method: str, documents: bool = False, verb: str | None = None
) -> tuple[str, dict[str, int]]:
    """`text` without the characters the model never saw, and how often
    each occurred; the boundary symbol counts as one unless the text
    marks `documents` with it. `method` is the Model's method the text
    was given to, `verb` what it does with it (default: the method's name)."""
    if not isinstance(text, str):
        hint = f": read the file first (Path({str(text)!r}).read_text())" if isinstance(text, Path) else ""
        raise ConfigError(f"{method} takes the text itself, got {type(text).__name__}{hint}")
    unknown = vocab.unknown(text)
    if not documents and BOUNDARY in vocab.chars and BOUNDARY in text:
        unknown.append(BOUNDARY)
    skipped = {c: text.count(c) for c in unknown}
    if skipped:
        text = text.translate({ord(c): None for c in skipped})
        if len(text) < 2:
            left = sum(skipped.values())
            raise CorpusError(
                f"almost none of the text is in the model's vocabulary ({left:,} character{'s' * (left != 1)} "
                f"skipped, {len(text)} left): nothing to {verb or method}"
            )
    return text, skipped


def check_documents(texts: Sequence[Any]) -> None:
    if not texts:
        raise ConfigError("no documents given: nothing to read")
    for text in texts:
        if not isinstance(text, str):
            raise ConfigError(f"the documents must be texts, got {type(text).__name__}")


def refuse_a_file_name(text: object, method: str) -> None:
    """Refuse a caller's str that is one short line naming an existing file
    or folder: a path passed where its text belongs, whose own characters
    would be scored. (A list's documents are texts by the caller's word, as
    `charlstm inspect --text` passes its text.)"""
    if not isinstance(text, str) or len(text) > 4096 or "\n" in text or not text.strip():
        return
    try:
        kind = "file" if Path(text).is_file() else "folder" if Path(text).is_dir() else None
    except (OSError, ValueError):  # too long a name, a NUL in it
        return
    if kind is None and _looks_like_a_file_name(text):
        raise ConfigError(
            f"{method} takes the text itself, and {text!r} looks like the name of a file, but there is no such "
            f"file: check the name (to score that text as it stands, pass it in a list: [{text!r}])"
        )
    if kind is not None:
        first = f"read it first (Path({text!r}).read_text()), or " if kind == "file" else ""
        raise ConfigError(
            f"{method} takes the text itself, and {text!r} is the name of a {kind}: {first}pass "
            f"charlstm.api.find_texts({text!r}) to read {'it' if kind == 'file' else 'its files'} in place"
        )


# The endings of the text files a caller is likeliest to name.
_TEXT_SUFFIXES = frozenset({".txt", ".md", ".rst", ".py", ".json", ".jsonl", ".csv", ".tsv", ".html", ".xml", ".log"})


def _looks_like_a_file_name(text: str) -> bool:
    """A word with a text file's ending, or a path of folders to one with
    any ending (data/tset.txt, notes.md): a typo'd name, which would
    otherwise be scored as the text it spells. Not a web address."""
    if any(c.isspace() for c in text) or "://" in text:
        return False
    path = Path(text)
    return path.suffix.lower() in _TEXT_SUFFIXES or ("/" in text and 1 < len(path.suffix) <= 6)


def held_out_ids(
    corpus: dict[str, Any],
    files: dict[str, Any] | None,
    corpus_path: str,
    corpus_sha256: str,
    vocab: Vocab,
    val_fraction: float,
) -> tuple[streams.Segments, dict[str, int]]:
    """The ids of the text a run's validation scored, read again from its
    corpus (`corpus`, what the run recorded, and `files`, its corpus.json
    where there is one: text/manifest.py), which must be the one it trained
    on; and the characters of `--val-file` texts the vocabulary lacks, which
    validation left out: how often each."""
    entry = corpus or {"path": corpus_path, "sha256": corpus_sha256}
    source = manifest.source_of(entry)
    manifest.refuse_gone(source, "to read its validation text")
    try:
        prepared = prepare(source)
    except CorpusError as err:
        raise CorpusError(
            f"the run's corpus {corpus_path} is not there to take its validation text from ({err})",
            details=err.details,  # the files it names "above"
        ) from None
    if not prepared.matches(corpus_sha256):
        what = "; ".join(manifest.changes(entry, files, prepared)) or "sha256 differs"
        raise CorpusError(
            f"the text at {corpus_path} is not the corpus the run trained on ({what}): changed since, or another "
            "text, so its validation text is not the one the model was scored on"
        )
    tokens = open_tokens(prepared, vocab)
    hashes = [d.sha256 for d in prepared.train]
    held_out = streams.split_documents(tokens, val_fraction, hashes, manifest.copies_together(entry))
    return streams.Segments(tokens.ids, held_out.val, tokens.checked), dict(tokens.skipped)
