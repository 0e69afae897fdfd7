"""Starting a run from a corpus, or picking one up from its checkpoint."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charlstm import checkpoint, data
from charlstm.config import ModelConfig, TrainConfig, from_dict
from charlstm.errors import CharlstmError, CorpusError
from charlstm.model import param_count
from charlstm.state import Run, init_state
from charlstm.vocab import Vocab

RUNS_DIR = Path("runs")

# Options a resumed run may change; the rest would make it a different run.
RESUMABLE_FIELDS = ("steps", "max_seconds", "learning_rate", "eval_every", "checkpoint_every", "log_every")


def default_run_dir(corpus_path: Path, runs_dir: Path = RUNS_DIR, when: float | None = None) -> Path:
    """runs/<corpus>-<time>; `when` (unix seconds, default now) lets the
    processes of a multi-process run agree on one name."""
    return runs_dir / f"{corpus_path.stem}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}"


def check_run_dir(run_dir: Path) -> None:
    """Refuse a run directory that is a file or already holds something."""
    if run_dir.exists() and not run_dir.is_dir():
        raise CharlstmError(f"--out {run_dir} is a file, not a directory")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise CharlstmError(
            f"run directory {run_dir} already exists and is not empty; "
            "pick another --out, or continue it with 'charlstm resume'"
        )


def prepare_run_dir(run_dir: Path, checked: bool = False) -> None:
    """Create the run directory, refusing one in use unless `checked` already."""
    if not checked:
        check_run_dir(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CharlstmError(f"cannot create run directory {run_dir}: {err.strerror}") from None


def new_run(corpus: data.Corpus, model_kwargs: dict[str, Any], train_config: TrainConfig) -> Run:
    vocab = Vocab.from_text(corpus.text)
    model_config = ModelConfig(vocab_size=vocab.size, **model_kwargs)
    # Fail on a too-short text now, before compiling anything.
    data.layout(corpus.text, vocab, train_config.batch_size, train_config.seq_len, train_config.val_fraction)
    return Run(model_config, train_config, vocab, corpus, init_state(model_config, train_config))


def resume_run(run_dir: Path, overrides: dict[str, Any], force: bool = False) -> Run:
    """The run in `run_dir` at its latest checkpoint, with `overrides` (names
    from RESUMABLE_FIELDS) applied to its training config."""
    refused = sorted(set(overrides) - set(RESUMABLE_FIELDS))
    if refused:
        raise CharlstmError(f"cannot change {', '.join(refused)} when resuming; start a new run instead")
    if not (run_dir / "checkpoints").is_dir():
        raise CharlstmError(
            f"{run_dir} is not a run directory (it has no checkpoints/ folder); "
            "resume takes the directory that 'charlstm train' created, such as runs/NAME"
        )
    ckpt = checkpoint.load(run_dir, prefer=checkpoint.LATEST)
    if "steps" in overrides and overrides["steps"] <= int(ckpt.state.step):
        raise CharlstmError(
            f"--steps {overrides['steps']} is not beyond step {int(ckpt.state.step)}, where this run is; "
            "give a larger total to train on"
        )
    corpus_path, _ = data.resolve_corpus_path(ckpt.corpus_path)
    corpus = data.read_corpus(corpus_path)
    if corpus.sha256 != ckpt.corpus_sha256 and not force:
        raise CorpusError(
            f"corpus {corpus_path} changed since this run started (sha256 differs); "
            "resuming would train on different text. Use --force to resume anyway"
        )
    unknown = ckpt.vocab.unknown(corpus.text)
    if unknown:
        raise CorpusError(f"corpus {corpus_path} now has characters the model has no place for: {''.join(unknown)!r}")
    train_config = dataclasses.replace(ckpt.train_config, **overrides)
    return Run(
        ckpt.model_config,
        train_config,
        ckpt.vocab,
        corpus,
        ckpt.state,
        history=ckpt.history,
        best_val_loss=min(
            (v for v in (ckpt.best_val_loss, checkpoint.best_val_loss(run_dir)) if v is not None), default=None
        ),
        train_seconds=ckpt.train_seconds,
    )


@dataclass(frozen=True)
class RunSummary:
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


def list_runs(runs_dir: Path = RUNS_DIR) -> list[RunSummary]:
    """Every run directory under `runs_dir` with at least one checkpoint,
    most recently updated last. Reads only the checkpoints' JSON metadata."""
    if not runs_dir.is_dir():
        raise CharlstmError(f"no runs directory {runs_dir}; train a model first, or name the folder that holds runs")
    found = [summarize(d) for d in sorted(runs_dir.iterdir()) if _is_run(d)]
    return sorted(found, key=lambda r: r.updated)


def _is_run(path: Path) -> bool:
    try:
        return (path / "checkpoints").is_dir()
    except OSError:  # an unreadable directory is not one of ours to list
        return False


def summarize(run_dir: Path) -> RunSummary:
    try:
        where, meta = checkpoint.read_meta(run_dir, prefer=checkpoint.LATEST)
        model = from_dict(ModelConfig, meta["model"])  # old checkpoints: their own defaults
        bests = (meta.get("best_val_loss"), checkpoint.best_val_loss(run_dir))
        return RunSummary(
            path=run_dir,
            corpus=str(meta["corpus"]["path"]),
            model=model.describe(),
            params=param_count(model),
            step=int(meta["step"]),
            total_steps=int(meta["train"]["steps"]),
            best_val_loss=min((float(b) for b in bests if isinstance(b, (int, float))), default=None),
            train_seconds=float(meta.get("train_seconds") or 0.0),
            updated=where.stat().st_mtime,
        )
    except (CharlstmError, KeyError, TypeError, ValueError, OSError) as err:
        try:
            mtime = run_dir.stat().st_mtime
        except OSError:
            mtime = 0.0
        return RunSummary(run_dir, "?", "?", 0, 0, 0, None, 0.0, mtime, problem=str(err))
