"""How a training state and a batch are laid out over a one-axis `data` mesh.

The B text streams of a batch are split over the mesh: each device reads, and
carries the recurrent state of, its own B / D streams; parameters, optimizer
state, step and key are replicated. `training/distributed.py` builds the mesh
and places arrays on it; the step (`step.py`) runs under these specs.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from charlstm.core.state import TrainState

AXIS = "data"


def state_specs() -> TrainState:
    """How the train state is laid out, as a prefix of its tree: the carried
    stream state (L, B, H) split by stream like the batch, the rest replicated."""
    # A TrainState holding specs in place of arrays: what shard_map and jit take as a tree prefix.
    return TrainState(step=P(), params=P(), opt_state=P(), carry=P(None, AXIS), rng=P())  # type: ignore[arg-type]


def state_shardings(mesh: Mesh) -> TrainState:
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), state_specs(), is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Inputs, targets (B, T) and resets (B,), split by stream."""
    return NamedSharding(mesh, P(AXIS))


def own_copy(tree: Any, axis: str) -> Any:
    """Inside the sharded step: replicated values as each device's own copy
    (JAX's "varying" values), whose gradients are then per device."""
    if hasattr(jax.lax, "pcast"):
        return jax.lax.pcast(tree, axis, to="varying")
    return jax.lax.pvary(tree, axis)  # type: ignore[attr-defined]  # JAX before 0.8.2
