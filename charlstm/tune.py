"""Hyperparameter search: random or grid, each trial a real run on one budget.

The search space has five dimensions (see SPACE): the peak learning rate,
the hidden size, the number of layers, the sequence length and the dropout
rate. Each can be
narrowed to a list of values ("128,256") or, for random search, a range
sampled log-uniformly ("1e-3:3e-2"). Random search draws every dimension
independently from `numpy.random.default_rng(seed)`; grid search takes all
combinations of the lists, in a seeded order when only some are run. Every
trial starts from the same initialisation seed, so trials differ only in
their hyperparameters.

A trial's budget is either a step count (deterministic: the same seed gives
the same results) or seconds of training. For a time budget the step count
is fitted first, from a timing of the trial's own training step, so that
the learning-rate schedule warms up and decays within the budget rather
than being cut off half-way; the wall clock still stops a trial that runs
long. The budget is for training steps: compilation and the one validation
pass at the end come on top (a step budget evaluates four times).

Trials are ordinary run directories (TRIAL_DIR/trial-NN): plot, compare,
evaluate or sample them like any run. `trials.json` is rewritten after each
trial, so an interrupted search keeps what it finished.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from charlstm import api, data, events, runs
from charlstm.config import TrainConfig
from charlstm.errors import ConfigError
from charlstm.events import TrialFinished, TrialResult, TrialStarted
from charlstm.model import param_count
from charlstm.state import init_state

# The fraction of a time budget the fitted step count aims at: timing noise
# and the final evaluation take the rest.
BUDGET_FILL = 0.9
CALIBRATION_STEPS = 12
# Validation passes per trial with a step budget (for its curves). A time
# budget evaluates only at the end: a pass over the held-out text costs as
# much as many training steps, and the clock would count it.
EVALS_PER_TRIAL = 4


@dataclass(frozen=True)
class Dimension:
    name: str  # as on the command line (--lr, --hidden, ...)
    field: str  # the ModelConfig or TrainConfig field it sets
    values: tuple[float, ...]  # the choices; also the grid
    log_range: tuple[float, float] | None = None  # random search samples this instead of `values`
    integer: bool = True
    allow_zero: bool = False
    below: float | None = None  # values must be less than this


SPACE = (
    Dimension("lr", "learning_rate", (2e-3, 5e-3, 1e-2, 2e-2), log_range=(1e-3, 3e-2), integer=False),
    Dimension("hidden", "hidden_size", (128, 256, 384, 512)),
    Dimension("layers", "num_layers", (1, 2, 3)),
    Dimension("seq_len", "seq_len", (32, 64, 128)),
    Dimension("dropout", "dropout", (0.0, 0.1, 0.2, 0.3), integer=False, allow_zero=True, below=1.0),
)
MODEL_FIELDS = ("hidden_size", "num_layers")


def parse_dimension(dim: Dimension, spec: str) -> Dimension:
    """`dim` narrowed by a command-line SPEC: "a,b,c" (values) or "lo:hi" (a
    log-uniform range, learning rate only)."""
    where = f"--{dim.name.replace('_', '-')} {spec!r}"
    number = int if dim.integer else float
    try:
        if ":" in spec:
            if dim.integer:
                raise ConfigError(f"{where}: a range lo:hi is only for --lr; list values instead, e.g. 128,256")
            low, high = (float(x) for x in spec.split(":"))
            if not 0 < low <= high:
                raise ConfigError(f"{where}: the range needs 0 < lo <= hi")
            return replace(dim, values=(low, high), log_range=(low, high))
        values = tuple(number(x) for x in spec.split(","))
    except ValueError:
        raise ConfigError(f"{where}: expected comma-separated numbers, e.g. {dim.values[0]},{dim.values[1]}") from None
    if any(v < 0 or (v == 0 and not dim.allow_zero) for v in values):
        raise ConfigError(f"{where}: values must be {'>= 0' if dim.allow_zero else '> 0'}")
    if dim.below is not None and any(v >= dim.below for v in values):
        raise ConfigError(f"{where}: values must be < {dim.below:g}")
    return replace(dim, values=values, log_range=None)


def random_trials(space: tuple[Dimension, ...], count: int, seed: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(count):
        point: dict[str, float] = {}
        for dim in space:
            if dim.log_range is not None:
                low, high = np.log(dim.log_range[0]), np.log(dim.log_range[1])
                point[dim.field] = float(f"{math.exp(rng.uniform(low, high)):.3g}")
            else:
                point[dim.field] = dim.values[int(rng.integers(len(dim.values)))]
        trials.append(point)
    return trials


def grid_trials(space: tuple[Dimension, ...], count: int | None, seed: int) -> list[dict[str, float]]:
    """All combinations; when `count` is smaller, that many in a seeded order
    (so a partial grid still spreads over the space)."""
    ranged = [d.name for d in space if d.log_range is not None and d.values == d.log_range]
    if ranged:
        raise ConfigError(f"--grid needs lists of values, not ranges: --{ranged[0]} a,b,c")
    points = [
        dict(zip([d.field for d in space], combo, strict=True))
        for combo in itertools.product(*(d.values for d in space))
    ]
    if count is None or count >= len(points):
        return points
    order = np.random.default_rng(seed).permutation(len(points))[:count]
    return [points[i] for i in order]


def ranked(results: list[TrialResult]) -> list[TrialResult]:
    """Best first; trials without a validation loss last."""
    return sorted(results, key=lambda r: (r.val_loss is None, r.val_loss or 0.0, r.trial))


def _fit_steps(run: runs.Run, budget_s: float) -> int:
    """Steps of this run's training step that fill `budget_s`, timed on a
    throwaway copy of the run (a fresh state, nothing saved or evaluated)."""
    from charlstm.training import fit  # the loop imports JAX: only when a search runs

    trial = replace(run, train_config=replace(run.train_config, steps=10**6, log_every=CALIBRATION_STEPS // 2))
    trial.state = init_state(run.model_config, trial.train_config)
    rates = [
        e.chars_per_sec
        for e in fit(trial, lambda *_: "", lambda: int(trial.state.step) >= CALIBRATION_STEPS, sample=None)
        if isinstance(e, events.Progress)
    ]
    # The first report can include the first call's one-off costs: time the last.
    seconds_per_step = run.train_config.batch_size * run.train_config.seq_len / rates[-1]
    return max(1, int(BUDGET_FILL * budget_s / seconds_per_step))


def _write_json(path: Path, results: list[TrialResult], settings: dict[str, Any]) -> None:
    records = [{**asdict(r), "bits_per_char": r.bits_per_char} for r in ranked(results)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"search": settings, "trials": records}, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def search(
    corpus: Path,
    out: Path,
    points: list[dict[str, float]],
    model: dict[str, Any],
    train: dict[str, Any],
    *,
    steps: int | None = None,
    budget_s: float | None = None,
    keep_all: bool = False,
    settings: dict[str, Any] | None = None,
    on_event: Callable[[Any], None] = lambda e: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[TrialResult]:
    """Train one run per point under `out`, yielding each result as it ends.

    `model` and `train` hold the fixed ModelConfig / TrainConfig fields; a
    point's values override them. Exactly one of `steps` and `budget_s`.
    Afterwards only the best trial keeps its checkpoints, unless `keep_all`."""
    if (steps is None) == (budget_s is None):
        raise ConfigError("give a budget per trial: either steps or seconds, not both")
    runs.prepare_run_dir(out)
    text = data.read_corpus(corpus.resolve())
    results: list[TrialResult] = []
    for index, point in enumerate(points):
        if should_stop():
            break
        shape = {**model, **{k: v for k, v in point.items() if k in MODEL_FIELDS}}
        options = {**train, **{k: v for k, v in point.items() if k not in MODEL_FIELDS}}
        run_dir = out / f"trial-{index:02d}"
        run = runs.new_run(text, shape, TrainConfig(**{**options, "steps": steps or 1}))
        planned = steps if steps is not None else _fit_steps(run, budget_s or 0.0)
        every = max(1, planned // EVALS_PER_TRIAL) if budget_s is None else planned
        config = replace(
            run.train_config,
            steps=planned,
            eval_every=every,
            checkpoint_every=planned,
            max_seconds=None if budget_s is None else 1.25 * budget_s,
        )
        run = replace(run, train_config=config)
        run.state = init_state(run.model_config, config)
        on_event(TrialStarted(index, len(points), point, planned, param_count(run.model_config)))
        runs.prepare_run_dir(run_dir)
        finished = api.run_session(run, run_dir, on_event, should_stop)
        result = TrialResult(
            trial=index,
            run_dir=str(run_dir),
            point=point,
            model=asdict(run.model_config),
            steps=finished.step,
            planned_steps=planned,
            val_loss=finished.best_val_loss,
            train_seconds=finished.train_seconds,
            params=param_count(run.model_config),
            reason=finished.reason,
            train=asdict(config),
        )
        results.append(result)
        _write_json(out / "trials.json", results, settings or {})
        on_event(TrialFinished(index, len(points), result))
        yield result
    if not keep_all and results:
        best = ranked(results)[0]
        for r in results:
            if r is not best and best.val_loss is not None:
                shutil.rmtree(Path(r.run_dir) / "checkpoints", ignore_errors=True)
