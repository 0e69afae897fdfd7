"""The runs under a folder, as `charlstm runs` lists them, and the newest one.

Only the checkpoints' JSON metadata is read, never their arrays, so listing
many runs is quick.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from charlstm.config import TrainConfig
from charlstm.core.model import count_params_of_shape
from charlstm.errors import CharlstmError, CheckpointError
from charlstm.text import manifest
from charlstm.text.folder import RUN_LOG, SEARCH_RECORD
from charlstm.training import checkpoint, health, run_lock
from charlstm.training.checkpoint_paths import not_saved_yet
from charlstm.training.run import RUNS_DIR, why_ended


@dataclass(frozen=True)
class RunSummary:
    """One run as `charlstm runs` lists it (`list_runs`)."""

    path: Path
    corpus: str  # the corpus file's path as given when the run started
    model: str  # e.g. "2x256 LSTM"
    params: int
    step: int
    total_steps: int
    best_val_loss: float | None  # nats/char
    train_seconds: float
    updated: float  # unix time of the newest checkpoint, latest or best
    problem: str | None = None  # why the run could not be read, if it could not
    corpus_sources: tuple[str, ...] = ()  # the files and folders given to train on, `corpus` first
    trained: bool = False  # beyond its first step (`recency`)
    # "done", "stopped early" (--patience), "training" (by a process now) or
    # "resumable" (stopped, or ended by a time limit before its step total:
    # `charlstm resume` trains on): `state`; with a `problem`, "training"
    # (before its first checkpoint) or "unreadable".
    state: str = "resumable"
    # Listed as it is, but the best checkpoint, which sample, eval, info and
    # inspect read, cannot be read: why, and how to go on.
    damaged_best: str | None = None
    # Its newest latest checkpoint, which `resume` reads, cannot be read: why,
    # and how to go on; the row then comes from its best checkpoint.
    damaged_latest: str | None = None
    # Where its best validation loss is worse than guessing every character
    # equally: what to tell the user, who may have scrolled past the run's
    # own warning (a walkthrough, 2026-12-06); None otherwise.
    guessing: str | None = None


def list_runs(runs_dir: Path = RUNS_DIR) -> list[RunSummary]:
    """Every run directory under `runs_dir` (a folder with a checkpoints/
    folder), and the trials of the searches there (`charlstm tune` keeps
    them a level deeper), by `recency`: the last is the one commands take
    when no run is named (`most_recent_run`). One without a complete
    checkpoint (a run aborted before its first save) is listed with that
    `problem`. `runs_dir` may be one run. Reads only the checkpoints' JSON
    metadata."""
    if runs_dir.is_file():
        raise CharlstmError(f"{runs_dir} is a file; name the folder that holds runs (runs/ by default)")
    if not runs_dir.is_dir():
        where = f"no folder {runs_dir}/ here" if not runs_dir.is_absolute() else f"no folder {runs_dir}/"
        raise CharlstmError(f"{where}, so no runs: train a model first, or name the folder that holds runs")
    if _is_run(runs_dir):
        return [summarize(runs_dir)]
    return sorted((summarize(d) for d in _runs_under(runs_dir)), key=lambda r: (r.trained, r.updated))


def _runs_under(runs_dir: Path) -> list[Path]:
    """The run directories in `runs_dir`, and in its folders that are not
    runs (a search's trials), by name."""
    found = []
    for entry in sorted(runs_dir.iterdir()):
        if _is_run(entry):
            found.append(entry)
        elif _is_folder(entry):
            try:
                found += [d for d in sorted(entry.iterdir()) if _is_run(d)]
            except OSError:  # an unreadable folder is not one of ours to list
                continue
    return found


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_run(path: Path) -> bool:
    """A run directory: one with checkpoints, or its log without them (they
    were deleted: listed, with why it cannot be read), but not a search's
    trial whose checkpoints the search removed (it kept the best one's)."""
    try:
        if (path / "checkpoints").is_dir():
            return True
        return (path / RUN_LOG).is_file() and not (path.parent / SEARCH_RECORD).is_file()
    except OSError:  # an unreadable directory is not one of ours to list
        return False


def summarize(run_dir: Path) -> RunSummary:
    try:
        meta, damaged_latest = _latest(run_dir)
        best, damaged_best = _best(run_dir)
        lowest = min((b for b in (meta.best_val_loss, best) if b is not None), default=None)
        run_state = state(run_dir, meta.step, meta.train_config, meta.history)
        total = meta.train_config.steps
        session = run_lock.session_steps(run_dir) if run_state == "training" else None
        if session is not None and session[0] == meta.step:  # a session that has not saved yet: its total
            total = session[1]
        return RunSummary(
            path=run_dir,
            corpus=meta.corpus_path,
            corpus_sources=tuple(str(s) for s in meta.corpus.get("sources") or [meta.corpus_path]),
            model=meta.model_config.describe(),
            params=count_params_of_shape(meta.model_config),
            step=meta.step,
            total_steps=total,
            best_val_loss=lowest,
            train_seconds=meta.train_seconds,
            updated=when[1] if (when := recency(run_dir)) is not None else meta.path.stat().st_mtime,
            trained=when is not None and when[0],
            state=run_state,
            damaged_best=damaged_best,
            damaged_latest=damaged_latest,
            guessing=None if lowest is None else health.worse_than_guessing(lowest, meta.model_config.vocab_size, True),
        )
    except (CharlstmError, KeyError, TypeError, ValueError, OSError) as err:
        try:
            mtime = run_dir.stat().st_mtime
        except OSError:
            mtime = 0.0
        # A run before its first checkpoint has none to read, and may be training now.
        if not run_lock.in_use(run_dir):
            return RunSummary(run_dir, "?", "?", 0, 0, 0, None, 0.0, mtime, problem=str(err), state="unreadable")
        # What it already says of itself: its corpus's files, its session's steps.
        step, total = run_lock.session_steps(run_dir) or (0, 0)
        return RunSummary(
            run_dir, _corpus_files(run_dir), "?", 0, step, total, None, 0.0, mtime, problem=str(err), state="training"
        )


def _latest(run_dir: Path) -> tuple[checkpoint.Meta, str | None]:
    """The newest latest checkpoint's metadata; where it cannot be read, the
    best one's, with why and how to go on (a damaged newest checkpoint once
    dropped its run from the table, which `sample` and `eval` still read)."""
    try:
        return checkpoint.describe(run_dir, prefer=checkpoint.LATEST), None
    except CheckpointError as err:
        try:
            best = checkpoint.describe(run_dir, prefer=checkpoint.BEST)
        except CharlstmError:
            raise err from None
        if best.path.parent.name != checkpoint.BEST:  # no best apart from the damaged latest
            raise err from None
        try:
            checkpoint.describe(run_dir, prefer=checkpoint.LATEST, advice=True)
        except CheckpointError as advised:
            return best, str(advised)
        return best, str(err)


def _best(run_dir: Path) -> tuple[float | None, str | None]:
    """The best checkpoint's validation loss, or why it cannot be read (the
    latest can be whole while it is not: commands that read it then fail)."""
    try:
        return checkpoint.describe(run_dir, prefer=checkpoint.BEST, advice=True).best_val_loss, None
    except CheckpointError as err:
        return None, str(err)


def _corpus_files(run_dir: Path) -> str:
    """A new run's corpus from its corpus.json, before any checkpoint
    records what it was given: its one file, or the folder that holds its files."""
    try:
        paths = [str(f["path"]) for f in (manifest.read_files(run_dir) or {})["train"]]
        return paths[0] if len(paths) == 1 else os.path.commonpath(paths)
    except (KeyError, IndexError, TypeError, ValueError):
        return "?"


STATES = {"done": "done", "patience": "stopped early"}


def state(run_dir: Path, step: int, train_config: TrainConfig, history: list[dict[str, float]]) -> str:
    """A run's state as `charlstm runs` shows it, from its latest checkpoint's
    step, configuration and history, and its lock."""
    if run_lock.in_use(run_dir):
        return "training"
    ended = why_ended(step, train_config, history)
    return STATES[ended] if ended is not None else "resumable"


def recency(run_dir: Path) -> tuple[bool, float] | None:
    """How recent a run is, as `list_runs` orders runs and `most_recent_run`
    picks one: whether it has trained (a run stopped before its first step
    saved only its initial weights), then when its newest checkpoint, latest
    or best, was written; None without a complete checkpoint. Reads
    directory listings alone."""
    newest: tuple[bool, float] | None = None
    for kind in (checkpoint.LATEST, checkpoint.BEST):
        step = checkpoint.latest_step(run_dir / "checkpoints" / kind)
        if step is not None:
            found = (step > 0, (run_dir / "checkpoints" / kind / str(step)).stat().st_mtime)
            newest = found if newest is None else max(newest, found)
    return newest


def most_recent_run(runs_dir: Path) -> Path:
    """The run under `runs_dir` that `list_runs` lists last (by `recency`),
    the trials of searches there included."""
    runs = _runs_under(runs_dir) if runs_dir.is_dir() else []
    known = [(when, run_dir) for run_dir in runs if (when := recency(run_dir)) is not None]
    if not known:
        training = [run_dir for run_dir in runs if run_lock.in_use(run_dir)]
        if training:  # a new run in another terminal, before its first save
            raise CheckpointError(f"no trained run found under {runs_dir}/ yet: {training[0]} {not_saved_yet()}")
        raise CheckpointError(
            f"no trained run found under {runs_dir}/: train one with 'charlstm train CORPUS', or name a run directory"
        )
    # Of runs as recent as each other (a run copied with its times), the one
    # `list_runs` lists last: its sort is stable, and max() keeps the first.
    return max(reversed(known), key=lambda item: item[0])[1]
