"""`python -m charlstm` and the `charlstm` command."""

import os
import signal
from typing import Any


def _end(signum: int, frame: Any) -> None:
    os._exit(128 + signum)


def main() -> None:
    """The command line. A Ctrl-C while it loads (the first few tenths of a
    second) ends the process at once with 130, as one a moment later does,
    instead of with a traceback of the imports: nothing is written yet."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job of a script: left ignored
        signal.signal(signal.SIGINT, _end)
    from charlstm.cli import main as command_line

    command_line()


if __name__ == "__main__":
    main()
