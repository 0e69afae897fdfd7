"""The runs under a folder, as `charlstm runs` lists them, and the newest one.

Only the checkpoints' JSON metadata is read, never their arrays, so listing
many runs is quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from charlstm.core.model import param_count
from charlstm.errors import CharlstmError, CheckpointError
from charlstm.training import checkpoint
from charlstm.training.run import RUNS_DIR


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
    updated: float  # unix time of the newest checkpoint
    problem: str | None = None  # why the run could not be read, if it could not
    corpus_sources: int = 1  # files and folders given to train on; `corpus` is the first


def list_runs(runs_dir: Path = RUNS_DIR) -> list[RunSummary]:
    """Every run directory under `runs_dir` (a folder with a checkpoints/
    folder), and the trials of the searches there (`charlstm tune` keeps
    them a level deeper), most recently updated last; one without a complete
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
    return sorted((summarize(d) for d in _runs_under(runs_dir)), key=lambda r: r.updated)


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
    try:
        return (path / "checkpoints").is_dir()
    except OSError:  # an unreadable directory is not one of ours to list
        return False


def summarize(run_dir: Path) -> RunSummary:
    try:
        meta = checkpoint.describe(run_dir, prefer=checkpoint.LATEST)
        bests = (meta.best_val_loss, checkpoint.best_val_loss(run_dir))
        return RunSummary(
            path=run_dir,
            corpus=meta.corpus_path,
            corpus_sources=len(meta.corpus.get("sources") or [meta.corpus_path]),
            model=meta.model_config.describe(),
            params=param_count(meta.model_config),
            step=meta.step,
            total_steps=meta.train_config.steps,
            best_val_loss=min((b for b in bests if b is not None), default=None),
            train_seconds=meta.train_seconds,
            updated=meta.path.stat().st_mtime,
        )
    except (CharlstmError, KeyError, TypeError, ValueError, OSError) as err:
        try:
            mtime = run_dir.stat().st_mtime
        except OSError:
            mtime = 0.0
        return RunSummary(run_dir, "?", "?", 0, 0, 0, None, 0.0, mtime, problem=str(err))


def most_recent_run(runs_dir: Path) -> Path:
    """The run under `runs_dir` whose newest checkpoint was written last,
    the trials of searches there included (as `list_runs` lists them). A run
    stopped before its first step (only its initial weights saved) is taken
    only where no run has trained."""
    newest: tuple[bool, float, Path] | None = None
    if runs_dir.is_dir():
        for run_dir in _runs_under(runs_dir):
            for kind in (checkpoint.LATEST, checkpoint.BEST):
                step = checkpoint.latest_step(run_dir / "checkpoints" / kind)
                if step is not None:
                    mtime = (run_dir / "checkpoints" / kind / str(step)).stat().st_mtime
                    if newest is None or (step > 0, mtime) > newest[:2]:
                        newest = (step > 0, mtime, run_dir)
    if newest is None:
        raise CheckpointError(
            f"no trained run found under {runs_dir}/: train one with 'charlstm train CORPUS', or name a run directory"
        )
    return newest[2]
