"""Opening a run (new, or picked up from its latest checkpoint) and training
it for one session in its run directory, with its checkpoints and logs.

This is what `charlstm.train` and `charlstm.resume` do under the hood, and
what each trial of `charlstm tune` does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charlstm.config import TrainConfig
from charlstm.errors import CharlstmError, CorpusError
from charlstm.flags import flag
from charlstm.text.corpus import read_corpus, resolve_corpus_path
from charlstm.training import checkpoint, distributed, events
from charlstm.training.loop import fit
from charlstm.training.run import RESUMABLE_FIELDS, Run, check_run_dir, default_run_dir, new_run, prepare_run_dir
from charlstm.training.runlog import RunLog

EventHandler = Callable[[Any], None]
StopCheck = Callable[[], bool]


def new(
    corpus: str | Path, out: str | Path | None, model: dict[str, Any], config: TrainConfig
) -> tuple[Run, Path, bool]:
    """A new run on `corpus` (a file, or a shipped corpus's name), its fresh
    run directory, and whether the shipped corpus stood in for the name.
    `model`: ModelConfig fields other than vocab_size."""
    path, shipped = resolve_corpus_path(str(corpus))
    run = new_run(read_corpus(path.resolve()), model, config)
    # The processes of a multi-process run must name the same directory.
    run_dir = Path(out) if out is not None else default_run_dir(path, when=distributed.from_main(time.time()))
    check_run_dir(run_dir)
    # ... and all look at it before any of them creates it (or its checkpoint folders).
    distributed.barrier("charlstm: run directory checked")
    prepare_run_dir(run_dir, checked=True)
    return run, run_dir, shipped


def resumed_run(run_dir: Path, overrides: dict[str, Any], force: bool = False) -> Run:
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
            f"{flag('steps')} {overrides['steps']} is not beyond step {int(ckpt.state.step)}, where this run is; "
            "give a larger total to train on"
        )
    corpus_path, _ = resolve_corpus_path(ckpt.corpus_path)
    corpus = read_corpus(corpus_path)
    if corpus.sha256 != ckpt.corpus_sha256 and not force:
        raise CorpusError(
            f"corpus {corpus_path} changed since this run started (sha256 differs); "
            f"resuming would train on different text. Use {flag('force')} to resume anyway"
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


def train(
    run: Run,
    run_dir: Path,
    on_event: EventHandler | None = None,
    should_stop: StopCheck | None = None,
    devices: int | None = None,
) -> events.Finished:
    """Train `run` in `run_dir` until done, stopped or diverged, keeping its
    checkpoints and logs; every event also goes to `on_event`. The batch is
    split over the first `devices` local devices (default: all); in a
    multi-process run (`distributed.initialize`) every process calls this,
    and only the first writes the logs."""
    writer = checkpoint.CheckpointWriter(run_dir)  # every process: Orbax coordinates their saves
    log = RunLog(run_dir) if distributed.is_main() else None
    finished: events.Finished | None = None
    try:
        for event in fit(run, writer.save, should_stop or (lambda: False), devices=devices):
            if log is not None:
                log.handle(event)
            if on_event is not None:
                on_event(event)
            if isinstance(event, events.Finished):
                finished = event
    finally:
        if log is not None:
            log.close()
        writer.close()
    assert finished is not None  # fit always ends with Finished
    return finished
