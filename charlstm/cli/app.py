"""The Typer application and what every command shares: the two consoles,
one-line errors, exit statuses and the global options.

Commands live beside it (training, sampling, tuning, inspection,
exporting, serving; what a mistyped command line is told: usage). JAX,
Flax and Orbax are imported inside them, so `charlstm --help` answers
without loading them.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from charlstm.arguments import no_path
from charlstm.cli.display import NORMAL, QUIET, VERBOSE
from charlstm.cli.outputs import (
    FULL,
    ResultUnwritable,
    Terminal,
    closed_streams_to_devnull,
    outputs_gone,
    result_stdout,
    unseen_if_gone,
    unwritable_to_devnull,
)
from charlstm.cli.signals import EXIT_SIGINT, Interrupt, end_now, late_signals
from charlstm.cli.usage import usage_error
from charlstm.errors import CharlstmError, as_text, shown
from charlstm.flags import command_line, option
from charlstm.runtime import jax_settings

EXIT_DIVERGED = 1
EXIT_ABORTED = 3
EXIT_USAGE = 2
# 128 + POSIX's SIGPIPE (a number: Windows has no name for it), what a shell
# reports for a command whose reader went away.
EXIT_PIPE = 128 + 13
HELP_OPTIONS = ("-h", "--help")
_COMMAND_ARGS = "charlstm.command_args"


class _Commands(TyperGroup):
    """Typer's group, with errors as the rest of the CLI gives them: a
    mistyped option or value is one line on stderr, not a usage block; and
    an output whose reader has gone (`| head` has exited) ends a command
    quietly with 141 instead of Click's 1, the status that means a run
    diverged. (A training run never gets that far: its display and
    messages stop writing and it trains on, see `outputs_gone`.)"""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        named = {"prog_name": prog_name, "complete_var": complete_var, **extra}
        if not argv:  # `charlstm` alone: Typer's help
            return super().main(argv, standalone_mode=standalone_mode, **named)
        try:
            with command_line():  # the library's messages name options by their flags
                status = super().main(argv, standalone_mode=False, **named)
        except typer.TyperException as err:  # Click's errors: a usage error, a bad value
            say(f"error: {usage_error(err, argv, self.commands, [o for p in self.params for o in p.opts])}")
            status = err.exit_code
        except typer.Abort:  # end of input at a prompt
            status = 1
        if not standalone_mode:
            return status
        sys.exit(status if isinstance(status, int) else 0)

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        # Eager options (--help, --version) print while the line is parsed.
        with _ended_if_gone():
            return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        # The command's own arguments, which Typer takes off the context
        # before the global options' callback runs: it reads them there.
        ctx.meta[_COMMAND_ARGS] = list(ctx.args)
        with _ended_if_gone():
            result = super().invoke(ctx)
            sys.stdout.flush()  # the result, while a closed pipe can still be told apart
            return result


@contextmanager
def _ended_if_gone() -> Iterator[None]:
    """A command whose output's reader has gone ends there, quietly, with
    141; one whose output takes nothing more (`> /dev/full`), with 2 and a
    line saying so where stderr still takes it."""
    try:
        yield
    except BrokenPipeError:
        outputs_gone()
        raise typer.Exit(EXIT_PIPE) from None
    except ResultUnwritable as err:  # stdout's, not a run's own files': those say what they are
        say(f"error: cannot write the output: {err.strerror}")
        unwritable_to_devnull(sys.stdout)  # what is still buffered for it goes nowhere, not into a traceback at exit
        raise typer.Exit(EXIT_USAGE) from None
    except (RuntimeError, AssertionError, ValueError) as err:
        # JAX that cannot start: JAX_NUM_CPU_DEVICES=, say, a ValueError from
        # `import jax`; JAX_PLATFORMS=cuda without CUDA, a bare AssertionError
        # from the first call into it. Click's Exit and Abort are RuntimeErrors
        # too: a command that has ended.
        if isinstance(err, (typer.Exit, typer.Abort)):
            raise
        said = jax_settings.bad_value(err) if isinstance(err, ValueError) else jax_settings.backend_unavailable()
        if said is None:
            raise
        say(f"error: {said}")
        raise typer.Exit(EXIT_USAGE) from err
    except PermissionError as err:
        # Python 3.11's Path.exists() and is_dir() raise, not answer False, for
        # a path inside a folder this user cannot enter: every command's first
        # look at its paths met it, with a traceback (a walkthrough, 2026-12-06).
        where = f" {shown(err.filename)}" if err.filename else ""
        say(f"error: cannot reach{where}: {err.strerror} (a folder on its way cannot be entered, or it cannot be read)")
        raise typer.Exit(EXIT_USAGE) from None
    except OSError as err:
        # A file of the command's own that no place below caught (each names
        # its file where it can), full: one line, not a traceback and status
        # 1. Only the errors a write alone meets: EIO, which a read meets
        # too, stays a traceback that shows where.
        if err.errno not in FULL:
            raise
        say(f"error: cannot write{f' {shown(err.filename)}' if err.filename else ''}: {err.strerror}")
        raise typer.Exit(EXIT_USAGE) from None


app = typer.Typer(
    cls=_Commands,
    name="charlstm",
    help=(
        "Character-level text generation with an LSTM in JAX.\n\n"
        "Train on any UTF-8 text, watch it learn, sample new text in its style, "
        "and resume any run from its checkpoint.\n\n"
        f"Example: charlstm train shakespeare.txt && charlstm sample {option('temperature')} 0.8"
    ),
    epilog=(
        "Exit statuses: 0 success, 1 training diverged, 2 bad input or options, "
        "3 aborted without a final save, 130/143/129 interrupted by SIGINT/SIGTERM/SIGHUP after saving, "
        "141 the reader of the output went away (| head)."
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": list(HELP_OPTIONS)},  # -h too, as most command-line tools take it
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="Say nothing on stderr but errors; results on stdout still print.")
]
# For the commands that print no result on stdout (export, serve): the
# line above would promise one.
QuietAlone = Annotated[bool, typer.Option("--quiet", "-q", help="Say nothing but errors.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Print more: configuration, every logged step.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def path_given(text: str | Path) -> Path:
    """A path typed on the command line (every path parameter's parser;
    Typer passes a parameter's default through it too, as it is).
    Click would turn "" into Path(""), which is ".": `--out "$OUT"` with OUT
    unset trained a run into the folder the user stood in, and `sample ""`
    blamed that folder (a walkthrough, 2026-12-06). Refused as the API
    refuses it (`no_path`)."""
    if isinstance(text, Path):
        return text
    why = no_path(text)
    if why is not None:
        raise typer.BadParameter(f"is {why}: give a path")
    return Path(text)


# The run a command reads, named as the README names it.
_RUN_HELP = "Run directory (its best checkpoint) or checkpoint directory"
RunArgument = Annotated[Path, typer.Argument(metavar="RUN", help=f"{_RUN_HELP}.", parser=path_given)]
NewestRunArgument = Annotated[
    Path | None,
    typer.Argument(
        metavar="RUN",
        help=f"{_RUN_HELP} [default: the most recent run under runs/].",
        show_default=False,
        parser=path_given,
    ),
]

_options = {"cache": True}
# The commands that run training steps, whose scratch memory is worth
# relaunching the process for (runtime/hostmem.py).
TRAINING_COMMANDS = ("train", "resume", "tune")


def stderr() -> Console:
    return Terminal(stderr=True, soft_wrap=True)


def stdout() -> Console:
    return Terminal(soft_wrap=False)


def finished() -> None:
    """The command has done its work and said so: in the `charlstm`
    process (not in a test's CliRunner, whose process keeps its handlers),
    a late Ctrl-C or SIGTERM is ignored from here (`late_signals`)."""
    if _options.get("entry", False):
        late_signals(ignored=True)


def use_cache() -> None:
    if _options["cache"]:
        from charlstm.runtime.compile_cache import enable_compilation_cache

        enable_compilation_cache()


def say(message: str) -> None:
    # Paths and user text can contain [brackets]: never read them as markup;
    # nor escape sequences and bidi controls (a path in a shared run's
    # metadata can hold them): never let them reach the terminal as such.
    line = as_text(message, keep="\n\t")
    with unseen_if_gone():
        stderr().print(line, highlight=False, markup=False)


def fail(message: str, details: Iterable[str] = ()) -> NoReturn:
    """Exit 2 with one error line, after a line for each detail (the files that are not text, say)."""
    say_error(message, details)
    raise typer.Exit(EXIT_USAGE)


def say_error(message: str, details: Iterable[str] = ()) -> None:
    """`fail`'s lines, for a caller that ends otherwise."""
    for line in details:
        say(line)
    say(f"error: {message}")


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


def _show_version(ctx: typer.Context, value: bool | None) -> None:
    # An option's own callback: the group's body runs only before a command,
    # and `charlstm --version` has none. Shell completion parses the line
    # too (resiliently): it must not print the version into its answer.
    if value and not ctx.resilient_parsing:
        from charlstm import __version__

        stdout().print(f"charlstm {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache", help="Do not use the compilation cache (also: CHARLSTM_NO_CACHE=1).", show_default=False
        ),
    ] = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", help="Show the version and exit.", is_eager=True, callback=_show_version),
    ] = None,
) -> None:
    _options["cache"] = not no_cache
    from charlstm.runtime import compile_cache, hostmem

    # JAX's own JAX_COMPILATION_CACHE_DIR too, which it reads as it starts; in
    # the process `main` started only, never one that runs the app in-process.
    if _options.get("entry", False) and (no_cache or compile_cache.cache_dir() is None):
        compile_cache.turn_off()
    from charlstm.runtime.gpu_determinism import deterministic_gpu_ops

    # Every command, so that their compiled programs share one set of XLA
    # flags (the compilation cache keys on them); only a GPU's kernels change.
    deterministic_gpu_ops()

    # Before any command starts JAX's threads. Only the process `main`
    # started may be replaced, never one that runs the app in-process.
    relaunch = _options.get("entry", False) and ctx.invoked_subcommand in TRAINING_COMMANDS
    relaunch = relaunch and not asks_for_help(ctx.meta.get(_COMMAND_ARGS, []))
    if not (relaunch and hostmem.relaunch_with_huge_pages()):
        hostmem.keep_host_memory()


def asks_for_help(args: Sequence[str]) -> bool:
    """Whether a command's arguments ask for its help, which trains
    nothing: `charlstm train --help` is not started again for huge pages
    (it took 0.65 s against sample --help's 0.34, 2026-12-06). A value
    that reads "-h" (`--prime -h`) counts too, and only costs that run the
    relaunch: it trains with `keep_host_memory()`'s settings instead."""
    given = args[: args.index("--")] if "--" in args else args
    return any(a in HELP_OPTIONS for a in given)


def end_at_once(status: int) -> NoReturn:
    """End with `status` now. In the process `main` started, without
    Python's exit: after an abort, the threads of a checkpoint still being
    written (Orbax's, absl's) would print their own tracebacks as the
    interpreter shuts down under them. In-process (tests, an embedding
    program), an ordinary exit."""
    if _options.get("entry", False):
        end_now(status)
    raise typer.Exit(status)


def main() -> None:
    _options["entry"] = True
    jax_settings.for_the_command_line()  # before JAX starts: every thread of the command, a server's too
    closed_streams_to_devnull()
    result_stdout()
    interrupt = Interrupt()
    interrupt.install()
    ended: int | None = None  # the command's status, once it has ended with one
    try:
        # "charlstm", however it was started: Click would call it "python -m
        # charlstm" there, and a shell completion script for that name
        # breaks every Tab after `python` (a helper's walkthrough, 2026-12-06).
        app(prog_name="charlstm")
    except SystemExit as done:
        ended = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
        if interrupt():
            # Ctrl-C: end without Python's exit, whose clean-up can crash
            # (a segmentation fault once) while a checkpoint's reads are
            # still running on TensorStore's threads.
            end_now(EXIT_SIGINT if done.code in (0, None) else done.code if isinstance(done.code, int) else 1)
        raise
    except BaseException:
        if interrupt():
            # What a Ctrl-C turned into on its way out: an ImportError from a
            # C extension it cut off while JAX loaded, an error of a library
            # that wrapped it. The user asked to stop; nothing went wrong.
            end_now(EXIT_SIGINT)
        raise
    finally:
        # The command has ended and said how (a run has saved, or aborted).
        # A Ctrl-C or SIGTERM from here on, while JAX and Orbax shut down, is
        # ignored where the command succeeded; otherwise it ends the process
        # at once (before, a third Ctrl-C that came late printed a traceback
        # from JAX's exit handlers).
        for stream in (sys.stdout, sys.stderr):  # what the command wrote, before a signal can cut it off
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        late_signals(ignored=ended == 0)
