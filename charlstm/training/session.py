"""Opening a run (new, or picked up from its latest checkpoint) and training
it for one session in its run directory, with its checkpoints and logs.

This is what `charlstm.train` and `charlstm.resume` do under the hood, and
what each trial of `charlstm tune` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from charlstm.arguments import paths_of
from charlstm.config import AUTO_NORM, TrainConfig, as_saved
from charlstm.core.model import grow_vocab
from charlstm.core.state import hyperparameters, init_optimizer, init_state, learning_rate
from charlstm.errors import CheckpointError, ConfigError, CorpusError, named, shell_word
from charlstm.flags import flag, option
from charlstm.text import manifest
from charlstm.text.corpus import Source
from charlstm.text.folder import DEFAULT_GLOB, RUN_LOG, SEARCH_RECORD
from charlstm.text.scan import Progress
from charlstm.text.tokens import Corpus, refuse_unfit_validation
from charlstm.text.vocab import Vocab
from charlstm.training import cadence, checkpoint, events, processes, reading, run_lock
from charlstm.training.events import EventHandler, StopCheck
from charlstm.training.loop import fit
from charlstm.training.run import (
    RESUMABLE_FIELDS,
    SHAPE_FIELDS,
    Run,
    check_run_dir,
    claim_default_dir,
    corpus_vocab,
    default_run_dir,
    new_run,
    prepare_run_dir,
    refuse_links,
    refuse_too_large,
    with_tokens,
)
from charlstm.training.runlog import RunLog
from charlstm.training.timefit import TimeUse
from charlstm.units import fixed


def fine_tune_run(
    corpus: Corpus,
    base: checkpoint.Checkpoint,
    model_kwargs: dict[str, Any],
    train_config: TrainConfig,
    progress: Progress,
) -> Run:
    """A run that starts from `base`'s weights (a loaded checkpoint) with a
    fresh optimizer and schedule; its vocabulary grows by the characters of
    `corpus` that `base` never saw (core.model.grow_vocab)."""
    old = base.model_config
    # Compared as given, before any config is built from them: a config
    # would first check them against each other (`--cell gru` with the old
    # model's `--norm layer`) and name an option the user never gave.
    wrong = [
        name
        for name in SHAPE_FIELDS
        if name in model_kwargs and model_kwargs[name] not in (getattr(old, name), AUTO_NORM)
    ]
    if wrong:
        given = ", ".join(f"{flag(n)} {model_kwargs[n]}" for n in wrong)
        # A layer-normalised base says so (describe()); a plain one too, where the norm is what differs.
        plain = " without layer norm" if old.cell == "lstm" and old.norm == "none" and "norm" in wrong else ""
        raise ConfigError(
            f"{flag('init_from')} {base.path} is a {old.describe()}{plain} (embedding {old.embed_dim}), but {given} "
            f"asks for another shape; fine-tuning keeps the model's shape (leave those options out)"
        )
    vocab = corpus_vocab(corpus, base.vocab)
    model_config = dataclasses.replace(old, vocab_size=vocab.size, boundary_id=vocab.boundary_id)
    refuse_too_large(model_config, train_config)  # the weights fit, as the base trained; a batch may not
    params = grow_vocab(base.state.params, vocab.size)
    fresh = init_state(model_config, train_config)  # the step, carries and key of a new run
    state = dataclasses.replace(fresh, params=params, opt_state=init_optimizer(params))
    run = with_tokens(corpus, vocab, model_config, train_config, state, progress)
    run.init_from = {
        "checkpoint": str(base.path),
        "step": base.step,
        "corpus": base.corpus_path,
        "vocab_size": base.vocab.size,
        "model": old.describe(),
        # Whether the weights it starts from ever trained: a base saved at step 0
        # holds its own base's weights, if it has one (runs before this say nothing: trained).
        "trained": base.step > 0 or bool(base.init_from is not None and base.init_from.get("trained", True)),
    }
    return run


def restored_run(corpus: Corpus, ckpt: checkpoint.Checkpoint, train_config: TrainConfig, progress: Progress) -> Run:
    """A run continued from its checkpoint `ckpt`, on `corpus` (read again)."""
    copies = manifest.copies_together(ckpt.corpus)  # the split it trained on
    run = with_tokens(corpus, ckpt.vocab, ckpt.model_config, train_config, ckpt.state, progress, copies)
    run.history, run.train_seconds, run.init_from = ckpt.history, ckpt.train_seconds, ckpt.init_from
    run.best_val_loss, run.devices = ckpt.best_val_loss, ckpt.devices
    return run


def new(
    corpus: str | Path | Sequence[str | Path],
    out: str | Path | None,
    model: dict[str, Any],
    config: TrainConfig,
    *,
    glob: str | None = None,
    val_file: str | Path | Sequence[str | Path] | None = None,
    skip_bad_files: bool = False,
    init_from: str | Path | None = None,
    on_event: EventHandler | None = None,
    chosen: Collection[str] | None = None,
    fills_time: bool = False,
) -> tuple[Run, Path, bool]:
    """A new run on `corpus` (files and folders, or a shipped corpus's name),
    its fresh run directory, and whether the shipped corpus stood in for the
    name. `model`: ModelConfig fields other than vocab_size; with
    `init_from` (a run or checkpoint), those given must match its model.
    `glob` picks a folder's files; `val_file` is validation text instead of a
    held-out share; `skip_bad_files` leaves out files that are not text.
    `chosen`: the TrainConfig fields the user chose, where the others may be
    fitted to a short text (`cadence.fitted`; `fills_time`: --fill-time);
    None keeps `config` as it is."""
    source = source_of(corpus, glob, val_file, skip_bad_files)
    # The processes of a multi-process run must name the same directory.
    when = processes.from_main(time.time())
    if out is not None:
        check_run_dir(Path(out))  # before the corpus is read, which can take a while
    base = checkpoint.load(Path(init_from)) if init_from is not None else None
    if base is not None and processes.joined():  # the same base on every process (paths may differ by host)
        processes.agree({"init_from": checkpoint.checksums(base.state.params)})
    text = reading.read(source, on_event)
    refuse_unfit_validation(text, text.charset + (base.vocab.chars if base is not None else ""))
    run_dir = Path(out) if out is not None else default_run_dir(_first_read(source, text), when=when)
    # One process alone makes a default-named directory of its own (another
    # run may have started in the same second); several name the same one.
    claim = out is None and not processes.joined()
    if not claim:
        check_run_dir(run_dir)
    progress = reading.progress_reporter(on_event)
    run = new_run(text, model, config, progress) if base is None else fine_tune_run(text, base, model, config, progress)
    if chosen is not None:
        steps_per_pass = len(run.layout().train)
        run.train_config, run.short_text = cadence.fitted(
            run.train_config, steps_per_pass, chosen, fills_time, new_model=base is None
        )
    reading.report_ready(run, on_event)
    if claim:
        return run, claim_default_dir(run_dir), text.shipped
    # ... and all look at it before any of them creates it (or its checkpoint folders).
    processes.barrier("charlstm: run directory checked")
    prepare_run_dir(run_dir, checked=True)
    return run, run_dir, text.shipped


def _first_read(source: Source, text: Corpus) -> Path:
    """The first file or folder given that was not left out: it names the run."""
    left_out = {Path(f.path).resolve() for f in text.skipped}
    kept = [p for p in source.paths if Path(p).resolve() not in left_out]
    return Path(kept[0] if kept else source.paths[0])


def source_of(
    corpus: str | Path | Sequence[str | Path],
    glob: str | None = None,
    val_file: str | Path | Sequence[str | Path] | None = None,
    skip_bad_files: bool = False,
) -> Source:
    """The files to read, as `train` and `tune` take them; a path given
    twice once (it is read once, and a run moved elsewhere is given its
    new place once for each path it recorded)."""
    return Source(
        _once(paths_of(corpus, "corpus")),
        DEFAULT_GLOB if glob is None else glob,
        _once(paths_of(val_file, "val_file")),
        skip_bad_files,
    )


def _once(paths: tuple[str, ...]) -> tuple[str, ...]:
    """`paths` without a path that names the same place as one before it."""
    first: dict[str, str] = {}
    for path in paths:
        first.setdefault(os.path.abspath(path), path)
    return tuple(first.values())


def resumed_run(
    run_dir: Path,
    overrides: dict[str, Any],
    force: bool = False,
    on_event: EventHandler | None = None,
    moved_to: Sequence[str] = (),
) -> Run:
    """The run in `run_dir` at its latest checkpoint, with `overrides` (names
    from RESUMABLE_FIELDS) applied to its training config; `moved_to`: where
    the files and folders it read are now, one for each (manifest.moved)."""
    refused = sorted(set(overrides) - set(RESUMABLE_FIELDS))
    if refused:
        raise ConfigError(f"cannot change {', '.join(refused)} when resuming; start a new run instead")
    _refuse_not_a_run(run_dir)
    refuse_links(run_dir)
    # Before reading anything. In a multi-process run every process passes
    # here before process 0 takes the lock: checkpoint.load synchronises them.
    run_lock.refuse_if_held(run_dir)
    if not processes.joined():  # (several processes would each decide alone)
        # From its metadata, before its arrays are read: a run moved from a
        # larger machine would otherwise wait on memory it will never get.
        meta = checkpoint.describe(run_dir, prefer=checkpoint.LATEST, advice=True)
        refuse_too_large(meta.model_config, meta.train_config, resuming=True)
    ckpt = checkpoint.load(run_dir, prefer=checkpoint.LATEST)
    # Checked before the corpus is read, which can take a while: a bad option fails at once.
    train_config = dataclasses.replace(ckpt.train_config, **overrides)
    if "steps" in overrides and overrides["steps"] <= int(ckpt.state.step):
        raise ConfigError(
            f"{flag('steps')} {overrides['steps']} is not beyond step {int(ckpt.state.step)}, where this run is; "
            "give a larger total to train on"
        )
    entry, files = ckpt.corpus, manifest.read_files(run_dir)
    if moved_to:
        entry, files = manifest.moved(entry, files, moved_to)
    source = manifest.source_of(entry)
    manifest.refuse_gone(source, "to resume")
    corpus = reading.read(source, on_event, int(ckpt.state.step))
    if corpus.sha256 != ckpt.corpus_sha256 and corpus.matches(ckpt.corpus_sha256):
        corpus = dataclasses.replace(corpus, recorded_as=ckpt.corpus_sha256)  # as an earlier version named it
    if not force:
        manifest.refuse_changed(entry, files, corpus, moved=bool(moved_to))
    _refuse_untrainable(corpus, ckpt.vocab, source, run_dir)
    run = restored_run(corpus, ckpt, train_config, reading.progress_reporter(on_event))
    validation = manifest.validation_of(run.corpus_entry)
    run.best_val_loss = min(
        (v for v in (ckpt.best_val_loss, checkpoint.best_val_loss(run_dir, validation)) if v is not None), default=None
    )
    run.resumed_with = {
        name: [getattr(ckpt.train_config, name), value]
        for name, value in overrides.items()
        if getattr(ckpt.train_config, name) != value
    }
    if corpus.sha256 != ckpt.corpus_sha256:
        run.resumed_with["text"] = [ckpt.corpus_sha256, corpus.sha256]
    measured_on = manifest.validation_of(ckpt.corpus)  # None: a checkpoint from before it was recorded
    validation_changed = None if measured_on is None else measured_on != validation
    best_before = run.best_val_loss
    if validation_changed:
        # A forced resume on a changed corpus whose validation text changed
        # too: losses on it do not compare with the earlier ones, so the
        # run's validation record starts afresh (its best, --patience's count,
        # the overfitting warning); metrics.jsonl keeps the earlier passes.
        run.history, run.best_val_loss = [], None
    if on_event is not None:
        for kind, message in _resume_warnings(ckpt, corpus, train_config, overrides, best_before, validation_changed):
            on_event(events.Warned(int(ckpt.state.step), kind, message))
    reading.report_ready(run, on_event)
    return run


def _refuse_not_a_run(run_dir: Path) -> None:
    """Refuse what is not a run directory, saying what it is instead."""
    if not run_dir.exists():
        raise CheckpointError(f"run directory not found: {run_dir}")  # what load() raises for a missing run
    if (run_dir / "checkpoints").is_dir():
        return
    if any(
        (where / name).is_file()
        for where, name in [(run_dir.parent, SEARCH_RECORD), (run_dir, SEARCH_RECORD), (run_dir, RUN_LOG)]
    ):
        # A search's trial (tune kept only the best one's checkpoints), a
        # search itself (the best trial named), a run whose checkpoints
        # are gone: `locate` says which, as sample says it.
        checkpoint.locate(run_dir)
    raise CheckpointError(
        f"{run_dir} is {'a file' if run_dir.is_file() else 'not a run directory (it has no checkpoints/ folder)'}; "
        "resume takes the directory that 'charlstm train' created, such as runs/NAME"
    )


def _refuse_untrainable(corpus: Corpus, vocab: Vocab, source: Source, run_dir: Path) -> None:
    """Refuse a corpus (given --force past a change) that the run's model
    cannot train on: characters it has no place for, or several files where
    it was trained on one."""
    unknown = sorted(set(corpus.charset) - set(vocab.chars))
    if unknown:
        raise CorpusError(
            f"corpus {corpus.path} now has characters the model has no place for: {named(unknown)}; to train "
            f"on it, start a new run from this one's weights: charlstm train {shlex.join(source.arguments())} "
            f"{option('init_from')} {shell_word(run_dir)}"
        )
    if corpus.boundary and vocab.boundary_id is None:
        raise CorpusError(
            f"corpus {corpus.path} now has several files, and this run's model was trained on one: it has no "
            "symbol to mark where they meet; start a new run (or one that starts from this one's weights)"
        )


def _resume_warnings(
    ckpt: checkpoint.Checkpoint,
    corpus: Corpus,
    train_config: TrainConfig,
    overrides: dict[str, Any],
    best_val_loss: float | None,
    validation_changed: bool | None = None,
) -> list[tuple[str, str]]:
    """What a resume says as it starts, (kind, message) each: a forced
    corpus change, a jump in the learning rate schedule, options that a
    finished run ignores. `best_val_loss`: the run's best before the resume;
    `validation_changed`: whether its validation text is another now (None:
    its checkpoint does not say what it was)."""
    step, found = int(ckpt.state.step), []
    if corpus.sha256 != ckpt.corpus_sha256 and best_val_loss is not None:
        best = fixed(best_val_loss, 4)
        if validation_changed is None:  # a checkpoint from before the validation text was recorded: it cannot tell
            said = (
                f"the corpus changed since the run started; if its validation text changed too, later validation "
                f"losses do not compare with the best so far ({best}), which keeps its checkpoint"
            )
        elif validation_changed:
            said = (
                f"the corpus changed since the run started, and its validation text with it: the best so far "
                f"({best}) and the passes up to step {step} were measured on the earlier text, so the run's "
                f"validation record starts afresh (the next pass is its new best and replaces the best checkpoint; "
                f"{flag('patience')} counts from there; metrics.jsonl keeps the earlier passes)"
            )
        else:
            said = (
                f"the corpus changed since the run started, but not its validation text: later validation losses "
                f"compare with the best so far ({best})"
            )
        found.append(("corpus changed", said))
    jump = _schedule_jump(ckpt.train_config, train_config, step)
    if jump is not None:
        found.append(("schedule", jump))
    unused = _unused_on_a_finished_run(overrides, step, train_config.steps)
    if unused is not None:
        found.append(("options", unused))
    return found


def _unused_on_a_finished_run(overrides: dict[str, Any], step: int, steps: int) -> str | None:
    """What a resume's options do to a run that has reached its step total:
    nothing (a time limit aside, which scripts that resume until a run is
    done give every time)."""
    given = [flag(name) for name in overrides if name not in ("steps", "max_seconds")]
    if step < steps or not given:
        return None
    named = given[0] if len(given) == 1 else f"{', '.join(given[:-1])} and {given[-1]}"
    return (
        f"the run has reached its {steps:,} steps, so {named} change{'s' if len(given) == 1 else ''} nothing unless "
        f"{flag('steps')} gives a larger total"
    )


def _schedule_jump(old: TrainConfig, new: TrainConfig, step: int) -> str | None:
    """What a resume's new total does to the learning rate where the run
    stands, where it more than doubles or halves it: extending a finished
    run restarts its decay from near the peak (a warm restart, with no
    second warm-up unless the longer total's warm-up, a tenth of it at
    most, is not over yet), and shortening one part-way drops the rate at once,
    neither of which a user changing the total may expect. (A new peak the
    user gives is theirs to expect; the rate is compared at the old peak.)"""
    if old.steps == new.steps:
        return None
    with as_saved():  # the saved peak, whatever checks came since it was saved
        same_peak = dataclasses.replace(new, learning_rate=old.learning_rate)
    before, after = (float(learning_rate(hyperparameters(c), step)) for c in (old, same_peak))
    now = float(learning_rate(hyperparameters(new), step))
    # Both are 0 at step 0 (warm-up starts there); a finished run may end at 0 (min_lr_ratio 0).
    # Where the rate itself moves past 2x: a new --lr with the new total can leave it near where it was.
    moves = now > 2 * before or 2 * now < before
    if after > 2 * before and after > 0.01 * old.learning_rate and moves:
        goes = "jumps" if now > before else "drops"  # a lower peak given with the new total can turn it around
        if step < new.warmup_used:
            # The longer total lengthens the warm-up (a tenth of the steps at
            # most) past where the run stands: the rate climbs again.
            return (
                f"the schedule now spans {new.steps:,} steps and warms up over its first {new.warmup_used:,}, so "
                f"the learning rate {goes} from {before:.2e} to {now:.2e} at the next step, climbs to its peak of "
                f"{new.learning_rate:.2e} at step {new.warmup_used:,} and decays from there; "
                f"{flag('learning_rate')} sets the peak"
            )
        restart = ": a warm restart, without a second warm-up" if now > before else ""
        return (
            f"the schedule now spans {new.steps:,} steps, so the learning rate {goes} from {before:.2e} to "
            f"{now:.2e} at the next step and decays from there{restart}; {flag('learning_rate')} sets the peak"
        )
    # Only a shorter total past its warm-up: a longer one's warm-up may stand lower for a while, as asked.
    if new.warmup_used <= step < new.steps < old.steps and 2 * after < before:
        return (
            f"the schedule now ends at step {new.steps:,}, so the learning rate drops from {before:.2e} to "
            f"{now:.2e} at the next step and decays to its floor from there; {flag('steps')} {old.steps} keeps "
            "the schedule the run had"
        )
    return None


def train(
    run: Run,
    run_dir: Path,
    on_event: EventHandler | None = None,
    should_stop: StopCheck | None = None,
    devices: int | None = None,
    time_use: TimeUse = "limit",
) -> events.Finished:
    """Train `run` in `run_dir` until done, stopped or diverged, keeping its
    checkpoints and logs; every event also goes to `on_event`. The batch is
    split over the first `devices` local devices (default: all); in a
    multi-process run (`processes.initialize`) every process calls this,
    and only the first writes the logs. `time_use`: how the run's
    `max_seconds` is read, a limit, a limit to fill, or a budget of training
    steps (`loop.fit`, timefit.TimeUse)."""
    processes.agree(
        {
            **dataclasses.asdict(run.model_config),
            **dataclasses.asdict(run.train_config),
            "text (its sha256)": run.corpus.sha256,  # "... started with different text (its sha256)"
            "vocabulary": run.vocab.chars,
            # Named for the likeliest cause: resume given another RUN on one process (a walkthrough, 2026-12-06).
            "starting checkpoint (resume: the same RUN on every process)": int(run.state.step),
            "devices": devices,
            "how the time limit is used": time_use,
        }
    )
    processes.share_directory(run_dir)  # the directory each of them saves its part of every checkpoint into
    # The first process holds the run's lock: in a multi-process run the
    # others are its partners, not rivals.
    session = (int(run.state.step), run.train_config.steps)  # for `charlstm runs` until this session's first save
    with run_lock.held(run_dir, session) if processes.is_main() else contextlib.nullcontext():
        return _fit_logged(run, run_dir, on_event, should_stop, devices, time_use)


def _fit_logged(
    run: Run,
    run_dir: Path,
    on_event: EventHandler | None,
    should_stop: StopCheck | None,
    devices: int | None,
    time_use: TimeUse,
) -> events.Finished:
    """`fit`, its checkpoints saved and its events logged (metrics.jsonl,
    samples.txt) and passed on; how it ended."""
    writer = checkpoint.CheckpointWriter(run_dir)  # every process: Orbax coordinates their saves
    # What this session trains with, for the run's history: the options a resume may change, and the text.
    trains_with = {name: getattr(run.train_config, name) for name in RESUMABLE_FIELDS}
    trains_with["corpus_sha256"] = run.corpus.sha256
    if run.resumed_with is not None:
        trains_with["changed"] = run.resumed_with
    log = RunLog(run_dir, trains_with) if processes.is_main() else None
    if log is not None:
        # The files this session reads, for the next resume to compare with (text/manifest.py).
        manifest.write_files(run_dir, manifest.files_record(run.corpus, run.layout().split))
    finished: events.Finished | None = None
    try:
        for event in fit(run, writer.save, should_stop or (lambda: False), devices=devices, time_use=time_use):
            if log is not None:
                log.handle(event)
            if on_event is not None:
                on_event(event)
            if isinstance(event, events.Finished):
                finished = event
    finally:
        try:
            if log is not None:
                log.close()
        finally:  # a log that cannot be written (a full disk) never leaves a save in flight unfinished
            writer.close()
    assert finished is not None  # fit always ends with Finished
    return finished
