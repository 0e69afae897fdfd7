"""Which files of a folder are a corpus's documents.

A folder's documents are its files that a pattern picks (`--glob`, default
`**/*.txt`, with a shell's braces: `**/*.{txt,md}`), sorted by their path in
it. Hidden files and folders are never read, nor charlstm's own runs under
it (`train .` must not read its samples and checkpoints as text). What a
pattern picks that is not a file (a link to nothing, a pipe) is left out and
named, as are a link to a folder outside it that '**' passes over, and the
files the default pattern leaves out only for the case of their extension
(NOTES.TXT). `corpus.py` gathers the documents of every file
and folder a user names.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import sys
from collections import Counter
from pathlib import Path, PurePosixPath

from charlstm.errors import CorpusError, first_few, shown
from charlstm.flags import flag, option

DEFAULT_GLOB = "**/*.txt"
DEFAULT_SUFFIX = ".txt"  # what DEFAULT_GLOB picks, in this case only
ANY_CASE_GLOB = "**/*.[tT][xX][tT]"


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
    checkpoints/ and a search's losing trial keeps its log but not them. A
    folder that cannot be looked into is not one."""
    try:
        return (folder / RUN_RECORD).is_file() and ((folder / RUN_LOG).is_file() or (folder / "checkpoints").is_dir())
    except PermissionError:  # Python 3.11-3.13's is_file raises it (not ENOENT's False)
        return False


def _in_run(path: Path, folder: Path, runs: dict[Path, bool]) -> bool:
    """Whether `path` lies in a charlstm run directory under `folder`
    (`is_run_folder`): `train .` must not read its own runs' samples and
    checkpoint files as text. `runs` caches the answers."""
    # Not `folder` itself: `folder_files` refuses a run given as the folder.
    for parent in path.relative_to(folder).parents[:-1]:
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


def folder_files(
    folder: Path, pattern: str, skip_unreadable: bool = False
) -> tuple[list[Path], list[tuple[str, str]], list[str]]:
    """The files of `folder` matching `pattern`, sorted by their path inside
    it; hidden ones and those of charlstm's runs left out. And the entries
    matching it that are neither files nor folders, (path, why) each: links
    to nothing, pipes, sockets and devices, which are left out and said to
    be, with the links to folders its '**' passes over and, with
    `skip_unreadable`, the folders it cannot look into (`_walked`), which
    are otherwise refused. And, for the default pattern, the files it leaves
    out only for the case of their extension (`NOTES.TXT`: the pattern is
    case-sensitive, as a shell's is), said to be too: from the same walk of
    the folder."""
    if is_run_folder(folder):
        # Named by a slip: `train RUN` meant to fine-tune, or `eval TEXT RUN` swapped.
        raise CorpusError(
            f"{folder} is a charlstm run, not text (commands name the run first, then the text, as in charlstm "
            f"eval {folder} TEXT; to fine-tune from it: charlstm train TEXT {option('init_from')} {folder})"
        )
    # A run's checkpoints/ or one step of it: their files are the checkpoint library's, never text.
    for above in folder.absolute().parents[:3]:
        if is_run_folder(above):
            raise CorpusError(f"{folder} is inside the charlstm run {shown(above)}, whose files are never read as text")
    if pattern.startswith(("/", "\\")) or Path(pattern).is_absolute():
        raise CorpusError(
            f"{flag('glob')} '{pattern}' names files inside the folder given ({folder}), so it cannot start "
            f"at {pattern[0]}: give the folder as the argument and a pattern inside it, such as '**/*.py'"
        )
    runs: dict[Path, bool] = {}
    default = pattern == DEFAULT_GLOB
    try:
        # The default's extension in any case, in the same walk: NOTES.TXT is
        # named, not read (normcase: on Windows the pattern took any case).
        alternatives = [ANY_CASE_GLOB] if default else braces(pattern)
        with os.scandir(folder):  # glob would find nothing in a folder it cannot read, and say nothing
            pass
        named = dict.fromkeys(p for alternative in alternatives for p in folder.glob(alternative))
        candidates = [p for p in named if not _hidden(p.relative_to(folder)) and not _in_run(p, folder, runs)]
        matches, irregular, other_case = [], [], []
        # Folders listed but not entered (mode r--): their files cannot be looked at.
        blocked: list[tuple[Path, str]] = []
        for p in candidates:  # one look at each (a folder of many files: a stat each, not two)
            try:
                if default and not os.path.normcase(p.name).endswith(DEFAULT_SUFFIX):
                    if p.is_file():
                        other_case.append(escaped(p.absolute()))
                elif p.is_file():
                    matches.append(p)
                elif not p.is_dir():
                    irregular.append((escaped(p.absolute()), _not_a_file(p)))
            except PermissionError as err:
                blocked.append((p.parent, err.strerror or str(err)))
        links, unlisted = _walked(folder, alternatives, runs)
        unlisted = sorted(dict.fromkeys(unlisted + blocked))
    except (ValueError, NotImplementedError) as err:  # a malformed pattern
        raise CorpusError(f"{flag('glob')} '{pattern}': {err}") from None
    except OSError as err:
        raise CorpusError(f"cannot list folder {folder}: {err.strerror}") from None
    if unlisted and not skip_unreadable:
        _refuse_unlisted(unlisted)
    irregular += links + [(escaped(p.absolute()), f"a folder that cannot be read ({why})") for p, why in unlisted]
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
        if "\\" in pattern and os.sep == "/":  # a Windows habit: here a backslash is a character of a name
            why += "; folders in a pattern are separated by '/' here, not '\\'"
        if sys.version_info < (3, 13) and any(alternative.endswith("**") for alternative in alternatives):
            why += "; a pattern that ends in '**' matches folders only, '**/*' every file"
        # The kind asked for, where the folder has it deeper down ('*.md' matches
        # only at the top), else its commonest kind with an extension, else every file.
        asked = [suffix for a in alternatives if (suffix := PurePosixPath(a).suffix) in kinds and "*" not in suffix]
        common = asked or [suffix for suffix, _ in kinds.most_common(1) if suffix.startswith(".")]
        example = f"'**/*{common[0]}'" if common else "'**/*'"
        # A folder of runs, a search's trials.json beside them: not a folder of texts named by a slip of --glob.
        if any(runs.values()) and all(p.name == SEARCH_RECORD for p in others):
            raise CorpusError(f"{folder} holds only charlstm runs, which are never read as text: name your texts")
        if irregular and not kinds:  # what it does have, and why none of it is read
            names = first_few([f"{shown(p)}: {problem}" for p, problem in irregular], 3, "; ")
            raise CorpusError(f"no files in {folder} match '{pattern}': it has no files, only {names}")
        if not kinds:  # no pattern can help: nothing was left out (a walkthrough, 2026-12-06)
            raise CorpusError(f"no files in {folder} match '{pattern}': it has no files{why}")
        raise CorpusError(
            f"no files in {folder} match '{pattern}' (it has {has}{why}); "
            f"choose others with {flag('glob')} (matched inside the folder), such as {example}"
        )
    return sorted(matches, key=lambda p: p.relative_to(folder).as_posix()), sorted(irregular), sorted(other_case)


def _walked(
    folder: Path, patterns: list[str], runs: dict[Path, bool]
) -> tuple[list[tuple[str, str]], list[tuple[Path, str]]]:
    """What a pattern with '**' passes over under `folder` without a word
    from Python's glob, from one walk of it:

    - the links to folders outside it that hold files a pattern of the form
      '**/NAME' would pick there: '**' never goes through a link to a folder
      (Python's, as `find`'s and `grep -r`'s: a link can lead out of the
      tree, or back into it), (path, why) each. A pattern with more after
      '**/' goes through links itself; a link into the tree reads files
      read anyway.
    - the folders it cannot look into (no permission), (path, why) each,
      whose files glob leaves out in silence.

    Both were passed over in silence until walkthroughs found them
    (2026-12-05). Only where a pattern's '**' goes: from the part of it
    before its first wildcard ('docs/**/*.md' walks docs/ alone)."""
    recursive = [p for p in patterns if "**" in p]
    if not recursive:
        return [], []
    names = [p[3:] for p in patterns if p.startswith("**/") and "/" not in p[3:] and "**" not in p[3:]]
    inside = folder.resolve()
    found: list[tuple[str, str]] = []
    unlisted: list[tuple[Path, str]] = []

    def cannot_list(err: OSError) -> None:
        if err.filename is None or Path(err.filename) == folder:
            raise err  # the folder itself: refused
        unlisted.append((Path(err.filename), err.strerror or str(err)))

    starts = {_fixed_part(p) for p in recursive}
    starts = {s for s in starts if not any(o != s and s.is_relative_to(o) for o in starts)}  # the outermost
    walks = (os.walk(folder / start, onerror=cannot_list) for start in sorted(starts) if (folder / start).is_dir())
    for top, folders, _ in (entry for walk in walks for entry in walk):  # links to folders are listed, never entered
        here = Path(top)
        for name in folders if names else ():
            path = here / name
            if not path.is_symlink() or _hidden(path.relative_to(folder)) or _in_run(path, folder, runs):
                continue
            try:
                target = path.resolve(strict=True)
                holds = False if target.is_relative_to(inside) else _holds_any(target, names)
                if holds is False:
                    continue
                why = (
                    f"a link to a folder ({os.readlink(path)}), which '**' does not follow"
                    f"{'' if holds else ' (a large tree, not searched through)'}: name it as well to read it"
                )
            except (OSError, RuntimeError):  # gone since the walk, or a loop: nothing to read through it
                continue
            found.append((escaped(path.absolute()), why))
        folders[:] = [n for n in folders if not n.startswith(".") and not is_run_folder(here / n)]
    return found, sorted(unlisted)


def _fixed_part(pattern: str) -> Path:
    """The folders a pattern names before its first wildcard: where its matches can be."""
    fixed = []
    for part in Path(pattern).parts:
        if any(c in part for c in "*?["):
            break
        fixed.append(part)
    return Path(*fixed)


def _refuse_unlisted(unlisted: list[tuple[Path, str]]) -> None:
    """Stop on folders of a corpus that cannot be looked into: their files
    would be left out unseen."""
    one = len(unlisted) == 1
    what = (
        f"folder {shown(unlisted[0][0])}"
        if one
        else f"{len(unlisted)} folders ({first_few([shown(p) for p, _ in unlisted], 3)})"
    )
    raise CorpusError(
        f"cannot list {what}: {unlisted[0][1]}; make {'it' if one else 'them'} readable, or leave "
        f"{'it' if one else 'them'} out with {flag('skip_bad_files')}"
    )


# Entries a linked folder is searched through for a file '**/NAME' would
# pick there, before it is named without knowing: a link to a home folder or
# to / would otherwise hold up every run on the tree for as long as that
# search takes.
LINK_SEARCH_ENTRIES = 20_000


def _holds_any(folder: Path, names: list[str]) -> bool | None:
    """Whether `folder` holds a file that '**/NAME' picks there for one of
    `names` (as glob does it: hidden names only for a pattern that starts
    with '.', links to folders not entered), or None past
    LINK_SEARCH_ENTRIES entries without one."""
    seen = 0
    for _, folders, files in os.walk(folder):
        for name in files:
            if any(fnmatch.fnmatchcase(name, n) and (n.startswith(".") or not name.startswith(".")) for n in names):
                return True
        seen += len(files) + len(folders)
        if seen > LINK_SEARCH_ENTRIES:
            return None
        folders[:] = [n for n in folders if not n.startswith(".")]
    return False


def escaped(path: Path) -> str:
    """A path as a run records and names it: the bytes of a name that are
    not UTF-8 as escapes (\\xff). The entries a folder leaves out are never
    read, so never refused for their names (as corpus.py's
    `_refuse_undecodable_names` refuses the files it reads)."""
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
