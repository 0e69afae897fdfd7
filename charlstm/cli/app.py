"""The Typer application and what every command shares: the two consoles,
one-line errors, exit statuses and the global options.

Commands live beside it (training, sampling, inspection); JAX, Flax and
Orbax are imported inside them, so `charlstm --help` answers without
loading them.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from charlstm.cli.display import NORMAL, QUIET, VERBOSE
from charlstm.errors import CharlstmError

app = typer.Typer(
    name="charlstm",
    help=(
        "Character-level text generation with an LSTM in JAX.\n\n"
        "Train on any UTF-8 text, watch it learn, sample new text in its style, "
        "and resume any run from its checkpoint.\n\n"
        "Example: charlstm train shakespeare.txt && charlstm sample --temp 0.8"
    ),
    epilog=(
        "Exit statuses: 0 success, 1 training diverged, 2 bad input or options, "
        "3 aborted without a final save, 130/143 interrupted by SIGINT/SIGTERM after saving."
    ),
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

EXIT_DIVERGED = 1
EXIT_ABORTED = 3
EXIT_USAGE = 2


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Print more: configuration, every logged step.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

_options = {"cache": True}
# The commands that run training steps, whose scratch memory is worth
# relaunching the process for (runtime/hostmem.py).
TRAINING_COMMANDS = ("train", "resume", "tune")


def stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


def stdout() -> Console:
    return Console(soft_wrap=False)


def print_table(table: Any) -> None:
    console = stdout()
    if console.is_terminal:
        console.print(table)
        return
    # A file or pipe has no width to fit: never wrap cells there, and leave
    # out the spaces that pad each line to the widest.
    console.width = max(console.width, Console(width=10_000).measure(table).maximum)
    with console.capture() as captured:
        console.print(table)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def use_cache() -> None:
    if _options["cache"]:
        from charlstm.runtime.compile_cache import enable_compilation_cache

        enable_compilation_cache()


def say(message: str) -> None:
    # Paths and user text can contain [brackets]: never read them as markup.
    stderr().print(message, highlight=False, markup=False)


def fail(message: str, details: Iterable[str] = ()) -> NoReturn:
    """Exit 2 with one error line, after a line for each detail (the files that are not text, say)."""
    for line in details:
        say(line)
    say(f"error: {message}")
    raise typer.Exit(EXIT_USAGE)


def given(ctx: typer.Context, names: Iterable[str]) -> dict[str, Any]:
    """The options among `names` that the user set (on the command line or
    through the environment), by name; the rest are left to the library's defaults."""
    chosen = {}
    for name in names:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            chosen[name] = ctx.params[name]
    return chosen


def verbosity(quiet: bool, verbose: bool) -> int:
    """The display's verbosity for --quiet / --verbose."""
    if quiet and verbose:
        fail("--quiet and --verbose contradict each other; pick one")
    return QUIET if quiet else VERBOSE if verbose else NORMAL


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except CharlstmError as err:
        fail(str(err), err.details)


@app.callback()
def _global_options(
    ctx: typer.Context,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache", help="Do not use the compilation cache (also: CHARLSTM_NO_CACHE=1).", show_default=False
        ),
    ] = False,
    version: Annotated[bool | None, typer.Option("--version", help="Show the version and exit.", is_eager=True)] = None,
) -> None:
    if version:
        from charlstm import __version__

        stdout().print(f"charlstm {__version__}", highlight=False)
        raise typer.Exit()
    _options["cache"] = not no_cache
    from charlstm.runtime import hostmem

    # Before any command starts JAX's threads. Only the process `main`
    # started may be replaced, never one that runs the app in-process.
    relaunch = _options.get("entry", False) and ctx.invoked_subcommand in TRAINING_COMMANDS
    if not (relaunch and hostmem.relaunch_with_huge_pages()):
        hostmem.keep_host_memory()


def main() -> None:
    _options["entry"] = True
    try:
        app()
    finally:
        # The command has ended and said how (a run has saved, or aborted).
        # A Ctrl-C or SIGTERM from here on, while JAX and Orbax shut down,
        # ends the process at once as the signal's default does: before,
        # a third Ctrl-C that came late printed a traceback from JAX's exit
        # handlers.
        for stream in (sys.stdout, sys.stderr):  # what the command wrote, before a signal can cut it off
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
