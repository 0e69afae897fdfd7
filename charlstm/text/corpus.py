"""What a corpus is made of: the files a user names, found and listed.

A corpus is one or more documents: text files named one by one, or the
files of a folder that match a pattern (`--glob`, default `**/*.txt`;
hidden files and folders are left out). Optionally, other files are the
validation text (`--val-file`) instead of a held-out share of the corpus.
Reading them (checking, hashing, encoding) is `text/scan.py`'s; preparing a
corpus from them is `text/tokens.py`'s, and caching the results `text/cache.py`'s.

`read_texts` reads the files of a Source whole, for the commands that score
or inspect text in memory; whether one file is text, and reading it, is
`text/textfile.py`'s.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NoReturn

from charlstm.errors import CorpusError, first_few, shown
from charlstm.flags import flag
from charlstm.text.textfile import EMPTY, TextFile, encoding_hint, read_checked, read_corpus, read_size

DEFAULT_GLOB = "**/*.txt"
DEFAULT_SUFFIX = ".txt"  # what DEFAULT_GLOB picks, in this case only
ANY_CASE_GLOB = "**/*.[tT][xX][tT]"


@dataclass(frozen=True)
class Source:
    """The files to read, as the user named them."""

    paths: tuple[str, ...]  # text files and folders, in order
    glob: str = DEFAULT_GLOB  # which files of a folder are documents
    # Validation documents, files and folders (their files that `glob` picks),
    # instead of a held-out share; a training folder's files among them are left out of training.
    val_files: tuple[str, ...] = ()
    skip_bad_files: bool = False  # leave out files that are not UTF-8 text instead of stopping

    def arguments(self) -> list[str]:
        """The words of a `charlstm train` command line that read this text
        the same way: its paths, then --glob, --skip-bad-files and --val-file
        where they differ from the defaults."""
        words = list(self.paths)
        words += [flag("glob"), self.glob] if self.glob != DEFAULT_GLOB else []
        words += [flag("skip_bad_files")] if self.skip_bad_files else []
        return words + [word for path in self.val_files for word in (flag("val_file"), path)]


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
    shipped = shipped_corpora()
    if given.name in shipped and given.parent == Path():
        return shipped[given.name], True
    hint = f" (shipped corpora: {', '.join(shipped)})" if shipped else ""
    raise CorpusError(f"{what} not found: {path}{hint}")


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


# What a charlstm run directory holds: its corpus record from its start
# (text/manifest.py), its log from its first report (training/runlog.py);
# named here, the lowest layer that needs them. Which folders count as runs
# depends on the question: here, not to be read as text (the strictest, as
# a dataset may hold a folder named checkpoints/); for `charlstm runs`, one
# with checkpoints to sample from (training/catalog.py); for `plot`, one
# with a log (api/runs.py).
RUN_RECORD, RUN_LOG = "corpus.json", "metrics.jsonl"
SEARCH_RECORD = "trials.json"  # what a search's folder holds beside its trials (training/tune.py)


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` is a charlstm run: its corpus record, corpus.json,
    and its log (metrics.jsonl) or checkpoints/. Both, so that a folder of
    texts with a corpus.json of its own (a dataset's metadata) is not one;
    either of the second, since a run stopped before its first save has no
    checkpoints/ and a search's losing trial keeps its log but not them."""
    return (folder / RUN_RECORD).is_file() and ((folder / RUN_LOG).is_file() or (folder / "checkpoints").is_dir())


def _in_run(path: Path, folder: Path, runs: dict[Path, bool]) -> bool:
    """Whether `path` lies in a charlstm run directory under `folder`
    (`is_run_folder`): `train .` must not read its own runs' samples and
    checkpoint files as text. `runs` caches the answers."""
    for parent in path.relative_to(folder).parents[:-1]:  # not `folder` itself: refused above
        where = folder / parent
        if where not in runs:
            runs[where] = is_run_folder(where)
        if runs[where]:
            return True
    return False


def braces(pattern: str) -> list[str]:
    """A pattern's alternatives, as a shell expands its braces:
    '**/*.{txt,md}' -> ['**/*.txt', '**/*.md'] (nested ones too). A brace
    without a comma inside, or without its pair, is a plain character."""
    depth, start = 0, -1
    for i, ch in enumerate(pattern):
        if ch == "{":
            depth, start = depth + 1, i if depth == 0 else start
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                parts: list[str] = []
                level, last = 0, start + 1
                for j in range(start + 1, i):  # split at the commas of this level only
                    level += {"{": 1, "}": -1}.get(pattern[j], 0)
                    if pattern[j] == "," and level == 0:
                        parts, last = [*parts, pattern[last:j]], j + 1
                if not parts:  # no comma: a literal brace pair; expand what follows it
                    return [pattern[: i + 1] + rest for rest in braces(pattern[i + 1 :])]
                parts.append(pattern[last:i])
                head, tail = pattern[:start], pattern[i + 1 :]
                return [alt for part in parts for alt in braces(head + part + tail)]
    return [pattern]


def _folder_files(folder: Path, pattern: str) -> tuple[list[Path], list[tuple[str, str]], list[str]]:
    """The files of `folder` matching `pattern`, sorted by their path inside
    it; hidden ones and those of charlstm's runs left out. And the entries
    matching it that are neither files nor folders, (path, why) each: links
    to nothing, pipes, sockets and devices, which are left out and said to be.
    And, for the default pattern, the files it leaves out only for the case
    of their extension (`NOTES.TXT`: the pattern is case-sensitive, as a
    shell's is), said to be too: from the same walk of the folder."""
    if is_run_folder(folder):
        # Named by a slip: `train RUN` meant to fine-tune, or `eval RUN RUN`.
        raise CorpusError(
            f"{folder} is a charlstm run, not text (a command names its run before its text; to fine-tune from "
            f"it: charlstm train TEXT {flag('init_from')} {folder})"
        )
    runs: dict[Path, bool] = {}
    default = pattern == DEFAULT_GLOB
    try:
        # The default's extension in any case, in the same walk: NOTES.TXT is
        # named, not read (normcase: on Windows the pattern took any case).
        alternatives = [ANY_CASE_GLOB] if default else braces(pattern)
        named = dict.fromkeys(p for alternative in alternatives for p in folder.glob(alternative))
        candidates = [p for p in named if not _hidden(p.relative_to(folder)) and not _in_run(p, folder, runs)]
        matches, irregular, other_case = [], [], []
        for p in candidates:  # one look at each (a folder of many files: a stat each, not two)
            if default and not os.path.normcase(p.name).endswith(DEFAULT_SUFFIX):
                if p.is_file():
                    other_case.append(_escaped(p.absolute()))
            elif p.is_file():
                matches.append(p)
            elif not p.is_dir():
                irregular.append((_escaped(p.absolute()), _not_a_file(p)))
    except (ValueError, NotImplementedError) as err:  # a malformed pattern
        raise CorpusError(f"{flag('glob')} {pattern!r}: {err}") from None
    except OSError as err:
        raise CorpusError(f"cannot list folder {folder}: {err.strerror}") from None
    if not matches:
        # The files a pattern could pick: hidden ones never are.
        others = [
            p
            for p in folder.rglob("*")
            if p.is_file() and not _hidden(p.relative_to(folder)) and not _in_run(p, folder, runs)
        ]
        kinds = Counter(p.suffix or "(no extension)" for p in others)
        has = ", ".join(f"{n} {suffix}" for suffix, n in kinds.most_common(5))
        hidden = any(part.startswith(".") and part not in (".", "..") for part in Path(pattern).parts)
        why = "; hidden files and folders (names starting with '.') are never read" if hidden else ""
        # Its commonest kind of file, where it has one with an extension ('**/*.md'), else every file.
        common = [suffix for suffix, _ in kinds.most_common(1) if suffix.startswith(".")]
        example = f"'**/*{common[0]}'" if common else "'**/*'"
        # A folder of runs, a search's trials.json beside them: not a folder of texts named by a slip of --glob.
        if any(runs.values()) and all(p.name == SEARCH_RECORD for p in others):
            raise CorpusError(f"{folder} holds only charlstm runs, which are never read as text: name your texts")
        if irregular and not kinds:  # what it does have, and why none of it is read
            names = first_few([f"{shown(p)}: {problem}" for p, problem in irregular], 3, "; ")
            raise CorpusError(f"no files in {folder} match {pattern!r}: it has no files, only {names}")
        raise CorpusError(
            f"no files in {folder} match {pattern!r} ({f'it has {has}' if kinds else 'it has no files'}{why}); "
            f"choose others with {flag('glob')}, such as {example}"
        )
    return sorted(matches, key=lambda p: p.relative_to(folder).as_posix()), sorted(irregular), sorted(other_case)


def _escaped(path: Path) -> str:
    """A path as a run records and names it: the bytes of a name that are
    not UTF-8 as escapes (\\xff). The entries a folder leaves out are never
    read, so never refused for their names (`_refuse_undecodable_names`)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _not_a_file(path: Path) -> str:
    """Why an entry of a folder that is neither a file nor a folder is not read."""
    if not path.is_symlink():
        return "not a regular file (a pipe, a socket or a device)"
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    try:
        path.resolve(strict=True)
    except (RuntimeError, OSError) as err:  # a loop: RuntimeError (Python 3.11-3.12) or ELOOP
        if isinstance(err, FileNotFoundError):
            return f"a link to nothing ({target} is not there)"
        if isinstance(err, RuntimeError) or err.errno == errno.ELOOP:
            return f"a link in a loop (to {target})"
        return f"a link that cannot be followed ({err.strerror})"
    return f"a link to {target}, which is not a file"


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
            found, skipped, cased = _folder_files(path, source.glob)
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
                found, skipped, cased = _folder_files(path, source.glob)
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
    _refuse_undecodable_names([*files, *val_files])
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
        tuple(dict.fromkeys(other_case)),
    )  # fmt: skip


def _refuse_undecodable_names(paths: Sequence[Path]) -> None:
    """Stop on files whose names are not UTF-8 (a Latin-1 name from an old
    archive): a run records its files' paths in JSON and names them in its
    messages, and neither can hold such a name."""
    bad = []
    for path in paths:
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            bad.append(_escaped(path))  # its bytes shown as \xe9
    if not bad:
        return
    what = "a file's name is" if len(bad) == 1 else f"{len(bad)} files' names are"
    raise CorpusError(
        f"{what} not valid UTF-8 ({first_few(bad, 3)}): rename {'it' if len(bad) == 1 else 'them'} "
        "(convmv -f latin1 -t utf8 --notest FILES, or mv)"
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


def refuse_unusable(bad: Sequence[tuple[str, str]], alone: bool, val_paths: Collection[str] = ()) -> NoReturn:
    """Stop on files that are not text, (path, problem) each: the one file
    of a corpus in the message itself; several each on a line of its own
    (the error's details, which the CLI prints before it), every one at
    once, so that they are fixed together. A validation file is named as
    one: --skip-bad-files would leave it out and then find no validation
    text."""
    lines = tuple(f"{flag('val_file')} {shown(p)}: {why}" if p in val_paths else f"{shown(p)}: {why}" for p, why in bad)
    hint = encoding_hint(why for _, why in bad)
    if alone:
        raise CorpusError(lines[0] + hint)
    them = "it" if len(bad) == 1 else "them"
    vals = [p in val_paths for p, _ in bad]
    if all(vals):
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
    files, unusable = [], []
    for doc in found.train:
        text, problem = read_checked(doc.path)
        if text is not None:
            files.append(text)
        else:
            unusable.append((str(doc.path), problem or EMPTY))
    return tuple(files), leave_out(unusable, source.skip_bad_files, bool(files))


def all_left_out(paths: Sequence[str]) -> str:
    """The error when every file was left out, naming the first few."""
    return f"no usable text: every file was left out ({first_few([shown(p) for p in paths], 3)})"
