"""Self-describing checkpoints, written with Orbax, never pickled.

A run directory holds two Orbax CheckpointManagers:

    RUN/checkpoints/latest/<step>/   the newest few, for resuming
    RUN/checkpoints/best/<step>/     the one with the lowest validation loss

Each step directory has two items: `state`, the whole TrainState as a tree of
named arrays (parameters, Adam moments, step, carried stream state, RNG key),
and `meta`, a JSON object with everything needed to rebuild the model and
continue the run: format and version, both configs, the vocabulary, the
corpus (what was read, how it was split, where its token file is; see
text/manifest.py), the data position, the metrics so far and, for a
fine-tuned run, the checkpoint it started from. Orbax writes
into a temporary directory and renames it only when complete, so a crash
mid-save leaves the previous checkpoint as the newest one.

In a multi-process run every process calls the same saves and loads, in the
same order: Orbax synchronises them, each process writes its own part of
the arrays, and only process 0 writes the JSON and renames the directory.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import flax.serialization
import jax
import orbax.checkpoint as ocp

from charlstm.config import ModelConfig, TrainConfig, from_dict, to_dict
from charlstm.core.state import TrainState, init_state
from charlstm.errors import CharlstmError, CheckpointError
from charlstm.text import manifest
from charlstm.text.vocab import Vocab
from charlstm.training.run import Run, check_writable_path, pattern_characters

FORMAT = "charlstm-checkpoint"
FORMAT_VERSION = 1
LATEST, BEST = "latest", "best"
KEEP_LATEST = 2


def _version() -> str:
    """The installed charlstm's version, recorded in every checkpoint."""
    try:
        return package_metadata.version("charlstm")
    except package_metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _manager(directory: Path, keep: int | None = None) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        # Saves are small and rare; a synchronous save means a checkpoint the
        # loop reports as written is on disk, also when Ctrl-C follows.
        enable_async_checkpointing=False,
        # A save killed half-way leaves a temporary directory; clear those
        # when the run is next opened for writing.
        cleanup_tmp_directories=True,
    )
    return ocp.CheckpointManager(directory.absolute(), options=options, item_names=("state", "meta"))


def metadata(run: Run, data_windows: int | None = None) -> dict[str, Any]:
    step = int(run.state.step)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "charlstm_version": _version(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "step": step,
        "model": to_dict(run.model_config),
        "train": to_dict(run.train_config),
        "vocab": run.vocab.chars,
        "corpus": run.corpus_entry,
        "best_val_loss": run.best_val_loss,
        "train_seconds": run.train_seconds,
        "history": run.history,
    }
    if run.init_from is not None:
        meta["init_from"] = run.init_from
    if data_windows is not None:
        # Informational: the window is derived from the step (see text/streams.py).
        meta["data_position"] = {
            "pass": step // data_windows,
            "window": step % data_windows,
            "windows_per_pass": data_windows,
        }
    return meta


class CheckpointWriter:
    """Writes a run's latest and best checkpoints."""

    def __init__(self, run_dir: Path):
        check_writable_path(run_dir)  # new and resumed runs alike
        self.run_dir = run_dir
        root = run_dir / "checkpoints"
        self._managers = {LATEST: _manager(root / LATEST, KEEP_LATEST), BEST: _manager(root / BEST, 1)}

    def save(self, run: Run, best: bool, data_windows: int | None = None) -> str:
        kind = BEST if best else LATEST
        manager = self._managers[kind]
        step = int(run.state.step)
        path = str(self.run_dir / "checkpoints" / kind / str(step))
        if step in manager.all_steps():
            # Resuming reaches steps saved before. A latest checkpoint there
            # holds this very state (training is deterministic and resume
            # starts at the newest latest); a best one may not (resumed with
            # another --lr, say), and it was only reached again by being better.
            if not best:
                return path
            manager.delete(step)
        state = flax.serialization.to_state_dict(run.state)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(metadata(run, data_windows))
        )
        try:
            manager.save(step, args=args, force=True)
            manager.wait_until_finished()
        except (OSError, ValueError) as err:
            raise CheckpointError(
                f"could not write checkpoint {path}: {err}; earlier checkpoints are intact, "
                "and 'charlstm resume' continues from the newest once the problem is fixed"
            ) from None
        return path

    def close(self) -> None:
        for manager in self._managers.values():
            manager.close()


@dataclass(frozen=True)
class Meta:
    """What a checkpoint says of itself, validated: enough to describe it,
    rebuild its model and continue its run."""

    path: Path  # the step directory
    step: int
    model_config: ModelConfig
    train_config: TrainConfig
    vocab: Vocab
    corpus_path: str
    corpus_sha256: str
    best_val_loss: float | None
    train_seconds: float
    history: list[dict[str, float]]
    raw: dict[str, Any]  # the JSON object as stored (saved_at, charlstm_version, data_position, ...)
    corpus: dict[str, Any]  # what the run read and how it split it (text/manifest.py)
    init_from: dict[str, Any] | None  # the checkpoint a fine-tuned run started from


@dataclass(frozen=True)
class Checkpoint(Meta):
    state: TrainState


def locate(path: Path, prefer: str = BEST) -> tuple[Path, int]:
    """A run directory, a checkpoints/{latest,best} directory, or one step
    directory -> (manager directory, step)."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.name.isdigit() and (path / "meta").exists():
        return path.parent, int(path.name)
    if (path / "checkpoints").is_dir():
        order = [prefer, LATEST if prefer == BEST else BEST]
        for kind in order:
            found = latest_step(path / "checkpoints" / kind)
            if found is not None:
                return path / "checkpoints" / kind, found
        raise CheckpointError(f"no complete checkpoint in run directory {path}")
    found = latest_step(path)
    if found is None:
        raise CheckpointError(f"not a charlstm run or checkpoint directory: {path}")
    return path, found


def latest_step(directory: Path) -> int | None:
    if not directory.is_dir():
        return None
    # Orbax renames a step directory into place only when it is complete, so
    # any plain integer name with its items present is a finished checkpoint.
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / "meta").is_dir()]
    return max(steps) if steps else None


def _read_meta(checkpointer: ocp.Checkpointer, where: Path) -> dict[str, Any]:
    meta = checkpointer.restore(where.absolute(), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    return _parse_meta(meta, where)


def _parse_meta(meta: Any, where: Path) -> dict[str, Any]:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"not a charlstm checkpoint: {where}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {where} has format version {version!r}; this charlstm reads up to "
            f"{FORMAT_VERSION}: upgrade charlstm to load it"
        )
    return meta


def describe(path: Path, prefer: str = BEST) -> Meta:
    """The checkpoint `path` points to (see `locate`), from its JSON
    metadata alone: no arrays are read."""
    directory, step = locate(path, prefer)
    where = directory / str(step)
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    try:
        return _checked(lambda: _parse(_read_meta(checkpointer, where), where), where)
    finally:
        checkpointer.close()


def load(path: Path, prefer: str = BEST) -> Checkpoint:
    """Restore a checkpoint onto this process's first device, whatever
    devices, or how many processes, wrote it. In a multi-process run every
    process must call this (Orbax synchronises them)."""
    directory, step = locate(path, prefer)
    where = directory / str(step)
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())

    def restore() -> Checkpoint:
        meta = _parse(_read_meta(checkpointer, where), where)
        template = jax.eval_shape(lambda: init_state(meta.model_config, meta.train_config))
        # Whole, on a device of this process: in a multi-process run every
        # process reads the full state and takes its own share (any process
        # count can resume any checkpoint; see distributed.place_state).
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
            flax.serialization.to_state_dict(template),
        )
        _quiet_the_other_reads()  # before: the first echoes can come while Orbax is still failing
        try:
            restored = checkpointer.restore(
                where.absolute(), args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )
        except Exception as err:  # Orbax and TensorStore raise bare Exceptions, most for a missing or damaged file
            raise CheckpointError(_restore_failure(where, err)) from None
        state = flax.serialization.from_state_dict(template, restored["state"])
        return Checkpoint(**{f.name: getattr(meta, f.name) for f in dataclasses.fields(Meta)}, state=state)

    try:
        return _checked(restore, where)
    finally:
        checkpointer.close()


T = TypeVar("T")


def _restore_failure(where: Path, err: Exception) -> str:
    """One line on why a checkpoint's arrays could not be restored."""
    odd = pattern_characters(where)
    if odd:
        return (
            f"cannot read checkpoint {where}: its path contains {' '.join(odd)}, which the checkpoint library reads "
            "as a pattern; move or rename the run directory"
        )
    text = str(err).strip() or type(err).__name__
    first_line = text.splitlines()[0].split(" See full TensorStore details")[0][:200]
    damaged = any(code in text for code in ("NOT_FOUND", "DATA_LOSS", "FAILED_PRECONDITION", "OUT_OF_RANGE"))
    why = "its arrays are missing or damaged" if damaged else f"restoring its arrays failed ({type(err).__name__})"
    return f"cannot read checkpoint {where}: {why}: {first_line}"


# How the arrays' other reads fail once one has failed: each read that Orbax
# gathered and stopped waiting for, and each TensorStore callback into
# Orbax's event loop after it closed.
_READ_FAILED = "Encountered error while reading array index"
_ORBAX_READS = "orbax/checkpoint/_src/serialization/"  # where those reads run


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
        reading = str(exc).startswith(_READ_FAILED) or any(_ORBAX_READS in f for f in files)
        return not reading


_NO_ECHOES = _NoRestoreEchoes()


def _quiet_the_other_reads() -> None:
    """When one array of a checkpoint cannot be read, Orbax stops waiting
    for the others; as they finish (or fail) on TensorStore's threads they
    report, through Python's unraisable-exception hook and asyncio's logger,
    the same damage the CheckpointError already names once: dozens of
    tracebacks, before and after the error line. Those reports, and only
    those (by their message and where they were raised), are dropped from
    the first restore on, in this process; anything else still reaches the
    hook and the logger."""
    asyncio_log = logging.getLogger("asyncio")
    if _NO_ECHOES not in asyncio_log.filters:
        asyncio_log.addFilter(_NO_ECHOES)
    if getattr(sys.unraisablehook, "charlstm_quiet", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not _restore_echo(unraisable.exc_value, unraisable.exc_traceback):
            previous(unraisable)

    hook.charlstm_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _checked(read: Callable[[], T], where: Path) -> T:
    """`read()`, with anything wrong in what it reads as one CheckpointError."""
    try:
        return read()
    except CheckpointError:
        raise
    except CharlstmError as err:  # a bad stored config or vocabulary
        raise CheckpointError(f"checkpoint {where} is invalid: {err}") from None
    except (KeyError, TypeError, ValueError, OverflowError, OSError) as err:
        raise CheckpointError(f"cannot read checkpoint {where}: {type(err).__name__}: {err}") from None


def _parse(meta: dict[str, Any], where: Path) -> Meta:
    model_config = from_dict(ModelConfig, meta["model"])
    train_config = from_dict(TrainConfig, meta["train"])
    vocab = Vocab(meta["vocab"])
    if vocab.size != model_config.vocab_size:
        raise CheckpointError(
            f"checkpoint {where} is inconsistent: {vocab.size} characters but a model for {model_config.vocab_size}"
        )
    if vocab.boundary_id != model_config.boundary_id:
        raise CheckpointError(f"checkpoint {where} is inconsistent: its vocabulary and model disagree on documents")
    corpus, init_from = meta["corpus"], meta.get("init_from")
    try:
        manifest.check_entry(corpus)
    except ValueError as err:
        raise CheckpointError(f"cannot read checkpoint {where}: {err}") from None
    if not isinstance(init_from, dict | None):
        raise CheckpointError(f"cannot read checkpoint {where}: its init_from entry is not an object")
    # A damaged configuration can describe an absurd model (a billion
    # layers), whose shape alone would take hours to build. No real
    # checkpoint comes near these limits.
    mc = model_config
    if mc.num_layers > 1024 or max(mc.hidden_size, mc.embed_dim) > 1 << 17 or mc.vocab_size > 1 << 21:
        raise CheckpointError(f"checkpoint {where} is invalid: its model is implausibly large ({mc})")
    step = meta["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"checkpoint {where} has an invalid step: {step!r}")
    return Meta(
        path=where,
        step=step,
        model_config=model_config,
        train_config=train_config,
        vocab=vocab,
        corpus_path=str(corpus["path"]),
        corpus_sha256=str(corpus["sha256"]),
        best_val_loss=_finite_or_none(meta.get("best_val_loss"), "best_val_loss", where),
        train_seconds=_finite_or_none(meta.get("train_seconds", 0.0), "train_seconds", where) or 0.0,
        history=_history(meta.get("history", []), where),
        raw=meta,
        corpus=corpus,
        init_from=init_from,
    )


def _finite_or_none(value: Any, name: str, where: Path) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CheckpointError(f"checkpoint {where} has an invalid {name}: {value!r}")
    return float(value)


def _history(value: Any, where: Path) -> list[dict[str, float]]:
    ok = isinstance(value, list) and all(
        isinstance(entry, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry.values())
        for entry in value
    )
    if not ok:
        raise CheckpointError(f"checkpoint {where} has an invalid metrics history")
    return list(value)


def best_val_loss(run_dir: Path) -> float | None:
    """The validation loss of the run's best checkpoint, if it has a readable
    one. After a hard kill the best checkpoint can be newer than the latest.
    Only its JSON metadata is read, not its arrays."""
    directory = run_dir / "checkpoints" / BEST
    step = latest_step(directory)
    if step is None:
        return None
    where = directory / str(step)
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    try:
        return _finite_or_none(_read_meta(checkpointer, where).get("best_val_loss"), "best_val_loss", where)
    except (CheckpointError, KeyError, TypeError, ValueError, OSError):
        return None
    finally:
        checkpointer.close()
