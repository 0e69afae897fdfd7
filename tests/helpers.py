"""Small runs for tests: tiny models on the tiny corpus, trained in-process."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import jax
import numpy as np

from charlstm.config import TrainConfig
from charlstm.text.corpus import Source
from charlstm.text.tokens import prepare
from charlstm.training import events, session
from charlstm.training.run import Run, new_run
from charlstm.training.timefit import TimeUse

# The plain cell: the tests of everything around the model (checkpoints,
# resuming, the loop, reports) compile about 40% faster with it than with the
# default layer-normalised cell, which has tests of its own (test_model,
# test_recurrence, test_api, test_cli, test_distributed, test_training).
TINY_MODEL = {"hidden_size": 24, "num_layers": 2, "embed_dim": 8, "norm": "none"}


def tiny_train_config(**overrides) -> TrainConfig:
    base = {"steps": 12, "batch_size": 4, "seq_len": 16, "eval_every": 4, "checkpoint_every": 6, "log_every": 1}
    base.update(overrides)
    return TrainConfig(**base)


def new_tiny_run(corpus_path: Path | list[Path], model: dict | None = None, **overrides) -> Run:
    """A tiny model (TINY_MODEL, updated by `model`) and schedule (`overrides`)
    on a text file, a folder, or a list of them."""
    paths = corpus_path if isinstance(corpus_path, list) else [corpus_path]
    corpus = prepare(Source(tuple(str(p) for p in paths)))
    return new_run(corpus, {**TINY_MODEL, **(model or {})}, tiny_train_config(**overrides))


def train(run: Run, run_dir: Path, stop_at: int | None = None, time_use: TimeUse = "limit") -> list[events.Event]:
    """Train as the CLI does (checkpoints, metrics.jsonl, samples) to the
    end, or stop cleanly before step `stop_at`; the events it yielded."""
    should_stop = (lambda: int(run.state.step) >= stop_at) if stop_at is not None else (lambda: False)
    got: list[events.Event] = []
    session.train(run, run_dir, got.append, should_stop, time_use=time_use)
    return got


def losses(evts: list[events.Event]) -> list[tuple[int, float]]:
    return [(e.step, e.loss) for e in evts if isinstance(e, events.Progress)]


def assert_trees_equal(a, b) -> None:
    flat_a, tree_a = jax.tree_util.tree_flatten(a)
    flat_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def perturbed_checkpoint(corpus_path: Path, run_dir: Path, model: dict | None = None, seed: int = 0) -> Path:
    """A run directory holding one checkpoint of a tiny model whose every
    parameter (gains and biases too) is its initial value plus N(0, 0.5^2)
    noise: no training to wait for, and no term of the cell left at a
    neutral value that would hide a mistake in code that re-implements it."""
    import dataclasses

    from charlstm.training.checkpoint import CheckpointWriter

    run = new_tiny_run(corpus_path, model)
    leaves, tree = jax.tree_util.tree_flatten(run.state.params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    noisy = [x + 0.5 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)]
    state = run.state.replace(params=jax.tree_util.tree_unflatten(tree, noisy))
    writer = CheckpointWriter(run_dir)
    try:
        writer.save(dataclasses.replace(run, state=state), best=True)
    finally:
        writer.close()
    return run_dir


# The logger JAX says what it compiled with, from any thread (at DEBUG unless
# jax.log_compiles is on); a program served from the persistent cache is
# logged too.
COMPILE_LOGGER = "jax._src.dispatch"


def compilations(records: list[logging.LogRecord], name: str) -> int:
    """How many times JAX compiled the jitted function `name`, by its log records."""
    return sum(record.getMessage().startswith(f"Finished XLA compilation of jit({name})") for record in records)


class FakeClock:
    """The loop's clock, moved only by what a test says things cost."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def costs(self, monkeypatch, cls: type, method: str, seconds: float | list[float]) -> None:
        """`cls.method`, a generator of events (a validation pass, a save),
        made to take `seconds` of this clock each time it runs (or the
        first of a list the first time, the next the next, the last from
        then on)."""
        original = getattr(cls, method)
        each = list(seconds) if isinstance(seconds, list) else [seconds]

        def costly(*args, **kwargs):
            self.now += each.pop(0) if len(each) > 1 else each[0]
            return (yield from original(*args, **kwargs))

        monkeypatch.setattr(cls, method, costly)


def clock_per_step(monkeypatch, cost: float) -> FakeClock:
    """The training loop's clock as a fake moved only by `cost` seconds a
    training step (compiling, validating and saving take none): timing
    decides nothing in a test that uses it."""
    from charlstm.training import loop, step_setup

    clock, call_step = FakeClock(), step_setup.TrainStep.__call__

    def stepped(self, state, batch):
        clock.now += cost
        return call_step(self, state, batch)

    monkeypatch.setattr(loop, "time", clock)
    monkeypatch.setattr(step_setup.TrainStep, "__call__", stepped)
    return clock


def png_size(path: Path) -> tuple[int, int]:
    """A PNG file's (width, height), read from its header; asserts it is a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])
