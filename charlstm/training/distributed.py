"""Where training runs: the devices it is split over, as one mesh across every process.

Training is data-parallel with JAX's own machinery, nothing hand-written.
The B text streams of a batch are split over a one-axis `data` mesh: each
device reads, and carries the LSTM state of, its own B / D streams and
computes their loss and gradients under `shard_map`; one `pmean` (an
all-reduce that XLA runs inside the jitted step) averages the gradients, and
the replicated parameters and optimizer state are updated alike everywhere.
The gradients are taken with respect to each device's own copy of the
parameters: differentiated through the replicated ones, or left to XLA's
sharding propagation, the recurrent weights' gradient was all-reduced inside
the backward scan, once per character (256 all-reduces a step for 2 layers x
128 characters, milliseconds each between processes) instead of once after
it. On one device the step is jitted plainly, as it always was: a one-device
shard_map still routes the gradients through a trivial all-reduce, which
changes how XLA fuses the update.

The processes themselves (joining, leaving, agreeing) are `training/processes.py`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from charlstm.arguments import whole_number
from charlstm.core.sharding import AXIS, batch_sharding, state_shardings
from charlstm.core.state import TrainState
from charlstm.errors import ConfigError
from charlstm.flags import flag
from charlstm.text.streams import Batch, Streams


def make_mesh(batch_size: int, devices: int | None = None, before: int | None = None) -> Mesh:
    """A one-axis `data` mesh over the first `devices` local devices of every
    process, checked against the global batch. By default all of them; on a
    CPU, whose devices are its cores shared out (`runtime/cpu_devices.py`),
    the layout a resumed run trained on (`before` devices in all) where it
    fits, so that it continues bit for bit, else the most devices the batch
    splits evenly over."""
    local = jax.local_device_count()
    if devices is not None:
        devices = whole_number(devices, flag("devices"))
        if devices < 1:
            raise ConfigError(f"{flag('devices')} must be >= 1, got {devices}")
    if devices is not None and devices > local:
        # The command line makes devices of a CPU itself; a Python caller does so with split_the_cpu.
        split = "; or, before JAX starts, charlstm.split_the_cpu(N)" if jax.default_backend() == "cpu" else ""
        raise ConfigError(
            f"{flag('devices')} {devices}: this process has {local} {jax.default_backend()} device"
            f"{'s' if local != 1 else ''}; pick 1 to {local}{split}"
        )
    per_process: dict[int, list[Any]] = {}
    for device in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
        per_process.setdefault(device.process_index, []).append(device)
    if devices is None and jax.default_backend() == "cpu":
        fits = [n for n in range(1, local + 1) if batch_size % (n * len(per_process)) == 0]
        kept = before // len(per_process) if before is not None and before % len(per_process) == 0 else None
        devices = kept if kept in fits else max(fits, default=1)  # none: check_batch says what would
    check_batch(batch_size, devices or local, len(per_process), local, resumed=before is not None)
    # Ordered by process, so that each process's streams are one contiguous block of rows.
    chosen = [d for p in sorted(per_process) for d in per_process[p][: devices or local]]
    return Mesh(np.array(chosen), (AXIS,))


def check_batch(
    batch_size: int, per_process: int, processes: int = 1, available: int | None = None, resumed: bool = False
) -> None:
    """Every device must get the same number of streams; when they cannot,
    say which batch sizes (and device counts) would work: only device
    counts for a `resumed` run, which keeps its batch size."""
    total = per_process * processes
    if batch_size % total == 0:
        return
    counts = [n for n in range(1, (available or per_process) + 1) if batch_size % (n * processes) == 0]
    devices = f"{flag('devices')} {' or '.join(map(str, counts))}{' per process' if processes > 1 else ''}"
    over = f"{total} devices" + (f" ({processes} processes x {per_process})" if processes > 1 else "")
    if resumed:
        raise ConfigError(
            f"this run's {flag('batch_size')} {batch_size}, which a resumed run keeps, does not split evenly over "
            f"{over}" + (f"; pick {devices}" if counts else "")
        )
    below, above = batch_size // total * total, (batch_size // total + 1) * total
    sizes = f"{below} or {above}" if below else str(above)
    keep = f"; or keep it with {devices}" if counts else ""
    raise ConfigError(
        f"{flag('batch_size')} {batch_size} does not split evenly over {over}: "
        f"use a multiple of {total}, such as {sizes}{keep}"
    )


def place_state(state: TrainState, mesh: Mesh) -> TrainState:
    """A state held whole by every process (fresh, or restored from a
    checkpoint) -> global arrays laid out over `mesh`."""
    return _place(state, jax.tree.broadcast(state_shardings(mesh), state))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Values every process holds alike (the step's hyperparameters) -> global
    arrays replicated over `mesh`."""
    return _place(tree, jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()), tree))


def _place(tree: Any, shardings: Any) -> Any:
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)

    def to_global(x: jax.Array, sharding: NamedSharding) -> jax.Array:
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(to_global, tree, shardings)


def local_copy(tree: Any) -> Any:
    """This process's copy of replicated global arrays, on one of its
    devices: what scoring and sampling (single-device programs) take."""
    return jax.tree.map(lambda x: x.addressable_data(0), tree)


class Feeder:
    """Training batches as global arrays, each process reading only its own
    streams from its own copy of the text."""

    def __init__(self, streams: Streams, mesh: Mesh):
        self.streams = streams
        self.sharding = batch_sharding(mesh)
        spans = sorted(
            (index[0].start or 0, index[0].stop or streams.batch)
            for index in self.sharding.addressable_devices_indices_map((streams.batch,)).values()
            if index is not None
        )
        self.rows = slice(spans[0][0], spans[-1][1])  # contiguous: the mesh is ordered by process
        self._single = jax.process_count() == 1

    def __call__(self, step: int) -> Batch:
        batch = self.streams.window(step, self.rows)
        if self._single:
            return jax.device_put(batch, self.sharding)
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(self.sharding, x, (self.streams.batch, *x.shape[1:])),
            batch,
        )
