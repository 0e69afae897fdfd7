"""The space `charlstm tune` searches: five dimensions (`SPACE`), each
narrowed from the command line (`parse_dimension`), and the trials drawn
from it, at random (`random_trials`, log-uniform over a range of learning
rates, never the same configuration twice) or as a grid (`grid_trials`,
all combinations, in a seeded order when only some are run).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from charlstm.errors import ConfigError
from charlstm.flags import flag


@dataclass(frozen=True)
class Dimension:
    field: str  # the ModelConfig or TrainConfig field it sets
    values: tuple[float, ...]  # the choices; also the grid
    log_range: tuple[float, float] | None = None  # random search samples this instead of `values`
    integer: bool = True
    allow_zero: bool = False
    below: float | None = None  # values must be less than this


SPACE = (
    Dimension("learning_rate", (2e-3, 5e-3, 1e-2, 2e-2), log_range=(1e-3, 3e-2), integer=False),
    Dimension("hidden_size", (128, 256, 384, 512)),
    Dimension("num_layers", (1, 2, 3)),
    Dimension("seq_len", (32, 64, 128)),
    Dimension("dropout", (0.0, 0.1, 0.2, 0.3), integer=False, allow_zero=True, below=1.0),
)
# The searched fields that belong to ModelConfig (the rest are TrainConfig's).
SEARCHED_MODEL_FIELDS = ("hidden_size", "num_layers")


def parse_dimension(dim: Dimension, spec: str) -> Dimension:
    """`dim` narrowed by a command-line SPEC: "a,b,c" (values) or "lo:hi" (a
    log-uniform range, learning rate only)."""
    where = f"{flag(dim.field)} {spec!r}"
    number = int if dim.integer else float
    try:
        if ":" in spec:
            if dim.field != "learning_rate":
                example = ",".join(f"{v:g}" for v in dim.values[:2])
                raise ConfigError(
                    f"{where}: a range lo:hi is only for {flag('learning_rate')}; list values instead, e.g. {example}"
                )
            try:
                low, high = (float(x) for x in spec.split(":"))
            except ValueError:  # "1e-3:" read as a list of numbers said nothing of ranges (a walkthrough)
                raise ConfigError(f"{where}: a range is two numbers, lo:hi, e.g. 1e-3:3e-2") from None
            if not 0 < low <= high < math.inf:
                raise ConfigError(f"{where}: the range needs 0 < lo <= hi, both finite")
            return replace(dim, values=(low, high), log_range=(low, high))
        values = tuple(number(x) for x in spec.split(","))
    except ValueError:
        kind = "whole numbers" if dim.integer else "numbers"
        raise ConfigError(f"{where}: expected comma-separated {kind}, e.g. {dim.values[0]},{dim.values[1]}") from None
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{where}: values must be finite numbers")
    if any(v < 0 or (v == 0 and not dim.allow_zero) for v in values):
        raise ConfigError(f"{where}: values must be {'>= 0' if dim.allow_zero else '> 0'}")
    if dim.below is not None and any(v >= dim.below for v in values):
        raise ConfigError(f"{where}: values must be < {dim.below:g}")
    # A value given twice ("32,32") would be a trial run twice: each once, in the order given.
    return replace(dim, values=tuple(dict.fromkeys(values)), log_range=None)


def distinct_points(space: tuple[Dimension, ...]) -> float:
    """How many configurations `space` holds (inf with a range of learning rates)."""
    total = 1.0
    for dim in space:
        if dim.log_range is not None and dim.log_range[0] < dim.log_range[1]:
            return math.inf
        total *= len(set(dim.values))
    return total


def random_trials(space: tuple[Dimension, ...], count: int, seed: int) -> list[dict[str, float]]:
    """`count` different configurations drawn from `space`, or every one it
    holds if that is fewer. A draw that repeats one is drawn again, so the
    trials before a repeat are those the seed always gave."""
    rng = np.random.default_rng(seed % 2**32)  # NumPy takes no negative seed; -1 is 2**32 - 1's, as in JAX
    wanted = int(min(count, distinct_points(space)))
    trials: list[dict[str, float]] = []
    # Enough draws to find every configuration of a small space; a range
    # rounded to three figures can hold fewer values than asked for.
    for _ in range(100 * count + 1000):
        if len(trials) == wanted:
            break
        point: dict[str, float] = {}
        for dim in space:
            if dim.log_range is not None:
                low, high = np.log(dim.log_range[0]), np.log(dim.log_range[1])
                point[dim.field] = float(f"{math.exp(rng.uniform(low, high)):.3g}")
            else:
                point[dim.field] = dim.values[int(rng.integers(len(dim.values)))]
        if point not in trials:
            trials.append(point)
    return trials


def grid_trials(space: tuple[Dimension, ...], count: int | None, seed: int) -> list[dict[str, float]]:
    """All combinations; when `count` is smaller, that many in a seeded order
    (so a partial grid still spreads over the space)."""
    ranged = [d.field for d in space if d.log_range is not None and d.values == d.log_range]
    if ranged:
        raise ConfigError(f"{flag('grid')} needs lists of values, not ranges: {flag(ranged[0])} a,b,c")
    points = [
        dict(zip([d.field for d in space], combo, strict=True))
        for combo in itertools.product(*(d.values for d in space))
    ]
    if count is None or count >= len(points):
        return points
    order = np.random.default_rng(seed % 2**32).permutation(len(points))[:count]
    return [points[i] for i in order]
