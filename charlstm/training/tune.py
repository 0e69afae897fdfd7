"""Hyperparameter search: random or grid, each trial a real run on one budget.

The search space (`search_space.py`) has five dimensions: the peak learning
rate, the hidden size, the number of layers, the sequence length and the
dropout rate. Each can be narrowed to a list of values ("128,256") or, for
random search, a range sampled log-uniformly ("1e-3:3e-2"). Random search
draws every dimension independently from `numpy.random.default_rng(seed)`,
drawing again a configuration it already has (so a space smaller than the
trials asked for runs each of its configurations once, and the plan says
so); grid search takes all combinations of the lists, in a seeded order when
only some are run. Every trial starts from the same initialisation seed, so
trials differ only in their hyperparameters.

A trial's budget is either a step count (deterministic: the same seed gives
the same results) or seconds of training. A time budget counts the training
steps alone, in every trial alike: not compilation, the validation pass at
the end, its sample or the saves (a step budget evaluates four times). Each
trial ends when its steps have taken the budget, whatever a first timing
predicted: a timing of the trial's own step sets its warm-up and a first
plan, then the loop refits the schedule to the budget at every report
(`fit(time_use="budget")`; training/timefit.py), so that the learning rate decays
fully by the end instead of being cut off or ending early.

Trials are ordinary run directories (TRIAL_DIR/trial-NN): plot, compare,
evaluate or sample them like any run. `trials.json` is rewritten after each
trial, so an interrupted search keeps what it finished.
"""

from __future__ import annotations

import math
import numbers
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from charlstm.arguments import real_number, whole_number
from charlstm.config import ModelConfig, TrainConfig, check_seed
from charlstm.core.model import count_params_of_shape
from charlstm.core.state import init_state
from charlstm.errors import CharlstmError, ConfigError
from charlstm.flags import as_options, flag
from charlstm.text.corpus import Source, resolve_corpus_path
from charlstm.text.folder import SEARCH_RECORD
from charlstm.text.saving import save_whole
from charlstm.text.tokens import Corpus, refuse_unfit_validation
from charlstm.training import events, reading, session
from charlstm.training.events import EventHandler, StopCheck, TrialFinished, TrialResult, TrialStarted
from charlstm.training.loop import fit
from charlstm.training.run import (
    RUNS_DIR,
    Run,
    claim_default_dir,
    corpus_name,
    new_run,
    planned_run,
    prepare_run_dir,
    refuse_too_deep,
    refuse_too_large,
)
from charlstm.training.runlog import strict_json
from charlstm.training.search_space import SEARCHED_MODEL_FIELDS, SPACE, grid_trials, parse_dimension, random_trials
from charlstm.training.timefit import FIT_AFTER_STEPS, TimeUse

CALIBRATION_STEPS = 12
# A time budget's first plan is this many times the steps its calibration
# says fit: the loop's refits shorten it (and may lengthen it back up to
# here), so a calibration that timed slow steps cannot end a trial early.
CEILING = 2
# Below this many expected steps the refits would come too late (the first
# at the loop's 20th step, at a report): such a trial is planned at what the
# calibration says fits, and its schedule ends there, as before the refits.
SHORT_TRIAL = 4 * FIT_AFTER_STEPS
# Validation passes per trial with a step budget (for its curves). A time
# budget evaluates only at the end: a pass over the held-out text costs as
# much as many training steps, and the clock would count it.
EVALS_PER_TRIAL = 4
DEFAULT_TRIALS = 8  # random search
DEFAULT_BUDGET_S = 60.0
MAX_BUDGET_S = 30 * 24 * 3600  # a trial longer than a month is a typo (1e300 overflowed its step count)
# Each trial is a run of its own: more is a typo (10**20 drew configurations for minutes, unstoppable).
MAX_TRIALS = 10_000


@dataclass(frozen=True)
class Plan:
    """A search, decided and checked before its first trial."""

    source: Source  # every file to read, as train reads them
    out: Path
    points: list[dict[str, float]]  # each trial's searched values, by config field
    model: dict[str, Any]  # ModelConfig fields every trial shares
    train: dict[str, Any]  # TrainConfig fields every trial shares
    steps: int | None  # the budget per trial: steps, or
    budget_s: float | None  # seconds of training
    keep_all: bool
    settings: dict[str, Any]  # what trials.json records of the search
    note: str = ""  # for the user, about the plan: fewer trials than asked for
    claimed: bool = False  # `out` was made by the plan, under a default name


def plan(
    corpus: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    *,
    glob: str | None = None,
    val_file: str | Path | Sequence[str | Path] | None = None,
    skip_bad_files: bool = False,
    trials: int | None = None,
    grid: bool = False,
    steps: int | None = None,
    budget_s: float | None = None,
    seed: int = 0,
    space: Mapping[str, str] | None = None,
    model: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    keep_all: bool = False,
) -> Plan:
    """Check a search's options and draw its trials. `space` narrows
    dimensions by field ("learning_rate": "1e-3:1e-2", "hidden_size":
    "128,256"); `model` and `train` fix ModelConfig / TrainConfig fields for
    every trial (the trials' seed is `seed`)."""
    if steps is not None and budget_s is not None:
        raise ConfigError(f"give {flag('steps')} or {flag('budget_s')}, not both")
    if steps is None and budget_s is None:
        budget_s = DEFAULT_BUDGET_S
    # Plain numbers from here on (a NumPy one would not go into the search's JSON record).
    steps = None if steps is None else whole_number(steps, flag("steps"))
    budget_s = None if budget_s is None else real_number(budget_s, flag("budget_s"))
    trials = None if trials is None else whole_number(trials, flag("trials"))
    if steps is not None and steps < 1:
        raise ConfigError(f"{flag('steps')} (per trial) must be >= 1, got {steps}")
    if budget_s is not None and not 0 < budget_s <= MAX_BUDGET_S:
        raise ConfigError(
            f"{flag('budget_s')} (seconds per trial) must be positive and at most {MAX_BUDGET_S:,} (30 days), "
            f"got {budget_s:g}"
        )
    if trials is not None and not 1 <= trials <= MAX_TRIALS:
        raise ConfigError(f"{flag('trials')} must be from 1 to {MAX_TRIALS:,}, got {trials:,}")
    seed = whole_number(seed, flag("seed"))
    check_seed(seed)
    narrowed = dict(space or {})
    unknown = sorted(set(narrowed) - {d.field for d in SPACE})
    if unknown:
        raise ConfigError(f"cannot search {', '.join(unknown)}; the space has {', '.join(d.field for d in SPACE)}")
    dims = tuple(parse_dimension(d, narrowed[d.field]) if d.field in narrowed else d for d in SPACE)
    asked = trials if grid else trials or DEFAULT_TRIALS
    points = grid_trials(dims, asked, seed) if grid else random_trials(dims, asked or 0, seed)
    note = ""
    if asked is not None and len(points) < asked:
        holds = "configuration" if len(points) == 1 else "different configurations"
        note = (
            f"the search space holds {len(points)} {holds}, fewer than {flag('trials')} {asked}: "
            f"{'it runs' if len(points) == 1 else 'each runs'} once"
        )
    elif grid and asked is not None and (whole := math.prod(len(set(d.values)) for d in dims)) > len(points):
        note = (
            f"a partial grid: {len(points)} of its {whole:,} configurations, spread by {flag('seed')} "
            f"(leave out {flag('trials')} to run them all)"
        )
    fixed_model, fixed_train = dict(model or {}), {**(train or {}), "seed": seed}
    ModelConfig(vocab_size=1, **fixed_model)  # refuse a bad --cell, --norm or --embed before any trial
    TrainConfig(**fixed_train)
    source = session.source_of(corpus, glob, val_file, skip_bad_files)
    if not source.paths:
        raise ConfigError("give a text file or folder to search on")
    path, _ = resolve_corpus_path(source.paths[0])  # the first file or folder given names the search
    # A trial too large for the memory here, before any trial trains (its vocabulary not known yet: one character).
    for hidden, layers, seq_len in {(p["hidden_size"], p["num_layers"], p["seq_len"]) for p in points}:
        shape = {**fixed_model, "hidden_size": hidden, "num_layers": layers}
        refuse_too_deep(ModelConfig(vocab_size=1, **shape))
        refuse_too_large(ModelConfig(vocab_size=1, **shape), TrainConfig(**{**fixed_train, "seq_len": seq_len}))
    named = f"tune-{corpus_name(path)}-{time.strftime('%Y%m%d-%H%M%S')}"
    directory = Path(out) if out is not None else RUNS_DIR / named
    settings = {
        "corpus": str(path.resolve()),
        "sources": [str(resolve_corpus_path(p)[0].resolve()) for p in source.paths],  # a shipped one where it is
        "glob": source.glob,
        "val_files": [str(Path(p).resolve()) for p in source.val_files],
        "skip_bad_files": source.skip_bad_files,
        "kind": "grid" if grid else "random",
        "trials": len(points),
        "seed": seed,
        "steps": steps,
        "budget_s": budget_s,
        "space": {d.field: list(d.log_range or d.values) for d in dims},
        "range": [d.field for d in dims if d.log_range is not None],
        "fixed": {**fixed_model, **fixed_train},
    }
    if out is None:  # claimed last, as train claims its own: a search started in the same second gets -2
        directory = claim_default_dir(directory)
    return Plan(
        source, directory, points, fixed_model, fixed_train, steps, budget_s, keep_all, settings, note, out is None
    )


@dataclass(frozen=True)
class Search:
    """A finished (or interrupted) search."""

    directory: Path
    planned: int  # trials planned
    trials: list[TrialResult]  # those run, best first
    # The words of a `charlstm train` command line that read the text as the search did.
    reading: tuple[str, ...] = ()

    @property
    def best(self) -> TrialResult | None:
        """The best trial, if any trial reached a validation loss."""
        return self.trials[0] if self.trials and self.trials[0].val_loss is not None else None

    def __repr__(self) -> str:
        # A notebook shows a cell's last value: the dataclass's own repr was every trial's whole configuration.
        best = self.best
        found = "no validation loss yet" if best is None else f"best {Path(best.run_dir).name}, {best.val_loss:.4f}"
        return f"<charlstm.Search {len(self.trials)} of {self.planned} trials, {found}, in {self.directory}>"


def ranked(results: list[TrialResult]) -> list[TrialResult]:
    """Best first; trials without a validation loss last."""
    return sorted(results, key=lambda r: (r.val_loss is None, r.val_loss or 0.0, r.trial))


def _fit_steps(run: Run, budget_s: float) -> int:
    """Steps of this run's training step that fill `budget_s`, timed on a
    throwaway copy of the run (a fresh state, nothing saved or evaluated):
    a first guess, from a few steps, for the trial's warm-up and first plan."""
    trial = replace(run, train_config=replace(run.train_config, steps=10**6, log_every=CALIBRATION_STEPS // 2))
    trial.state = init_state(run.model_config, trial.train_config)
    rates = [
        e.chars_per_sec
        for e in fit(trial, lambda *_: "", lambda: int(trial.state.step) >= CALIBRATION_STEPS, sample=None)
        if isinstance(e, events.Progress)
    ]
    # The first report can include the first call's one-off costs: time the last.
    seconds_per_step = run.train_config.batch_size * run.train_config.seq_len / rates[-1]
    return max(1, int(budget_s / seconds_per_step))


def _trial_config(run: Run, plan: Plan) -> tuple[TrainConfig, int]:
    """A trial's training config and the steps it is expected to take:
    `plan.steps` with four validation passes, or a time budget that it ends
    at (`max_seconds`), validated once at the end, with a warm-up and a
    first plan from a timing of its step."""
    if plan.steps is not None:
        every = max(1, plan.steps // EVALS_PER_TRIAL)
        return replace(run.train_config, steps=plan.steps, eval_every=every, checkpoint_every=plan.steps), plan.steps
    assert plan.budget_s is not None
    expected = _fit_steps(run, plan.budget_s)
    if expected < SHORT_TRIAL:
        config = replace(
            run.train_config,
            steps=expected,
            warmup_steps=replace(run.train_config, steps=expected).warmup_used,
            eval_every=expected,
            checkpoint_every=expected,
            max_seconds=plan.budget_s,
        )
        return config, expected
    ceiling = CEILING * expected
    config = replace(
        run.train_config,
        steps=ceiling,
        # The refits keep the warm-up whole, so they stop at ten times it
        # (timefit.py): that of a run half the expected length, so that a
        # trial whose steps turn out up to twice as slow is still fitted.
        warmup_steps=replace(run.train_config, steps=max(1, expected // 2)).warmup_used,
        eval_every=ceiling,  # the last step, wherever the refits put it
        checkpoint_every=ceiling,
        max_seconds=plan.budget_s,
    )
    return config, expected


def _write_json(path: Path, results: list[TrialResult], settings: dict[str, Any]) -> None:
    records = [{**asdict(r), "bits_per_char": r.bits_per_char} for r in ranked(results)]
    text = strict_json({"search": settings, "trials": records}, indent=1, default=_plain) + "\n"
    save_whole(path, text, intact="the trials' runs are intact")


def _plain(value: Any) -> Any:
    """A NumPy number a caller fixed a field with (`model={"hidden_size":
    np.int64(256)}`), as the plain number JSON takes; the search's own
    numbers are plain already."""
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "item"):  # numpy.bool_ and its kind
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def search(
    plan: Plan,
    on_event: EventHandler = lambda e: None,
    should_stop: StopCheck = lambda: False,
) -> Iterator[TrialResult]:
    """Train one run per trial of `plan` under `plan.out`, yielding each
    result as it ends. Afterwards only the best trial keeps its checkpoints,
    unless `plan.keep_all`."""
    made = plan.claimed or not plan.out.exists()  # an empty folder the user made stays, whatever happens
    results: list[TrialResult] = []
    try:
        text = reading.read(plan.source, on_event)
        refuse_unfit_validation(text, text.charset)
        _refuse_unfit_trials(plan, text)
        prepare_run_dir(plan.out, search=True)
        on_event(events.SearchPlanned(plan.out, len(plan.points), plan.settings["kind"], plan.note))
        yield from _trials(plan, text, results, on_event, should_stop)
    finally:
        # Refused, or stopped by Ctrl-C, before any trial wrote a file (an
        # unusable text, one too short for the batch): nothing to keep.
        if made:
            _remove_if_empty(plan.out)
    if not plan.keep_all and results:
        best = ranked(results)[0]
        for r in results:
            if r is not best and best.val_loss is not None:
                shutil.rmtree(Path(r.run_dir) / "checkpoints", ignore_errors=True)


def _settings(plan: Plan, point: Mapping[str, float]) -> tuple[dict[str, Any], TrainConfig]:
    """A trial's model shape and training config (its steps still to be fitted)."""
    shape = {**plan.model, **{k: v for k, v in point.items() if k in SEARCHED_MODEL_FIELDS}}
    options = {**plan.train, **{k: v for k, v in point.items() if k not in SEARCHED_MODEL_FIELDS}}
    return shape, TrainConfig(**{**options, "steps": plan.steps or 1})


def _refuse_unfit_trials(plan: Plan, text: Corpus) -> None:
    """Every trial's layout on the text, and its size, checked before the
    first trial trains: one that cannot run (its --seq-len too long for a
    short text) would otherwise end the search after the trials before it."""
    for index, point in enumerate(plan.points):
        try:
            planned_run(text, *_settings(plan, point))
        except CharlstmError as err:
            raise ConfigError(f"trial-{index:02d} ({as_options(point)}) cannot run: {err}") from None


def _trials(
    plan: Plan,
    text: Corpus,
    results: list[TrialResult],
    on_event: EventHandler,
    should_stop: StopCheck,
) -> Iterator[TrialResult]:
    """Each trial of `plan` in turn, its result appended to `results`."""
    for index, point in enumerate(plan.points):
        if should_stop():
            break
        run_dir = plan.out / f"trial-{index:02d}"
        run = new_run(text, *_settings(plan, point))
        config, planned = _trial_config(run, plan)
        run = replace(run, train_config=config)  # its state stands: it depends on the seed and batch size alone
        params = count_params_of_shape(run.model_config)
        on_event(TrialStarted(index, len(plan.points), point, planned, params, run_dir.name, plan.budget_s))
        prepare_run_dir(run_dir)
        time_use: TimeUse = "budget" if plan.budget_s is not None else "limit"
        finished = session.train(run, run_dir, on_event, should_stop, time_use=time_use)
        result = TrialResult(
            trial=index,
            run_dir=str(run_dir),
            point=point,
            model=asdict(run.model_config),
            steps=finished.step,
            planned_steps=run.train_config.steps,  # the plan, or where a time limit moved it (training/timefit.py)
            val_loss=finished.best_val_loss,
            train_seconds=finished.step_seconds,
            params=params,
            reason=finished.reason,
            train=asdict(run.train_config),
        )
        results.append(result)
        _write_json(plan.out / SEARCH_RECORD, results, plan.settings)
        on_event(TrialFinished(index, len(plan.points), result))
        yield result


def _remove_if_empty(directory: Path) -> None:
    """Remove `directory` if it holds folders at most, no file."""
    if directory.is_dir() and not any(p.is_file() for p in directory.rglob("*")):
        shutil.rmtree(directory, ignore_errors=True)
