"""Self-describing checkpoints, written with Orbax, never pickled.

A run directory holds two Orbax CheckpointManagers:

    RUN/checkpoints/latest/<step>/   the newest few, for resuming
    RUN/checkpoints/best/<step>/     the one with the lowest validation loss

Each step directory has two items: `state`, the whole TrainState as a tree
of named arrays (parameters, Adam moments, step, carried stream state, RNG
key), and `meta`, a JSON object with everything needed to rebuild the model
and continue the run: format and version, both configs, the vocabulary, the
corpus (what was read, how it was split, where its token file is; see
text/manifest.py), the data position, the metrics so far and, for a
fine-tuned run, the checkpoint it started from (written and validated by
checkpoint_meta.py; a restore that fails is worded by restore_failures.py;
which step directory a path the user gives means is checkpoint_paths.py's).
Orbax writes into a temporary directory and renames it only when complete,
so a crash mid-save leaves the previous checkpoint as the newest one. Its
format keeps no checksums, so `meta` holds a CRC-32 of each array's bytes
(`checksums`), checked when the arrays are read back: a byte changed on a
failing disk or by a corrupting copy is refused instead of trained on
(older checkpoints have none; a run of several processes sums every array
but the carried state, of which each process holds only its part).

In a multi-process run every process calls the same saves and loads, in the
same order: Orbax synchronises them, each process writes its own part of the
arrays, and only process 0 writes the JSON and renames the directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

from charlstm.core.state import TrainState, state_shapes
from charlstm.errors import CharlstmError, CheckpointError, ConfigError, shell_word
from charlstm.runtime import memory
from charlstm.text import manifest
from charlstm.training import checkpoint_meta, restore_failures
from charlstm.training.checkpoint_meta import Meta
from charlstm.training.checkpoint_paths import (
    BEST,
    LATEST,
    has_checkpoint,
    latest_step,
    locate,
    others_intact,
    run_of,
)
from charlstm.training.run import Run, check_writable_path, complete_steps

T = TypeVar("T")

KEEP_LATEST = 2


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
    restore_failures.quiet_step_metadata()
    return ocp.CheckpointManager(directory.absolute(), options=options, item_names=("state", "meta"))


class CheckpointWriter:
    """Writes a run's latest and best checkpoints."""

    def __init__(self, run_dir: Path):
        # New and resumed runs alike; a new one's folder was checked as it was made.
        check_writable_path(run_dir, resuming=True)
        # A failed save's other writes echo its error as they fail, some
        # before the save raises: only those echoes are dropped.
        restore_failures.quiet_a_failed_save()
        self.run_dir = run_dir
        root = run_dir / "checkpoints"
        try:  # Orbax reads each step's _CHECKPOINT_METADATA here
            self._managers = {LATEST: _manager(root / LATEST, KEEP_LATEST), BEST: _manager(root / BEST, 1)}
        except RecursionError:  # a JSON file nested deeper than Python's json reads: not one charlstm wrote
            raise CheckpointError(
                f"cannot open the checkpoints of {run_dir}: one of their metadata files is nested too deeply to read"
            ) from None
        self._held = has_checkpoint(run_dir)  # the run has had a checkpoint: a resumed one, or after a save

    def save(self, run: Run, best: bool, data_windows: int | None = None, rewrite: bool = False) -> str:
        kind = BEST if best else LATEST
        manager = self._managers[kind]
        step = int(run.state.step)
        path = str(self.run_dir / "checkpoints" / kind / str(step))
        if step in manager.all_steps():
            # Resuming reaches steps saved before. A latest checkpoint there
            # holds this very state (training is deterministic and resume
            # starts at the newest latest), and is rewritten only when asked
            # (`rewrite`: its history lacks the pass a stop cut short, which
            # the resumed run made); a best one may not (resumed with another
            # --lr, say), and it was only reached again by being better.
            if not best and (not rewrite or _trained_on_other_text(Path(path), run)):
                # (A resume forced past a changed corpus makes the pass it
                # owes on the new text: the checkpoint stays the record of
                # the text its weights were trained on.)
                return path
            manager.delete(step)
        state = flax.serialization.to_state_dict(run.state)
        meta = checkpoint_meta.metadata(run, data_windows)
        meta["checksums"] = checksums(state)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        try:
            manager.save(step, args=args, force=True)
            manager.wait_until_finished()
        except (OSError, ValueError) as err:
            if has_checkpoint(self.run_dir):
                after = (
                    "earlier checkpoints are intact, and 'charlstm resume' continues from the newest once the "
                    "problem is fixed"
                )
            elif self._held:  # they were there: the folder was moved or deleted while the run trained
                after = (
                    f"{self.run_dir} no longer holds the run's checkpoints (was it moved or deleted while the run "
                    "trained?): 'charlstm resume' continues from them wherever they are now"
                )
            else:  # nothing to resume: the run's start is what to repeat
                after = (
                    "no checkpoint was saved before it, so run the same 'charlstm train' command again (it "
                    f"starts afresh in {self.run_dir}) once the problem is fixed"
                )
            raise CheckpointError(f"could not write checkpoint {path}: {err}; {after}") from None
        self._held = True
        return path

    def close(self) -> None:
        for manager in self._managers.values():
            manager.close()


@dataclass(frozen=True)
class Checkpoint(Meta):
    """A checkpoint's metadata and its restored training state."""

    state: TrainState


def _read_meta(checkpointer: ocp.Checkpointer, where: Path) -> dict[str, Any]:
    meta = checkpointer.restore(where.absolute(), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    return checkpoint_meta.check_format(meta, where)


def describe(path: Path, prefer: str = BEST, advice: bool = False) -> Meta:
    """The checkpoint `path` points to (see `locate`), from its JSON
    metadata alone: no arrays are read. `advice`: a damaged one's error
    says how to go on from the run's others (not in a list of runs, where
    each line must stay short)."""

    def read(where: Path) -> Meta:
        with _reader() as checkpointer:
            return _checked(lambda: checkpoint_meta.to_meta(_read_meta(checkpointer, where), where), where)

    return _newest(path, prefer, read, advice=advice)


# A run being trained saves a checkpoint and deletes an older one (it keeps
# the newest), so a command reading the run meanwhile (`sample`, `eval`)
# can lose the step it reads half-way through: no damage, and the run has a
# newer one to read instead.
REREADS = 3


def _newest(path: Path, prefer: str, read: Callable[[Path], T], *, advice: bool = True, whole: bool = False) -> T:
    """`read(step directory)` of the checkpoint `path` points to (see
    `locate`); where that step is deleted or replaced by a newer one while
    it is read, the newest again, up to REREADS times. A failure on a step
    still there is the checkpoint's own (`advice`: how to go on from the
    run's others that `read` reads too; `whole`: it reads the arrays). Not
    in a multi-process run, whose processes must each make the same reads
    (Orbax waits for them all at each): there the others are not tried."""
    alone = jax.process_count() == 1
    rereads = REREADS if alone else 0

    def reads(other: Path) -> bool:
        try:
            read(other)
        except CheckpointError:
            return False
        return True

    for attempt in range(rereads + 1):
        directory, step = locate(path, prefer)
        where = directory / str(step)
        try:
            return read(where)
        except CheckpointError as err:
            if step in complete_steps(directory) and not _moved_on(path, prefer, where):
                blocked = restore_failures.unreadable(where)
                if blocked is not None:  # not damage: nothing to move aside
                    raise CheckpointError(
                        f"cannot read checkpoint {where}: this user may not read {blocked} (permission denied); "
                        f"its files are there: check their owner and mode (ls -l {shell_word(blocked)})"
                    ) from None
                way_on = others_intact(where, reads if alone else None, whole=whole) if advice else ""
                raise CheckpointError(f"{err}{way_on}") from None
            if where.absolute() == path.absolute() or attempt == rereads:  # a step named by the user: no other
                raise CheckpointError(
                    f"checkpoint {where} was deleted while it was read: its run is being trained, and keeps "
                    "only its newest checkpoints; read the run's folder, which takes its newest"
                ) from None
    raise AssertionError("unreachable")


def _moved_on(path: Path, prefer: str, where: Path) -> bool:
    """Whether `path` now points to another checkpoint than `where`: its run saved a newer one."""
    try:
        directory, step = locate(path, prefer)
    except CheckpointError:
        return True
    return directory / str(step) != where


MetaT = TypeVar("MetaT", bound=Meta)


def with_corpus_now(meta: MetaT) -> MetaT:
    """`meta`, with the places of its corpus taken from its run's newest
    checkpoint where its own are gone and that one read the same text (its
    sha256) from places that are there: a run resumed with `--corpus`
    records the new place in the checkpoints it saves from then on, not in
    an older best one."""
    entry = meta.corpus or {"path": meta.corpus_path, "sha256": meta.corpus_sha256}
    run = run_of(meta.path)
    if run is None or not manifest.missing(manifest.source_of(entry)):
        return meta
    try:
        newest = describe(run, LATEST)
    except CharlstmError:
        return meta
    if newest.corpus_sha256 != meta.corpus_sha256 or not newest.corpus:
        return meta
    if manifest.missing(manifest.source_of(newest.corpus)):
        return meta
    places: dict[str, Any] = {k: newest.corpus[k] for k in ("path", "sources", "val_files") if k in newest.corpus}
    return dataclasses.replace(meta, corpus={**entry, **places}, corpus_path=newest.corpus_path)


def load(path: Path, prefer: str = BEST) -> Checkpoint:
    """Restore a checkpoint onto this process's first device, whatever
    devices, or how many processes, wrote it. In a multi-process run every
    process must call this (Orbax synchronises them)."""
    return _newest(path, prefer, _restore, whole=True)


def _restore(where: Path) -> Checkpoint:
    """`load` of one step directory."""

    def restore(checkpointer: ocp.Checkpointer) -> Checkpoint:
        raw = _read_meta(checkpointer, where)
        meta = checkpoint_meta.to_meta(raw, where)
        template = state_shapes(meta.model_config, meta.train_config.batch_size)
        # Whole, on a device of this process: in a multi-process run every
        # process reads the full state and takes its own share (any process
        # count can resume any checkpoint; see distributed.place_state).
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        _refuse_past_memory(template, meta, where)
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
            flax.serialization.to_state_dict(template),
        )
        restore_failures.quiet_the_other_reads()  # before: the first echoes can come while Orbax is still failing
        try:
            restored = checkpointer.restore(
                where.absolute(), args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )
        except Exception as err:  # Orbax and TensorStore raise bare Exceptions, most for a missing or damaged file
            if restore_failures.interrupted(err):
                raise KeyboardInterrupt from None
            raise CheckpointError(restore_failures.failure_line(where, err)) from None
        _check_sums(raw.get("checksums"), restored["state"], where)
        _check_finite(restored["state"]["params"], where)
        state = flax.serialization.from_state_dict(template, restored["state"])
        return Checkpoint(**{f.name: getattr(meta, f.name) for f in dataclasses.fields(Meta)}, state=state)

    with _reader() as checkpointer:
        return _checked(lambda: restore(checkpointer), where)


def checksums(state: Any) -> dict[str, str]:
    """A CRC-32 of each array's bytes (hex), by its path in the state dict.
    In a run of several processes, the arrays every process holds whole
    (the parameters, the optimizer's moments, the step): each process holds
    only its streams' part of the carried state, which is left out (it was
    until 2026-12-06 with everything else)."""
    sums = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if not leaf.is_fully_replicated:
                continue
            leaf = leaf.addressable_data(0)  # a copy of the whole array
        sums["/".join(str(getattr(key, "key", key)) for key in path)] = f"{zlib.crc32(np.asarray(leaf).tobytes()):08x}"
    return sums


class TooLargeHere(ConfigError):
    """A checkpoint that does not fit in this machine's memory: not damage,
    so no advice to move it aside or to read the run's others."""


def _trained_on_other_text(where: Path, run: Run) -> bool:
    """Whether the checkpoint at `where` names another corpus than `run`'s."""
    with _reader() as checkpointer:
        try:
            saved = _read_meta(checkpointer, where).get("corpus", {}).get("sha256")
        except (CheckpointError, KeyError, TypeError, ValueError, AttributeError, OSError, RecursionError):
            return False
    return saved != run.corpus_entry.get("sha256")


def _refuse_past_memory(template: TrainState, meta: Meta, where: Path) -> None:
    """Refuse a checkpoint whose arrays alone would not fit in the memory
    free here, before any is read: its metadata can describe a model far
    larger than its files (a stranger's run, or a damaged one), and reading
    it would end in the system's out-of-memory killer, not in a message.
    A low estimate (the arrays once), so that nothing that fits is refused.
    Not in a run of several processes, which would each decide alone."""
    if jax.process_count() > 1:
        return
    free = memory.free_bytes()
    need = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(template))
    if free is None or need <= free:
        return
    device = jax.local_devices()[0]
    on_cpu = device.platform == "cpu"
    here = "here" if on_cpu else f"on the {device.platform.upper()} (JAX_PLATFORMS=cpu reads it on the CPU)"
    raise TooLargeHere(
        f"checkpoint {where} holds a {meta.model_config.describe()} whose arrays (its weights and AdamW's moments) "
        f"take {need / 1e9:,.1f} GB, more than the {free / 1e9:,.1f} GB free {here}; read it where there is more memory"
    )


def _check_finite(params: Any, where: Path) -> None:
    """Refuse weights that are not all finite: training never saves such a
    state (a step that makes one stops the run before its checkpoint), so
    they are damage, which checksums catch only in checkpoints that have them,
    and every character sampled from them would be the same."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        # NumPy's: JAX would compile a program for each shape, in every process that loads.
        if np.issubdtype(leaf.dtype, np.floating) and not np.isfinite(np.asarray(leaf)).all():
            name = "/".join(str(getattr(key, "key", key)) for key in path)
            raise CheckpointError(
                f"checkpoint {where} is damaged: its weights {name} hold values that are not finite (NaN or "
                "infinity), which training never saves"
            )


def _check_sums(saved: Any, state: Any, where: Path) -> None:
    """Refuse arrays read back other than they were saved, where the
    checkpoint has their checksums."""
    if not isinstance(saved, dict):
        return
    now = checksums(state)
    damaged = [name for name, crc in saved.items() if now.get(name) != crc]
    if damaged:
        more = f" and {len(damaged) - 1} more" if len(damaged) > 1 else ""
        raise CheckpointError(
            f"checkpoint {where} is damaged: its array {damaged[0]}{more} read back other than it was saved (a "
            "failing disk, or a copy that changed it)"
        )


@contextlib.contextmanager
def _reader() -> Iterator[ocp.Checkpointer]:
    """A checkpointer to read with, closed after."""
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    try:
        yield checkpointer
    finally:
        checkpointer.close()


def _checked(read: Callable[[], T], where: Path) -> T:
    """`read()`, with anything wrong in what it reads as one CheckpointError."""
    try:
        return read()
    except (CheckpointError, TooLargeHere):
        raise
    except CharlstmError as err:  # a bad stored config or vocabulary
        raise CheckpointError(f"checkpoint {where} is invalid: {err}") from None
    except RecursionError:  # a JSON file nested deeper than Python's json reads: not one charlstm wrote
        raise CheckpointError(f"cannot read checkpoint {where}: its metadata is nested too deeply to read") from None
    except KeyError as err:  # an entry its metadata must have (a checkpoint charlstm writes has them all)
        missing = f" {err.args[0]!r}" if err.args else ""
        raise CheckpointError(f"cannot read checkpoint {where}: its metadata lacks an entry{missing}") from None
    except (TypeError, ValueError, OverflowError, OSError) as err:
        raise CheckpointError(f"cannot read checkpoint {where}: {type(err).__name__}: {err}") from None


def best_val_loss(run_dir: Path, validation: str | None = None) -> float | None:
    """The validation loss of the run's best checkpoint, if it has a readable
    one. After a hard kill the best checkpoint can be newer than the latest.
    Only its JSON metadata is read, not its arrays. `validation`: the
    validation text's digest (`manifest.validation_digest`) the loss must
    have been measured on, where the best checkpoint records one too."""
    directory = run_dir / "checkpoints" / BEST
    step = latest_step(directory)
    if step is None:
        return None
    where = directory / str(step)
    with _reader() as checkpointer:
        try:
            meta = _read_meta(checkpointer, where)
            measured_on = manifest.validation_of(meta.get("corpus"))
            if None not in (validation, measured_on) and measured_on != validation:
                return None  # measured on another validation text (a resume given --force on a changed corpus)
            return checkpoint_meta.finite_or_none(meta.get("best_val_loss"), "best_val_loss", where)
        except (CheckpointError, KeyError, TypeError, ValueError, OSError, RecursionError):
            return None
