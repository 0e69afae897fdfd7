"""What a corpus is made of: the files a user names, found and listed.

A corpus is one or more documents: text files named one by one, or the
files of a folder that match a pattern (`--glob`, default `**/*.txt`;
which of a folder's files are read is `text/folder.py`'s). Optionally,
other files are the validation text (`--val-file`) instead of a held-out
share of the corpus. Reading them (checking, hashing, encoding) is
`text/scan.py`'s; preparing a corpus from them is `text/tokens.py`'s,
encoding it `text/tokenfile.py`'s, and caching the results `text/cache.py`'s.

`read_texts` reads the files of a Source whole, for the commands that score
or inspect text in memory; whether one file is text, and reading it, is
`text/textfile.py`'s.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NoReturn

from charlstm.arguments import true_or_false
from charlstm.errors import ConfigError, CorpusError, first_few, shown
from charlstm.flags import flag, option
from charlstm.text.folder import DEFAULT_GLOB, escaped, folder_files
from charlstm.text.textfile import EMPTY, TextFile, cannot_read, encoding_hint, read_checked, read_corpus, read_size


@dataclass(frozen=True)
class Source:
    """The files to read, as the user named them."""

    paths: tuple[str, ...]  # text files and folders, in order
    glob: str = DEFAULT_GLOB  # which files of a folder are documents
    # Validation documents, files and folders (their files that `glob` picks),
    # instead of a held-out share; a training folder's files among them are left out of training.
    val_files: tuple[str, ...] = ()
    skip_bad_files: bool = False  # leave out files that are not UTF-8 text instead of stopping

    def __post_init__(self) -> None:
        # Stored in every checkpoint, whose reader refuses anything but a bool:
        # "yes" once trained a whole run that could then never be read.
        object.__setattr__(self, "skip_bad_files", true_or_false(self.skip_bad_files, "skip_bad_files"))
        if not isinstance(self.glob, str):  # a list of patterns would fail deep inside, as an AttributeError
            raise ConfigError(
                f"glob must be one pattern (a str), got {self.glob!r}; for several kinds of file, one pattern with "
                "braces: '**/*.{txt,md}'"
            )
        if not self.glob:  # which would have read as the default: eval took it so, train refused it
            raise ConfigError(f"{flag('glob')} must not be empty; leave it out for every .txt file ({DEFAULT_GLOB})")

    def arguments(self) -> list[str]:
        """The words of a `charlstm train` command line that read this text
        the same way: its paths, then --glob, --skip-bad-files and --val-file
        where they differ from the defaults."""
        words = list(self.paths)
        words += [option("glob"), self.glob] if self.glob != DEFAULT_GLOB else []
        words += [option("skip_bad_files")] if self.skip_bad_files else []
        return words + [word for path in self.val_files for word in (option("val_file"), path)]


@dataclass(frozen=True)
class Document:
    path: Path  # absolute
    size: int  # bytes


@dataclass(frozen=True)
class Found:
    """The documents a Source names, in the order they are read."""

    train: tuple[Document, ...]
    val: tuple[Document, ...]
    shipped: bool  # a shipped corpus stood in for a name not found here
    roots: tuple[Path, ...]  # the files and folders given, resolved (absolute)
    # Entries of the folders given that are neither files nor folders (a link
    # to nothing, a pipe): left out, (path, why) each.
    irregular: tuple[tuple[str, str], ...] = ()
    # Files of the folders given that the default pattern leaves out only for
    # the case of their extension (NOTES.TXT), absolute paths.
    other_case: tuple[str, ...] = ()
    # Files whose names are not UTF-8, left out with --skip-bad-files: their
    # names with the bytes escaped (a run records and names only those).
    badly_named: tuple[str, ...] = ()


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


def resolve_corpus_path(path: str, what: str = "corpus file or folder") -> tuple[Path, bool]:
    """The file or folder to read, and whether it is a shipped corpus standing
    in for `path`; `what` names it in the error."""
    given = Path(path)
    if given.exists():
        return given, False
    if path == "-":  # `cat text | charlstm train -`, as other tools read stdin
        raise CorpusError(
            f"{what} '-': charlstm does not read text from stdin: it reads a text twice, to check it and then "
            "to encode it; save it to a file first"
        )
    shipped = shipped_corpora()
    if given.name in shipped and given.parent == Path():
        return shipped[given.name], True
    hint = f" (shipped corpora: {', '.join(shipped)})" if shipped else ""
    raise CorpusError(f"{what} not found: {path}{hint}")


def _regular(path: Path, named: str) -> Path:
    """`path`, if it is a regular file: a pipe or a device would block the
    second of the two readings (one to check the text, one to encode it)."""
    if not path.is_file():
        raise CorpusError(
            f"{named} is not a regular file (a pipe or a device?): charlstm reads a text twice, to check it and "
            "then to encode it; save it to a file first"
        )
    return path


def _document(path: Path) -> Document:
    return Document(path.resolve(), read_size(path))


def find(source: Source) -> Found:
    """The documents `source` names: every file given, and the matching
    files of every folder given; each file once, in the order given."""
    if not source.paths:
        raise CorpusError("no corpus given: name a text file or a folder")
    files: list[Path] = []
    named: list[Path] = []  # the training files named one by one, not found in a folder
    roots: list[Path] = []
    irregular: list[tuple[str, str]] = []  # a folder's entries that are not files: (path, why)
    other_case: list[str] = []  # a folder's files that the default pattern leaves out for their case (.TXT)
    any_shipped = any_folder = False
    for given in source.paths:
        path, shipped = resolve_corpus_path(str(given))
        roots.append(path.resolve())
        any_shipped |= shipped
        if path.is_dir():
            any_folder = True
            found, skipped, cased = folder_files(path, source.glob, source.skip_bad_files)
            files += found
            irregular += skipped
            other_case += cased
        else:
            files.append(_regular(path, str(given)))
            named.append(path)
    val_files: list[Path] = []
    for given in source.val_files:
        path = Path(given)
        if path.is_dir():
            any_folder = True
            try:
                found, skipped, cased = folder_files(path, source.glob, source.skip_bad_files)
                val_files += found
                irregular += skipped
                other_case += cased
            except CorpusError as err:
                # --glob picks the training folders' files too: where the validation
                # folder's differ, naming them one by one is the way.
                raise CorpusError(
                    f"{flag('val_file')} {given}: {err}; or give the validation files one by one"
                ) from None
        elif path.exists():
            val_files.append(_regular(path, f"{flag('val_file')} {given}"))
        else:
            raise CorpusError(f"{flag('val_file')} {given}: not found")
    if source.glob != DEFAULT_GLOB and not any_folder:
        raise CorpusError(f"{flag('glob')} picks the files of a folder, but no folder was given")
    badly_named = _undecodable([*files, *val_files])
    if badly_named and not source.skip_bad_files:
        _refuse_undecodable_names(badly_named)
    files, val_files = ([p for p in paths if p not in badly_named] for paths in (files, val_files))
    val = _unique(_document(p) for p in val_files)
    held = {d.path for d in val}
    both = held & {_document(p).path for p in named}
    if both:
        raise CorpusError(
            f"{shown(min(both))} is both a training file and a {flag('val_file')}: validation must be text "
            "the model does not train on"
        )
    # A folder's files given with --val-file too (`train books --val-file books/held-out`) are its validation text.
    train = [d for d in _unique(_document(p) for p in files) if d.path not in held]
    if not train and files:
        raise CorpusError(f"every file of the corpus is a {flag('val_file')}: nothing is left to train on")
    return Found(
        tuple(train), tuple(val), any_shipped, tuple(roots), tuple(dict.fromkeys(irregular)),
        tuple(dict.fromkeys(other_case)), tuple(escaped(p.resolve()) for p in badly_named),
    )  # fmt: skip


# Why a file whose name is not UTF-8 is left out, and how to read it.
BAD_NAME = "its name is not valid UTF-8; rename it to read it (convmv -f latin1 -t utf8 --notest FILES, or mv)"


def _undecodable(paths: Sequence[Path]) -> list[Path]:
    """The files whose names are not UTF-8 (a Latin-1 name from an old
    archive): a run records its files' paths in JSON and names them in its
    messages, and neither can hold such a name."""
    bad = []
    for path in paths:
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            bad.append(path)
    return bad


def _refuse_undecodable_names(paths: Sequence[Path]) -> None:
    bad = [escaped(p) for p in paths]  # the bytes shown as \xe9
    what = "a file's name is" if len(bad) == 1 else f"{len(bad)} files' names are"
    raise CorpusError(
        f"{what} not valid UTF-8 ({first_few(bad, 3)}): rename {'it' if len(bad) == 1 else 'them'} "
        f"(convmv -f latin1 -t utf8 --notest FILES, or mv), or leave {'it' if len(bad) == 1 else 'them'} out with "
        f"{flag('skip_bad_files')}"
    )


def _unique(documents: Iterable[Document]) -> list[Document]:
    seen: set[Path] = set()
    out = []
    for d in documents:
        if d.path not in seen:
            seen.add(d.path)
            out.append(d)
    return out


def given_alone(source: Source, found: Found) -> bool:
    """Whether `source` names one file and nothing else (not a folder, even
    of one file): it must be usable text, unless `skip_bad_files`."""
    return len(source.paths) == 1 and not found.roots[0].is_dir() and not source.skip_bad_files


def refuse_unusable(
    bad: Sequence[tuple[str, str]], alone: bool, val_paths: Collection[str] = (), val_others: bool = False
) -> NoReturn:
    """Stop on files that are not text, (path, problem) each: the one file
    of a corpus in the message itself; several each on a line of its own
    (the error's details, which the CLI prints before it), every one at
    once, so that they are fixed together. A validation file is named as
    one: --skip-bad-files would leave it out and then find no validation
    text, unless the validation texts have other files with text in them
    (`val_others`)."""
    lines = tuple(f"{flag('val_file')} {shown(p)}: {why}" if p in val_paths else f"{shown(p)}: {why}" for p, why in bad)
    hint = encoding_hint(why for _, why in bad)
    if alone:
        raise CorpusError(lines[0] + hint)
    them = "it" if len(bad) == 1 else "them"
    vals = [p in val_paths for p, _ in bad]
    if all(vals) and val_others:  # a validation folder's other files are still there
        advice = f"fix {them}, or leave {them} out with {flag('skip_bad_files')}"
    elif all(vals):
        advice = f"fix {them}, or give another {flag('val_file')}"
    elif any(vals):
        advice = (
            f"fix {them}, or leave the training files out with {flag('skip_bad_files')} and give another "
            f"{flag('val_file')}"
        )
    else:
        advice = f"fix {them}, or leave {them} out with {flag('skip_bad_files')}"
    what = "a file is" if len(bad) == 1 else f"{len(bad)} files are"
    names = first_few([shown(p) for p, _ in bad], 3)
    raise CorpusError(f"{what} not usable text ({names}): {advice}{hint}", details=lines)


def leave_out(unusable: Sequence[tuple[str, str]], skip_bad_files: bool, any_usable: bool) -> tuple[str, ...]:
    """ "PATH: problem" for each file of several left out, (path, problem)
    each: an empty one always, one that is not text with `skip_bad_files`,
    which are otherwise refused, all at once; nor may every file be left out."""
    bad = [(path, problem) for path, problem in unusable if problem != EMPTY]
    if bad and not skip_bad_files:
        refuse_unusable(bad, alone=False)
    lines = tuple(f"{shown(path)}: {problem}" for path, problem in unusable)
    if not any_usable:
        raise CorpusError(all_left_out([path for path, _ in unusable]), details=lines)
    return lines


def read_texts(source: Source) -> tuple[tuple[TextFile, ...], tuple[str, ...]]:
    """The documents `source` names (its `val_files` aside), each read whole
    as `read_corpus` reads one, for the commands that score text in memory;
    and "PATH: problem" for each file left out. Of a folder's files or
    several, empty ones are left out (a source tree's empty __init__.py files
    are normal); with `skip_bad_files` those that are not UTF-8 text too,
    which otherwise stop the reading, as one file given alone does."""
    found = find(source)
    if given_alone(source, found):
        return (read_corpus(found.train[0].path, "the text"),), ()
    files, unusable = [], [(path, BAD_NAME) for path in found.badly_named]
    for doc in found.train:
        try:
            text, problem = read_checked(doc.path)
        except OSError as err:
            if not source.skip_bad_files:
                raise cannot_read(doc.path, err, several=True) from None
            text, problem = None, unreadable(err)
        if text is not None:
            files.append(text)
        else:
            unusable.append((str(doc.path), problem or EMPTY))
    return tuple(files), leave_out(unusable, source.skip_bad_files, bool(files))


def unreadable(err: OSError) -> str:
    """Why a file that cannot be read is left out (--skip-bad-files)."""
    return f"cannot be read ({err.strerror})"


def all_left_out(paths: Sequence[str]) -> str:
    """The error when every file was left out, naming the first few."""
    return f"no usable text: every file was left out ({first_few([shown(p) for p in paths], 3)})"
