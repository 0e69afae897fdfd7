"""`python -m charlstm` and the `charlstm` command."""

# _signal, the C module under `signal`: `signal` itself (its enums) and
# typing (re, enum) took a noticeable share of a loaded machine's first
# 0.15 s, and a Ctrl-C there ended with a traceback of the imports. Nothing
# that takes time is imported before the handler is in place.
import os

TYPE_CHECKING = False  # not typing's (see above); type checkers read the name as true
if TYPE_CHECKING:
    import signal as _signal  # the same functions, with typeshed's types
else:
    import _signal


def _end(signum: int, frame: object) -> None:
    os._exit(128 + signum)


def main() -> None:
    """The command line. A Ctrl-C while it loads (the first few tenths of a
    second) ends the process at once with 130, as one a moment later does,
    instead of with a traceback of the imports: nothing is written yet."""
    if _signal.getsignal(_signal.SIGINT) is not _signal.SIG_IGN:  # a background job of a script: left ignored
        _signal.signal(_signal.SIGINT, _end)
    from charlstm.cli import main as command_line

    command_line()


if __name__ == "__main__":
    main()
