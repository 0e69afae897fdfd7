"""A search of hyperparameters (`tune`): short runs on one budget, ranked."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from charlstm.arguments import check_callbacks, true_or_false, unknown_fields
from charlstm.config import ModelConfig, TrainConfig
from charlstm.errors import ConfigError
from charlstm.runtime.jax_settings import holding
from charlstm.training import tune as tuning
from charlstm.training.events import EventHandler, StopCheck

_MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig))


@holding
def tune(
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
    keep_all: bool = False,
    on_event: EventHandler | None = None,
    should_stop: StopCheck | None = None,
    **fixed: Any,
) -> tuning.Search:
    """A random (or `grid`) search, each trial a short run on the same budget:
    `steps` per trial, or `budget_s` seconds of training (default 60).
    `space` narrows what is searched, by config field ("learning_rate":
    "1e-3:3e-2", "hidden_size": "128,256"; see `training.search_space.SPACE`);
    `fixed` sets other ModelConfig and TrainConfig fields for every trial; a
    searched one given there (hidden_size=128) narrows its dimension to that
    value, and the fields the search sets itself (eval_every and
    checkpoint_every; max_seconds under a time budget) are refused.
    `corpus`, `glob`, `val_file` and `skip_bad_files` name the text as for
    `train`.
    Returns the search's directory and its trials, best first."""
    check_callbacks(on_event, should_stop)
    grid, keep_all = true_or_false(grid, "grid"), true_or_false(keep_all, "keep_all")  # "no" would be true
    unknown = unknown_fields(fixed, ModelConfig, TrainConfig)
    if unknown:
        raise ConfigError(f"unknown training option: {unknown}")
    if space is not None and not isinstance(space, Mapping):
        raise ConfigError(
            f"space must be a dict of fields to values, such as {{'hidden_size': '128,256'}}, got {space!r}"
        )
    space = {name: _values(name, values) for name, values in (space or {}).items()}
    space, fixed = _narrowed(space, fixed)
    if "max_seconds" in fixed and steps is None:  # a time budget sets each trial's limit
        raise ConfigError("max_seconds is set for each trial by the time budget: give budget_s instead")
    model = {k: v for k, v in fixed.items() if k in _MODEL_FIELDS}
    train = {k: v for k, v in fixed.items() if k not in _MODEL_FIELDS}
    plan = tuning.plan(
        corpus,
        out,
        glob=glob,
        val_file=val_file,
        skip_bad_files=skip_bad_files,
        trials=trials,
        grid=grid,
        steps=steps,
        budget_s=budget_s,
        seed=seed,
        space=space,
        model=model,
        train=train,
        keep_all=keep_all,
    )
    results = list(tuning.search(plan, on_event or (lambda e: None), should_stop or (lambda: False)))
    return tuning.Search(plan.out, len(plan.points), tuning.ranked(results), tuple(plan.source.arguments()))


# What the search sets for each trial, by its steps or budget_s: when it validates and saves.
_SET_PER_TRIAL = ("eval_every", "checkpoint_every")


def _values(name: str, values: Any) -> str:
    """A searched field's values as `charlstm tune` takes them ('128,256',
    '1e-3:3e-2'); a list or a number is the choices it names."""
    if isinstance(values, list | tuple) and values and all(_number(v) for v in values):
        return ",".join(f"{v}" for v in values)
    if _number(values):
        return f"{values}"
    if not isinstance(values, str):
        raise ConfigError(
            f"space[{name!r}] must be a text such as '128,256' or '1e-3:3e-2', or a list of values, got {values!r}"
        )
    return values


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _narrowed(space: Mapping[str, str] | None, fixed: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """A fixed value of a searched field (hidden_size=16) is that dimension
    narrowed to it, as `charlstm tune --hidden 16` is: the trials would
    otherwise draw their own and drop it. Fields the search sets for every
    trial are refused."""
    searched = {dim.field for dim in tuning.SPACE}
    narrowed, rest = dict(space or {}), {}
    for name, value in fixed.items():
        if name in _SET_PER_TRIAL:
            raise ConfigError(f"{name} is set for each trial by the search: give steps or budget_s instead")
        if name not in searched:
            rest[name] = value
        elif name in narrowed:
            raise ConfigError(f"{name} is given twice, as {value!r} and in space ({narrowed[name]!r}): give it once")
        else:
            narrowed[name] = f"{value}"
    return narrowed, rest
