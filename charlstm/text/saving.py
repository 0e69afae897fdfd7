"""A file of charlstm's own written whole, never half: run logs, corpus.json,
a search's trials.json, exported pages and weights, plots, `sample -o`'s
file and the corpus cache (`write_whole`, `write_together`), and why one
could not be written, in words (`write_failure`, `save_whole`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from charlstm.errors import CharlstmError

Content = str | bytes | Callable[[BinaryIO], object]


def write_whole(path: Path, content: Content, *, buffering: int = -1) -> None:
    """`path` written, or replaced, whole: through a temporary file beside it
    (PATH.PID.tmp, as the corpus cache names its own), renamed over it once
    complete, so that nobody ever reads half of it. Where the writing fails
    (a full disk) or is interrupted, the temporary file is removed and a
    file already at `path` is left as it was. Its folders are made. Raises
    OSError; `write_failure` says why in words. `content` is text (written
    as UTF-8), bytes, or a function that writes to the open binary file.
    A device or a pipe at `path` is written through instead, in place."""
    write_together({path: content}, buffering=buffering)


def write_together(files: Mapping[Path, Content], *, buffering: int = -1) -> None:
    """`write_whole` of several files that belong together (exported weights
    and their description): none is renamed into place before all are
    written, so a failure in the writing (a full disk) leaves every earlier
    one as it was. (The renames that follow are one after another: a kill
    between them is the one moment that leaves one new beside one old.)"""
    temporary: list[tuple[Path, Path]] = []  # (the temporary file, the file it replaces)
    try:
        for path, content in files.items():
            if _device(path):
                # A device or a pipe (/dev/stdout, a link to whatever stdout
                # is) is written through, as it is: replacing it would lose the text.
                with path.open("wb", buffering=buffering) as out:
                    _put(out, content)
                continue
            # A link is written through, as writing in place would: the file it names is replaced.
            target = Path(os.path.realpath(path)) if path.is_symlink() else path
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary.append((tmp, target))
            with tmp.open("wb", buffering=buffering) as out:
                _put(out, content)
            with contextlib.suppress(OSError):  # a file replaced keeps its permissions (a private sample stays so)
                os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        for tmp, target in temporary:
            os.replace(tmp, target)
    except BaseException:
        # Where a file could not be written it may not be removable either
        # (a read-only folder, a path through a file): the first error is the one to tell.
        for tmp, _ in temporary:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        raise


def _device(path: Path) -> bool:
    """Whether `path` is (or links to) something other than a file or a
    folder: a terminal, a pipe, /dev/null."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # not there yet (or not to be looked at): a file to write whole
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _put(out: BinaryIO, content: Content) -> None:
    if callable(content):
        content(out)
    else:
        out.write(content.encode("utf-8") if isinstance(content, str) else content)


def write_failure(path: Path, err: OSError) -> str:
    """Why `path` could not be written, in words: a folder on its way that
    is a file is named (making the folders says only "File exists", which
    reads as if `path` itself were in the way)."""
    try:
        for folder in path.parents:
            if folder.exists():  # the nearest that does: a path through a file stops there
                if not folder.is_dir():
                    return f"{folder} is a file, not a folder"
                break
    except OSError:  # a folder on the way that cannot be searched: the error says so itself
        pass
    return err.strerror or str(err)


def save_whole(
    path: Path,
    content: Content,
    *,
    intact: str = "",
    error: type[CharlstmError] = CharlstmError,
    name: str | None = None,
) -> None:
    """`path` (a run's log, its corpus.json, a search's trials.json, an
    exported page, a plot, `sample -o`'s file) written or replaced whole
    (`write_whole`); where that cannot be done (a full disk, a folder on the
    way that is a file), `error` says why in one line, naming `path` as
    `name` where given ("--output PATH"), with what is `intact`."""
    try:
        write_whole(path, content)
    except BrokenPipeError:
        raise  # a pipe's reader that went away (-o /dev/stdout | head): the CLI ends as for stdout, 141
    except OSError as err:
        why = write_failure(path, err) + (f"; {intact}" if intact else "")
        raise error(f"cannot write {name or path}: {why}") from None
