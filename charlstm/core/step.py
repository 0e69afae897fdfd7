"""The pure, jitted training step.

`train_step(state, batch, hyper) -> (state, metrics)` does the forward pass,
loss, gradients and the optimizer update on device. The loop around it is
`charlstm/training/loop.py`; `training/step_setup.py`'s `TrainStep` compiles
it and binds a run's `hyper` once. Its metrics stay on the device until the
loop reads them back.

The step is compiled once per model, precision, dropout rate and mesh: the
schedule, clipping and weight decay come in as traced `Hyperparameters`
(core/state.py), so runs that differ only in those share the program.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, PartitionSpec

from charlstm.config import ModelConfig, TrainConfig
from charlstm.core import sharding
from charlstm.core.model import Carry, CharLSTM, Params, forward, row_keys
from charlstm.core.state import Hyperparameters, TrainState, learning_rate, make_optimizer
from charlstm.text.streams import Batch


def _loss(
    model: CharLSTM,
    params: Params,
    inputs: jax.Array,
    targets: jax.Array,
    carry: Carry,
    dropout: float,
    keys: jax.Array,
) -> tuple[jax.Array, Carry]:
    logits, carry = forward(model, params, inputs, carry, dropout, keys)  # (B, T, V)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)  # (B, T)
    return losses.mean(), carry


def make_train_step(model_cfg: ModelConfig, train_cfg: TrainConfig, mesh: Mesh | None = None) -> jax.stages.Wrapped:
    """The jitted `train_step(state, batch, hyper) -> (state, metrics)`, with
    `hyper = hyperparameters(train_cfg)` (core/state.py); the state's buffers
    are donated, so the caller must use the returned state.

    Only `train_cfg`'s precision and dropout shape the program; the same
    function comes back for every config that shares them, so JAX traces
    and compiles it once.

    With a `mesh` the same function runs data-parallel: each device takes its
    share of the streams (batch and carried state split by stream, the rest
    replicated), computes their loss and gradients, and one `pmean` inside
    the step averages them over the devices (see `training/distributed.py`
    for why the mean is taken explicitly)."""
    return _make_train_step(model_cfg, train_cfg.precision, train_cfg.dropout, mesh)


@functools.lru_cache(maxsize=16)  # a tune over many shapes would otherwise keep every program
def _make_train_step(model_cfg: ModelConfig, precision: str, dropout: float, mesh: Mesh | None) -> jax.stages.Wrapped:
    model = CharLSTM(model_cfg, precision)

    def train_step(
        state: TrainState, batch: Batch, hyper: Hyperparameters, axis: str | None = None
    ) -> tuple[TrainState, dict[str, Any]]:
        # Streams that start afresh begin this window from zeros: where a
        # pass wraps around, and every --reset-chars characters, so the model
        # learns to write from the zero state sampling starts in
        # (text/streams.py; not the restarts at document boundaries, which
        # the cells make inside the window).
        carry = jax.tree_util.tree_map(
            lambda x: jnp.where(batch.reset[None, :, None], 0.0, x), state.carry
        )  # (L, B, H)
        params = state.params
        if axis is not None:
            # Gradients with respect to each device's own copy of the
            # parameters stay on the device until the pmean below; through
            # the replicated ones, autodiff would sum the recurrent weights'
            # gradient over the devices at every time step of the scan.
            params = sharding.own_copy(params, axis)
        # Dropout masks are a pure function of the run's key, the step and the
        # stream, so a resumed run draws exactly the masks it would have
        # drawn, on any number of devices.
        rows = batch.inputs.shape[0]  # this device's streams
        first = 0 if axis is None else jax.lax.axis_index(axis) * rows  # the global index of its first
        keys = row_keys(jax.random.fold_in(state.rng, state.step), rows, first)  # (B, 2)
        (loss, carry), grads = jax.value_and_grad(_loss, argnums=1, has_aux=True)(
            model, params, batch.inputs, batch.targets, carry, dropout, keys
        )
        if axis is not None:
            # Every device has the mean over its own, equally many streams:
            # the mean of those is the mean over the global batch.
            loss, grads = jax.lax.pmean((loss, grads), axis)
        updates, opt_state = make_optimizer(hyper).update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)  # before clipping
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            # Per layer (embed, lstm_0, ..., head): vanishing gradients show
            # as the layers far from the loss getting norms far below the head's.
            "layer_grad_norms": {name: optax.tree.norm(g) for name, g in grads.items()},
            "clipped": grad_norm > hyper.grad_clip,
            "lr": learning_rate(hyper, state.step),
            # Checked on the updated parameters: the loss above was computed
            # before the update, and can be finite when the update overflowed;
            # a checkpoint must never hold such parameters.
            "params_finite": jnp.all(jnp.stack([jnp.isfinite(p).all() for p in jax.tree_util.tree_leaves(params)])),
        }
        # Truncated backpropagation through time: the next window receives
        # this carry as an input, not as a function of the parameters, so its
        # gradient stops at the window's start. That, not stop_gradient (which
        # changes nothing out here), is what truncates: it only marks it.
        new_state = dataclasses.replace(
            state,
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            carry=jax.lax.stop_gradient(carry),
        )
        return new_state, metrics

    if mesh is None:
        return jax.jit(train_step, donate_argnums=0)
    # Each device runs train_step on its own rows; the optimizer update then
    # runs replicated, on the same averaged gradients everywhere.
    specs = sharding.state_specs()
    per_device = jax.shard_map(
        functools.partial(train_step, axis=sharding.AXIS),
        mesh=mesh,
        in_specs=(specs, PartitionSpec(sharding.AXIS), PartitionSpec()),
        out_specs=(specs, PartitionSpec()),
    )
    return jax.jit(per_device, donate_argnums=0)
