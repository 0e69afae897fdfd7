"""What a session of training works with, decided once before its first
step (`Setup`: the device mesh, the training streams, the held-out ids and
how a step's batch is fed), and the training step compiled for it once
(`TrainStep`). `loop.py` keeps what changes while it trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
from jax.sharding import Mesh

from charlstm.config import ModelConfig, TrainConfig
from charlstm.core.state import TrainState, hyperparameters
from charlstm.core.step import make_train_step
from charlstm.runtime import hostmem
from charlstm.text import streams
from charlstm.training import distributed
from charlstm.training.run import Run


@dataclass(frozen=True)
class Setup:
    """What a session trains with, fixed before its first step."""

    mesh: Mesh
    train_streams: streams.Streams
    val_ids: streams.Segments  # (N,) the held-out ids, scored whole at each validation pass
    feed: Callable[[int], streams.Batch]  # step -> the batch it reads
    devices_before: int | None = None  # what the run's checkpoint recorded (None: a new run)


def setup_for(run: Run, devices: int | None) -> Setup:
    """`run`'s setup over its first `devices` local devices (default: all).
    It changes `run` too: the device count its checkpoints record, and its
    state, placed on the mesh where there is more than one device."""
    tc = run.train_config
    before = run.devices
    mesh = distributed.make_mesh(tc.batch_size, devices, before=before)
    run.devices = mesh.size  # what its checkpoints record
    layout = run.layout()
    train_streams, val_ids = layout.train, layout.val
    if mesh.size == 1:
        # One device: the step exactly as it is compiled without a mesh, so
        # that single-device runs keep their losses and speed bit for bit.
        return Setup(mesh, train_streams, val_ids, train_streams.window, before)
    run.state = distributed.place_state(run.state, mesh)
    return Setup(mesh, train_streams, val_ids, distributed.Feeder(train_streams, mesh), before)


class TrainStep:
    """The step compiled for a run, with the hyperparameters it runs under
    (on the device, not copied from the host at every step). They are
    arguments of the program, so changing them (`retime`) compiles nothing.
    The benchmarks time this same object (benchmarks/step_speed.py)."""

    def __init__(
        self, model_config: ModelConfig, train_config: TrainConfig, state: TrainState, batch: streams.Batch, mesh: Mesh
    ):
        # One device: the step exactly as it is compiled without a mesh.
        self._mesh = None if mesh.size == 1 else mesh
        self.retime(train_config)
        step = make_train_step(model_config, train_config, self._mesh)
        self.compiled = step.lower(state, batch, self._hyper).compile()
        hostmem.return_freed()  # the compiler's scratch, which training would not reuse

    @classmethod
    def for_run(cls, run: Run, setup: Setup) -> TrainStep:
        """`run`'s step, compiled for its setup's devices and first batch."""
        return cls(run.model_config, run.train_config, run.state, setup.feed(int(run.state.step)), setup.mesh)

    def retime(self, config: TrainConfig) -> None:
        hyper = hyperparameters(config)
        self._hyper = jax.device_put(hyper) if self._mesh is None else distributed.replicate(hyper, self._mesh)

    def __call__(self, state: TrainState, batch: streams.Batch) -> tuple[TrainState, dict[str, Any]]:
        return self.compiled(state, batch, self._hyper)
