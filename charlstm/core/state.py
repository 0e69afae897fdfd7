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
import optax

from charlstm.config import ModelConfig, TrainConfig
from charlstm.core.model import Carry, Params, init_params, zero_carry


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # () int32: optimizer steps taken
    params: Params
    opt_state: optax.OptState
    carry: Carry  # (h, c) each (L, B, H): the streams' state, carried across windows
    rng: jax.Array  # (2,) uint32: the run's key; step s, stream r draw dropout masks from fold_in(fold_in(rng, s), r)


def warmup_steps(cfg: TrainConfig) -> int:
    # Short runs (tests, quick tries) would otherwise spend most steps warming up.
    return min(cfg.warmup_steps, cfg.steps // 10)


def learning_rate_schedule(cfg: TrainConfig) -> optax.Schedule:
    """Linear warmup, then cosine decay to `min_lr_ratio` of the peak at `steps`.

    The schedule is rebuilt from the config, so extending a run's `steps` on
    resume stretches the decay over the new total."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.learning_rate,
        warmup_steps=warmup_steps(cfg),
        decay_steps=cfg.steps,
        end_value=cfg.learning_rate * cfg.min_lr_ratio,
    )


def decay_mask(params: Params) -> Any:
    # Weight decay only on weight matrices: decaying biases (the forget bias
    # above all) or the embedding's rows of rare characters only hurts.
    return jax.tree_util.tree_map_with_path(
        lambda path, p: p.ndim == 2 and getattr(path[0], "key", None) != "embed", params
    )


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),
        optax.adamw(
            learning_rate_schedule(cfg),
            b1=0.9,
            b2=0.99,
            weight_decay=cfg.weight_decay,
            mask=decay_mask,
        ),
    )


def init_state(model_cfg: ModelConfig, train_cfg: TrainConfig) -> TrainState:
    """A fresh state: parameters from `train_cfg.seed`, the optimizer at step 0, zero carries."""
    return _init_state(model_cfg, train_cfg.seed, train_cfg.batch_size)


# Compiled as one program: run op by op, initialisation took 3.0-3.5 s of
# every new run's start on the 2-core CPU (2026-12-01), compiled 1.4 s (and
# far less from the compilation cache), with bit-identical results. Keyed
# on what it reads, not the whole TrainConfig, so runs that differ in their
# schedule or intervals share the program (the test suite compiled it 59
# times when it was keyed on the whole config, 2026-12-02).
@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _init_state(model_cfg: ModelConfig, seed: int, batch_size: int) -> TrainState:
    init_key, rng = jax.random.split(jax.random.PRNGKey(seed))
    params = init_params(model_cfg, init_key)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        # Zeros and a count whatever the hyperparameters: the default config's
        # optimizer has the same state as any other's.
        opt_state=make_optimizer(TrainConfig()).init(params),
        carry=zero_carry(model_cfg, batch_size),
        rng=rng,
    )
