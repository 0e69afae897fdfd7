"""What a checkpoint whose arrays cannot be restored says: one line naming
the damage (`failure_line`), and none of the tracebacks Orbax's other reads
would print after it (`quiet_the_other_reads`).

Orbax reads a checkpoint's arrays concurrently, on TensorStore's threads and
its own event loop. When one read fails, Orbax raises and stops waiting for
the rest, which then fail, or call back into a closed loop, one by one: each
reports through Python's unraisable-exception hook or asyncio's logger: on a
damaged checkpoint, dozens of tracebacks around the one error line (up to
2,000 lines in 1 run of 3 of a new user's walkthrough, 2026-12-02).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from charlstm.training.run import pattern_characters


def failure_line(where: Path, err: Exception) -> str:
    """One line on why a checkpoint's arrays could not be restored. From
    here on, in this process, Python's warning for each of Orbax's reads the
    restore left unawaited (as the process ends) is dropped: it is the same
    failure again."""
    warnings.filterwarnings("ignore", UNAWAITED_READS, RuntimeWarning)  # a repeat replaces it
    odd = pattern_characters(where)
    if odd:
        return (
            f"cannot read checkpoint {where}: its path contains {' '.join(odd)}, which the checkpoint library reads "
            "as a pattern; move or rename the run directory"
        )
    text = str(err).strip() or type(err).__name__
    first_line = text.splitlines()[0].split(" See full TensorStore details")[0]
    if len(first_line) > 200:  # at a word's end: the message goes on after it
        first_line = first_line[:200].rsplit(" ", 1)[0] + " ..."
    shapes = re.search(r"Requested shape: (\([\d, ]*\)) is not compatible with the stored shape: (\([\d, ]*\))", text)
    if shapes:  # Orbax's wording ends in advice for its own API, which is not the user's to take
        return (
            f"cannot read checkpoint {where}: its arrays disagree with its configuration (an array of shape "
            f"{shapes[2]} where the configuration makes {shapes[1]}): its metadata or its arrays are damaged"
        )
    damaged = any(code in text for code in ("NOT_FOUND", "DATA_LOSS", "FAILED_PRECONDITION", "OUT_OF_RANGE"))
    why = "its arrays are missing or damaged" if damaged else f"restoring its arrays failed ({type(err).__name__})"
    return f"cannot read checkpoint {where}: {why}: {first_line}"


def unreadable(where: Path) -> Path | None:
    """The first file or folder of checkpoint `where` this user may not
    read (or, for a folder, enter), if any: Orbax reports such a checkpoint
    as missing its arrays ("subdirectory not found"), which would send the
    user to move a whole checkpoint aside over a permission (a walkthrough,
    2026-12-06)."""
    if not os.access(where, os.R_OK | os.X_OK):
        return where
    for root, folders, files in os.walk(where):
        for name in sorted(folders) + sorted(files):
            path = Path(root) / name
            if path.is_symlink() and not os.path.exists(path):  # missing, not forbidden: damage
                continue
            if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
                return path
    return None


def interrupted(err: BaseException) -> bool:
    """Whether a restore failed because a Ctrl-C came while it ran: Orbax
    wraps the KeyboardInterrupt raised in one of its reads in a bare
    Exception (11 of 60 interrupted restores here), which would otherwise
    say the checkpoint cannot be read."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


# How the arrays' other reads fail once one has failed: each read that Orbax
# gathered and stopped waiting for, and each TensorStore callback into
# Orbax's event loop after it closed.
_READ_FAILED = "Encountered error while reading array index"
_ORBAX_READS = "orbax/checkpoint/_src/serialization/"  # where those reads run
# What every TensorStore error carries: a future of TensorStore's own, which
# asyncio wraps with no coroutine to name and no Python frames, is known by
# it (a damaged head's ".zarray" read, once in a CI run, 2026-12-04).
_TENSORSTORE_ERROR = "[tensorstore_spec="
# Or by the status TensorStore's errors open with, as a ValueError: a read
# of a truncated data file ('OUT_OF_RANGE: Error reading "params..." in
# OCDBT database at ...', a new user's walkthrough, 2026-12-05).
_TENSORSTORE_STATUS = tuple(
    f"{code}: "
    for code in (
        *("CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS"),
        *("PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE"),
        *("UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"),
    )
)
# Orbax's read coroutines that a failed restore left unawaited, which
# Python names (by qualified name) in a RuntimeWarning as the process ends.
# (Its array metadata store's read too: seen once in the suite, 2026-12-06.)
_ORBAX_COROUTINES = (
    *("_read_array_index_and_device_put", "async_deserialize", "_async_deserialize", "deserialize"),
    "_get_array_metadatas",
)
UNAWAITED_READS = rf"coroutine '([\w.<>]+\.)?({'|'.join(_ORBAX_COROUTINES)})' was never awaited"


def _tensorstore_status(text: str) -> bool:
    """Whether an error's words are TensorStore's: a status, then its store."""
    return text.startswith(_TENSORSTORE_STATUS) and any(word in text for word in ("OCDBT", "tensorstore", "zarr"))


def _restore_echo(exc: BaseException | None, tb: TracebackType | None) -> bool:
    if exc is None:
        return False
    if str(exc).startswith(_READ_FAILED):
        return True
    # "Event loop is closed" could be anyone's: only asyncio's own (raised by
    # its loop's check), or one with no Python frames at all, as from
    # TensorStore's threads calling back into the loop.
    if not (isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"):
        return False
    names = [frame.f_code.co_name for frame, _ in traceback.walk_tb(tb or exc.__traceback__)]
    return not names or names[-1] == "_check_closed"


class _NoRestoreEchoes(logging.Filter):
    """asyncio's "... exception was never retrieved" for a read of Orbax's
    array deserialisation that nobody awaits any more."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or "never retrieved" not in record.getMessage():
            return True
        files = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(exc.__traceback__)]
        # An error raised by TensorStore may carry no Python frames of
        # Orbax's; asyncio's message then still names the coroutine, with
        # the file it was defined in ("coro=<async_deserialize() done,
        # defined at .../serialization.py:394>"), or for a bare future of
        # TensorStore's, the error its spec.
        reading = (
            str(exc).startswith(_READ_FAILED)
            or _TENSORSTORE_ERROR in str(exc)
            or (isinstance(exc, ValueError) and _tensorstore_status(str(exc)))
            or any(_ORBAX_READS in f for f in files)
            or _ORBAX_READS in record.getMessage()
        )
        return not reading


_NO_ECHOES = _NoRestoreEchoes()


def quiet_the_other_reads() -> None:
    """When one array of a checkpoint cannot be read, Orbax stops waiting
    for the others; as they finish (or fail) on TensorStore's threads they
    report, through Python's unraisable-exception hook and asyncio's logger,
    the same damage the CheckpointError already names once. Those reports, and only
    those (by their message and where they were raised), are dropped from
    the first restore on, in this process; anything else still reaches the
    hook and the logger."""
    _filter_once(logging.getLogger("asyncio"), _NO_ECHOES)
    if getattr(sys.unraisablehook, "charlstm_quiet", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not _restore_echo(unraisable.exc_value, unraisable.exc_traceback):
            previous(unraisable)

    hook.charlstm_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


class _NoSaveEchoes(logging.Filter):
    """Orbax's own ERROR line for each of a failed save's writer threads
    ("_SignalingThread.run() raised an exception: ..."): the error the
    CheckpointError names once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "_SignalingThread.run() raised an exception" not in record.getMessage()


_NO_SAVE_ECHOES = _NoSaveEchoes()


def quiet_a_failed_save() -> None:
    """A save that failed (a full disk) stops Orbax waiting for its other
    writes, which then fail one by one as a failed restore's reads do: the
    same echoes (`quiet_the_other_reads`, whose criteria match the writes'
    too) and Orbax's line for each writer thread are dropped, in this
    process, from here on (400 lines, 49 tracebacks, around the one error
    before; a walkthrough with a full tmpfs, 2026-12-04)."""
    quiet_the_other_reads()
    _filter_once(logging.getLogger("absl"), _NO_SAVE_ECHOES)


class _NoStepMetadataNoise(logging.Filter):
    """Orbax's lines for a step's own `_CHECKPOINT_METADATA` (a save's time,
    which nothing of charlstm reads) that cannot be parsed, or is missing
    from a save a kill cut short (which Orbax then clears away): each quotes
    the file, and the checkpoints are read whole without it (walkthroughs,
    2026-12-05: an alarming line, then the resume went on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        missing = "Metadata file does not exist" in message and message.endswith("_CHECKPOINT_METADATA")
        return not missing and "Failed to json parse Metadata file" not in message


_NO_STEP_METADATA_NOISE = _NoStepMetadataNoise()


def quiet_step_metadata() -> None:
    """Drop that line, in this process, from the first checkpoint manager on."""
    _filter_once(logging.getLogger("absl"), _NO_STEP_METADATA_NOISE)


def _filter_once(log: logging.Logger, drop: logging.Filter) -> None:
    """`drop` on `log`, however many times it is asked for."""
    if drop not in log.filters:
        log.addFilter(drop)
