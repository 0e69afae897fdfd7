"""Checks on what a Python caller passes: each refuses a wrong value with
one ConfigError that names the argument (or its flag), before any work
starts.

The configs (config.py) check their fields with these; the API's functions
check their other arguments (paths, callbacks, option names) with them, so
that `charlstm.train(corpus=3)` fails in one line that says what to give,
not in a traceback from deep inside a run. The CLI and the server parse
their own input first and reach these only for values they pass through.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from charlstm.errors import ConfigError
from charlstm.flags import flag, label


def check(condition: bool, message: str) -> None:
    """Refuse, as a ConfigError with `message`, where `condition` does not hold."""
    if not condition:
        raise ConfigError(message)


def whole_number(value: Any, what: str) -> int:
    """`value` as a plain int (a NumPy integer too), or a ConfigError naming
    `what` for a float, a string or a bool from a Python caller (the CLI
    and the server parse theirs)."""
    check(
        isinstance(value, numbers.Integral) and not isinstance(value, bool),
        f"{what} must be a whole number, got {value!r}",
    )
    return int(value)


def real_number(value: Any, what: str) -> float:
    """`value` as a float (an int or a NumPy number too), or a ConfigError
    naming `what` for a string or a bool, or an int too large for a float."""
    check(isinstance(value, numbers.Real) and not isinstance(value, bool), f"{what} must be a number, got {value!r}")
    # Only a whole number can be too large for a float (a float is inf at most).
    too_large = isinstance(value, numbers.Integral) and abs(int(value)) > sys.float_info.max
    check(not too_large, f"{what} is too large: {len(str(abs(value)))} digits")
    return float(value)


def true_or_false(value: Any, what: str) -> bool:
    """`value` as a bool (a NumPy bool too), or a ConfigError naming `what`
    for anything else: "no" is true, and 1 is not what the caller meant to
    store in a checkpoint."""
    check(isinstance(value, bool) or type(value).__name__ == "bool_", f"{what} must be True or False, got {value!r}")
    return bool(value)


def no_path(text: str) -> str | None:
    """Why `text` names no path, "empty" or "blank", or None where it names
    one. Path("") is ".": an unset "$OUT" would write into the folder here,
    over what is there; " " made a run folder of that name (a walkthrough,
    2026-12-06)."""
    return None if text.strip() else ("blank" if text else "empty")


def path_like(value: Any, what: str) -> None:
    """Refuse, as a ConfigError naming `what`, a value that is not a path
    (a str or an os.PathLike) from a Python caller."""
    check(isinstance(value, str | os.PathLike), f"{what} must be a path (a str or a Path), got {value!r}")
    why = no_path(os.fspath(value))
    check(why is None, f"{what} is {why}: give a path")


def paths_given(value: Any, what: str, one: str = "a path (a str or a Path)") -> list[Any]:
    """`value` as a list of paths: one path alone (not its name's letters),
    or a list or tuple of them; a ConfigError naming `what` for anything
    else (a number would otherwise fail as a TypeError deep inside)."""
    if isinstance(value, str | os.PathLike):
        path_like(value, what)  # "" is "." to Path: refused
        return [value]
    check(isinstance(value, list | tuple), f"{what} must be {one} or a list of them, got {value!r}")
    for path in value:
        path_like(path, f"each of {what}")
    return list(value)


def paths_of(given: Any, what: str) -> tuple[str, ...]:
    """The paths an API argument `what` gives (`paths_given`), as strings;
    none for None."""
    return () if given is None else tuple(os.fspath(p) for p in paths_given(given, what))


def optional_callable(value: Any, what: str) -> None:
    """Refuse, as a ConfigError naming `what`, a callback that is neither
    None nor callable: found only when first called, it would fail mid-run."""
    check(value is None or callable(value), f"{what} must be a function (or None), got {value!r}")


def check_callbacks(on_event: Any, should_stop: Any) -> None:
    """Refuse a training call's callbacks that are not functions (`optional_callable`)."""
    optional_callable(on_event, "on_event")
    optional_callable(should_stop, "should_stop")


def html_file(value: Any, what: str) -> Path:
    """`value` as the HTML page to write: a path (see `path_like`) that is not
    a folder and ends in .html or .htm, so that a browser opens what it names."""
    path_like(value, what)
    path = Path(value)
    check(not path.is_dir(), f"{path} is a directory: give the HTML file to write, such as {path / 'page.html'}")
    check(
        path.suffix.lower() in (".html", ".htm"),
        f"the page is an HTML file: give a file name ending in .html, not {path.name}",
    )
    return path


def weights_directory(value: Any, what: str) -> Path:
    """`value` as the folder to write exported weights into: a path (see
    `path_like`) that is not a file."""
    path_like(value, what)
    path = Path(value)
    check(
        not path.exists() or path.is_dir(),
        f"{path} is a file, not a directory: give a directory to write the weights into",
    )
    return path


def writable_place(path: Path, what: str) -> None:
    """Refuse, before any work, a file to write where it cannot be written:
    an existing file that is read-only, or else the nearest folder on its
    way that exists, read-only or not the user's to write in, or a file
    where a folder on its way should be. Anything else (a path that cannot
    even be looked at) shows when it is written."""
    try:
        where = path
        if not path.exists():
            where = path.absolute().parent
            while not where.exists() and where != where.parent:
                where = where.parent
            on_the_way = not where.is_dir()
        else:
            on_the_way = False
        writable = os.access(where, os.W_OK)
    except OSError:
        return
    # As the write would say it (text/saving.py's write_failure), but before the work.
    check(not on_the_way, f"cannot write {what} {path}: {where} is a file, not a folder")
    check(writable, f"cannot write {what} {path}: {where} is read-only here; give another place with {what}")


def unknown_fields(given: Iterable[str], *classes: type, also: Iterable[str] = ()) -> str | None:
    """What an API caller got wrong in the options it passed to the config
    `classes`: the names none has a field for, each with the field it likely
    meant (a flag's name, `lr`, stands for its field, `learning_rate`), or
    the keyword among `also` (the function's own: `hidden_size` for
    `hiden_size`)."""
    fields = [f.name for cls in classes for f in dataclasses.fields(cls)]
    candidates = [*fields, *also]
    by_flag = {label(name): name for name in candidates}
    wrong = []
    for name in sorted(set(given) - set(fields)):
        meant = by_flag.get(name) or next(iter(difflib.get_close_matches(name, candidates, n=1)), None)
        wrong.append(f"{name}" + (f" (did you mean {meant}?)" if meant else ""))
    return ", ".join(wrong) or None


def check_port(port: Any) -> None:
    """A port a server can listen on: 0 (any free one) and -1 would each
    get a resolver's error or a port nobody asked for."""
    check(1 <= whole_number(port, flag("port")) <= 65535, f"{flag('port')} must be from 1 to 65535, got {port}")


def check_api_key(api_key: str | None) -> None:
    """Refuse an empty key: it would refuse every request (no token is
    empty) while reading as "no key" everywhere else, a mistake like an
    unset $KEY."""
    check(api_key is None or isinstance(api_key, str), f"{flag('api_key')} must be a text, got {api_key!r}")
    check(
        api_key is None or bool(api_key.strip()),
        f"{flag('api_key')} is empty: give a key, or leave it out to serve without one",
    )
    # A client's token is read without the spaces around it (HTTP drops them
    # from a header), so a key with any at an end would match none: a key
    # read from a file keeps its newline.
    check(
        api_key is None or api_key == api_key.strip(),
        f"{flag('api_key')} has a space or a line break at an end, where no request's key can have one: give "
        "it without (a key read from a file keeps its newline)",
    )
