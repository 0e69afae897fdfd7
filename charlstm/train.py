"""The training state, the pure jitted step, evaluation, and the loop.

`train_step(state, batch) -> (state, metrics)` is compiled once per run and
does the forward pass, loss, gradients and the optimizer update on device.
The loop around it never prints: it yields events (see `events.py`) that the
caller renders, and reads values back from the device only when it reports
them, so the host does not stall the device on every step.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from charlstm import data, events
from charlstm.config import ModelConfig, TrainConfig
from charlstm.model import Carry, CharLSTM, Params, forward, init_params, zero_carry
from charlstm.vocab import Vocab


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # () int32: optimizer steps taken
    params: Params
    opt_state: optax.OptState
    carry: Carry  # (h, c) each (L, B, H): the streams' state, carried across windows
    rng: jax.Array  # (2,) uint32: reserved for stochastic training (dropout)


def learning_rate_schedule(cfg: TrainConfig) -> optax.Schedule:
    """Linear warmup, then cosine decay to `min_lr_ratio` of the peak at `steps`.

    The schedule is rebuilt from the config, so extending a run's `steps` on
    resume stretches the decay over the new total."""
    # Short runs (tests, quick tries) would otherwise spend most steps warming up.
    warmup = min(cfg.warmup_steps, cfg.steps // 10)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.learning_rate,
        warmup_steps=warmup,
        decay_steps=cfg.steps,
        end_value=cfg.learning_rate * cfg.min_lr_ratio,
    )


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    # Weight decay only on matrices: decaying biases (the forget bias above
    # all) or the embedding's rows of rare characters only hurts.
    def decay_mask(params: Params) -> Any:
        return jax.tree_util.tree_map(lambda p: p.ndim == 2, params)

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
    init_key, rng = jax.random.split(jax.random.PRNGKey(train_cfg.seed))
    params = init_params(model_cfg, init_key)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=make_optimizer(train_cfg).init(params),
        carry=zero_carry(model_cfg, train_cfg.batch_size),
        rng=rng,
    )


def _loss(
    model: CharLSTM, params: Params, inputs: jax.Array, targets: jax.Array, carry: Carry
) -> tuple[jax.Array, Carry]:
    logits, carry = forward(model, params, inputs, carry)  # (B, T, V)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)  # (B, T)
    return losses.mean(), carry


def make_train_step(model_cfg: ModelConfig, train_cfg: TrainConfig) -> jax.stages.Wrapped:
    """The jitted `train_step(state, batch) -> (state, metrics)`; the state's
    buffers are donated, so the caller must use the returned state."""
    model = CharLSTM(model_cfg)
    tx = make_optimizer(train_cfg)
    schedule = learning_rate_schedule(train_cfg)

    def train_step(state: TrainState, batch: data.Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        # A new pass over the data starts every stream afresh.
        carry = jax.tree_util.tree_map(lambda x: jnp.where(batch.reset, 0.0, x), state.carry)
        (loss, carry), grads = jax.value_and_grad(_loss, argnums=1, has_aux=True)(
            model, state.params, batch.inputs, batch.targets, carry
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),  # before clipping
            "lr": schedule(state.step),
        }
        # The carry is a value, not a parameter: no gradient flows into the
        # next window through it (that is the truncation in truncated BPTT).
        new_state = dataclasses.replace(
            state,
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
            carry=jax.lax.stop_gradient(carry),
        )
        return new_state, metrics

    return jax.jit(train_step, donate_argnums=0)


def make_evaluator(model_cfg: ModelConfig) -> Callable[[Params, data.Streams], float]:
    """Mean loss in nats per character over every window of `streams`, with
    the state carried across windows exactly as in training."""
    model = CharLSTM(model_cfg)

    @jax.jit
    def window_loss(params: Params, inputs: jax.Array, targets: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
        logits, carry = forward(model, params, inputs, carry)  # (B, T, V)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).sum(), carry

    def evaluate(params: Params, streams: data.Streams) -> float:
        first = streams[0]
        carry = zero_carry(model_cfg, first.inputs.shape[0])
        total = jnp.zeros((), jnp.float32)
        for w in range(len(streams)):
            batch = streams[w]
            loss_sum, carry = window_loss(params, batch.inputs, batch.targets, carry)
            total = total + loss_sum
        return float(total) / (len(streams) * first.inputs.size)

    return evaluate


@dataclass
class Run:
    """Everything a training run needs, fresh or restored from a checkpoint."""

    model_config: ModelConfig
    train_config: TrainConfig
    vocab: Vocab
    corpus: data.Corpus
    state: TrainState
    history: list[dict[str, float]] = field(default_factory=list)
    best_val_loss: float | None = None
    train_seconds: float = 0.0  # wall time spent training, over all sessions


def fit(
    run: Run,
    save: Callable[[Run, bool, int], str],
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[events.Event]:
    """Train `run` to `train_config.steps`, yielding events as it goes.

    `save(run, best, windows_per_pass)` writes a checkpoint and returns where; the loop decides
    when (every `checkpoint_every` steps, at every new best validation loss,
    and when it stops for any reason)."""
    tc, mc = run.train_config, run.model_config
    train_streams, val_streams = data.layout(run.corpus.text, run.vocab, tc.batch_size, tc.seq_len, tc.val_fraction)
    evaluate = make_evaluator(mc)
    step = int(run.state.step)
    yield events.Started(
        step=step,
        total_steps=tc.steps,
        backend=jax.default_backend(),
        devices=[str(d) for d in jax.devices()],
        train_chars=train_streams.windows * tc.seq_len * tc.batch_size,
        val_chars=len(val_streams) * val_streams.seq_len * val_streams[0].inputs.shape[0],
        windows_per_pass=train_streams.windows,
    )
    if step >= tc.steps:
        yield events.Finished(step, "done", run.best_val_loss, run.train_seconds)
        return

    t0 = time.perf_counter()
    train_step = make_train_step(mc, tc).lower(run.state, train_streams[step]).compile()
    yield events.Compiled(seconds=time.perf_counter() - t0)

    session_start = time.perf_counter()
    seconds_before = run.train_seconds
    last_report, last_report_step = session_start, step
    pending: list[dict[str, jax.Array]] = []
    reason = "done"
    saved_step = step
    while step < tc.steps:
        if should_stop():
            reason = "interrupted"
            break
        if tc.max_seconds is not None and time.perf_counter() - session_start >= tc.max_seconds:
            reason = "time limit"
            break
        run.state, metrics = train_step(run.state, train_streams[step])
        step += 1
        pending.append(metrics)

        if step % tc.log_every == 0 or step == tc.steps:
            # Steps are dispatched asynchronously; this is the only per-log
            # sync with the device, so times are taken after it.
            host = jax.device_get(pending)
            pending.clear()
            now = time.perf_counter()
            run.train_seconds = seconds_before + now - session_start
            yield events.Progress(
                step=step,
                total_steps=tc.steps,
                loss=float(np.mean([m["loss"] for m in host])),
                grad_norm=float(host[-1]["grad_norm"]),
                lr=float(host[-1]["lr"]),
                chars_per_sec=(step - last_report_step) * tc.batch_size * tc.seq_len / (now - last_report),
                elapsed=run.train_seconds,
            )
            last_report, last_report_step = now, step

        if step % tc.eval_every == 0 or step == tc.steps:
            val_loss = evaluate(run.state.params, val_streams)
            is_best = run.best_val_loss is None or val_loss < run.best_val_loss
            if is_best:
                run.best_val_loss = val_loss
            run.history.append({"step": step, "val_loss": val_loss, "train_seconds": run.train_seconds})
            yield events.Evaluated(step, val_loss, is_best)
            if is_best:
                yield events.Saved(step, save(run, True, train_streams.windows), best=True)
            # Evaluation is not training time: keep it out of chars/s.
            last_report = time.perf_counter()

        if step % tc.checkpoint_every == 0 or step == tc.steps:
            yield events.Saved(step, save(run, False, train_streams.windows), best=False)
            saved_step = step
            last_report = time.perf_counter()

    jax.block_until_ready(run.state)
    run.train_seconds = seconds_before + time.perf_counter() - session_start
    if saved_step != step:
        yield events.Saved(step, save(run, False, train_streams.windows), best=False)
    yield events.Finished(step, reason, run.best_val_loss, run.train_seconds)
