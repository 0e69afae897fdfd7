"""The training state and how it starts: parameters, optimizer, schedule.

Kept apart from the step (which advances it) so that checkpoints (which store
and restore it) depend on it alone.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from charlstm.config import ModelConfig, TrainConfig
from charlstm.core.model import Carry, Params, init_params, zero_carry


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # () int32: optimizer steps taken
    params: Params
    opt_state: optax.OptState
    carry: Carry  # (h, c) each (L, B, H): the streams' state, carried across windows
    # (2,) uint32: the run's key. At step s, stream r's dropout mask in layer l
    # is drawn from fold_in(fold_in(fold_in(rng, s), r), l).
    rng: jax.Array


@flax.struct.dataclass
class Hyperparameters:
    """The numbers of a TrainConfig that the training step reads: the
    learning rate schedule, clipping and weight decay.

    They are arguments of the compiled step, not constants baked into it, so
    runs that differ only in them share one compiled program: every trial of
    a tune, a resume that extends `steps`, and most of the test suite (which
    compiled the step 80 times when these were constants, 2026-12-02).
    What changes the program's shape (the model, the precision, the dropout
    rate) stays static."""

    peak_lr: ArrayLike  # () float32: the learning rate at the end of warm-up
    warmup: ArrayLike  # () int32: steps of linear warm-up from 0
    decay: ArrayLike  # () float32: steps of cosine decay after warm-up, >= 1
    # The next two are products and reciprocals rounded to float32 as XLA
    # folds optax's schedule when its numbers are constants, so the schedule
    # gives optax's bits (tests/test_training.py checks it at every step).
    inv_warmup: ArrayLike  # () float32: 1 / warmup (1 when there is none)
    radians_per_step: ArrayLike  # () float32: float32(pi) * float32(1 / decay), the cosine's pace
    alpha: ArrayLike  # () float32: the final learning rate as a fraction of the peak
    one_minus_alpha: ArrayLike  # () float32: 1 - alpha, computed in float64 as optax does
    grad_clip: ArrayLike  # () float32: the global gradient norm clipped to
    # () float32: decoupled (AdamW), on weight matrices but the embedding (decay_mask); optax scales
    # it by the scheduled learning rate, so it warms up and decays too.
    weight_decay: ArrayLike


def hyperparameters(cfg: TrainConfig) -> Hyperparameters:
    """`cfg`'s schedule, clipping and weight decay as the step takes them (host scalars)."""
    one = np.float32(1)
    warmup = cfg.warmup_used
    decay = np.float32(cfg.steps - warmup)  # >= 1: steps >= 1 and warm-up <= steps // 10
    # optax's warmup_cosine_decay_schedule takes end / peak as its alpha: the
    # same division here gives the same float rounding as optax.
    alpha = cfg.learning_rate * cfg.min_lr_ratio / cfg.learning_rate
    return Hyperparameters(
        peak_lr=np.float32(cfg.learning_rate),
        warmup=np.int32(warmup),
        decay=decay,
        inv_warmup=one / np.float32(max(warmup, 1)),
        radians_per_step=np.float32(np.pi) * (one / decay),
        alpha=np.float32(alpha),
        one_minus_alpha=np.float32(1 - alpha),
        grad_clip=np.float32(cfg.grad_clip),
        weight_decay=np.float32(cfg.weight_decay),
    )


def learning_rate(h: Hyperparameters, count: jax.Array | int) -> jax.Array:
    """The learning rate at optimizer step `count`, the number of updates
    already made: linear warm-up from 0 to the peak, then cosine decay to
    `alpha` of the peak. So with a warm-up the first update is made at 0
    (Adam's moments move, the weights do not; without one, at the peak),
    and the last one just above `alpha` of the peak, which is reached one
    step after the run ends.

    The schedule is rebuilt from the config, so extending a run's `steps` on
    resume stretches the decay over the new total. Bit for bit the numbers
    of optax.warmup_cosine_decay_schedule, compiled with its numbers as
    constants."""
    count, peak = jnp.asarray(count, jnp.int32), jnp.asarray(h.peak_lr)
    warming = -peak * (1 - jnp.clip(count, 0, h.warmup) * h.inv_warmup) + peak
    t = jnp.minimum(count - h.warmup, h.decay)  # steps into the decay, float32
    cosine = 0.5 * (1 + jnp.cos(t * h.radians_per_step))
    decaying = peak * (h.one_minus_alpha * cosine + h.alpha)
    return jnp.where(count < h.warmup, warming, decaying)


def decay_mask(params: Params) -> Any:
    # Weight decay only on weight matrices (1-D biases and layer-norm gains
    # are left alone): decaying biases, the forget bias above all, only
    # hurts, and so does decaying the embedding, whose rows for rare
    # characters get few updates but would shrink at every step.
    return jax.tree_util.tree_map_with_path(
        lambda path, p: p.ndim == 2 and getattr(path[0], "key", None) != "embed", params
    )


def make_optimizer(h: Hyperparameters) -> optax.GradientTransformation:
    """Clipping by global norm, then AdamW on the schedule. `h` may hold
    traced values (inside the step) or host ones; the optimizer's state has
    the same structure either way."""
    return optax.chain(
        optax.clip_by_global_norm(h.grad_clip),
        optax.adamw(
            functools.partial(learning_rate, h),
            b1=0.9,
            b2=0.99,  # not 0.999: see docs/design.md, "The optimizer"
            weight_decay=h.weight_decay,
            mask=decay_mask,
        ),
    )


def init_optimizer(params: Params) -> optax.OptState:
    """The optimizer's state at step 0 for `params`: zeros and a count,
    the same whatever the hyperparameters (so any config's will do)."""
    return make_optimizer(hyperparameters(TrainConfig())).init(params)


def init_state(model_cfg: ModelConfig, train_cfg: TrainConfig) -> TrainState:
    """A fresh state: parameters from `train_cfg.seed`, the optimizer at step 0, zero carries."""
    # The seed wrapped to 32 bits as eager PRNGKey(seed) wraps it without
    # 64-bit integers (core/sampler.py's rows do the same): the same key bits.
    return _init_state(model_cfg, np.int64(train_cfg.seed).astype(np.int32), train_cfg.batch_size)


@functools.lru_cache(maxsize=16)
def state_shapes(model_cfg: ModelConfig, batch_size: int) -> TrainState:
    """`init_state`'s shapes and dtypes (what they depend on: the model and
    the batch size), nothing allocated, traced once for each: listing runs,
    reading checkpoints and checking a search's trials trace each shape once.
    Once, too, because a Ctrl-C that lands inside a trace can leave JAX's
    tracing state behind (seen once in the test suite's interrupted restores
    under load, 2026-12-04: every later JAX call of that process failed),
    which in a notebook or server that keeps running would break it."""
    return jax.eval_shape(lambda: _init_state(model_cfg, np.int32(0), batch_size))


# Compiled as one program: run op by op, initialisation took 3.0-3.5 s of
# every new run's start on the 2-core CPU (2026-12-01), compiled 1.4 s (and
# far less from the compilation cache), with bit-identical results. Keyed
# on what it reads, not the whole TrainConfig, so runs that differ in their
# schedule or intervals share the program (the test suite compiled it 59
# times when it was keyed on the whole config, 2026-12-02), and the seed is
# an argument, so runs of other seeds share it too.
@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_state(model_cfg: ModelConfig, seed: jax.Array, batch_size: int) -> TrainState:
    init_key, rng = jax.random.split(jax.random.PRNGKey(seed))
    params = init_params(model_cfg, init_key)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=init_optimizer(params),
        carry=zero_carry(model_cfg, batch_size),
        rng=rng,
    )
