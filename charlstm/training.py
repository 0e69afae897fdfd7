"""The pure jitted training step, evaluation, and the training loop.

`train_step(state, batch) -> (state, metrics)` is compiled once per run and
does the forward pass, loss, gradients and the optimizer update on device.
The loop around it never prints: it yields events (see `events.py`) that the
caller renders, and reads values back from the device only when it reports
them, so the host does not stall the device on every step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, PartitionSpec

from charlstm import data, distributed, events
from charlstm.config import ModelConfig, SampleConfig, TrainConfig
from charlstm.evaluate import make_scorer
from charlstm.model import Carry, CharLSTM, Params, forward
from charlstm.sample import row_keys, sample_text
from charlstm.state import Run, TrainState, learning_rate_schedule, make_optimizer

# What is shown after each validation pass: the same prime, seed and
# temperature every time, so the samples show the model improving, not luck.
PROGRESS_SAMPLE = SampleConfig(length=200, temperature=0.8, seed=0)


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
    """The jitted `train_step(state, batch) -> (state, metrics)`; the state's
    buffers are donated, so the caller must use the returned state.

    With a `mesh` the same function runs data-parallel: each device takes its
    share of the streams (batch and carried state split by stream, the rest
    replicated), computes their loss and gradients, and one `pmean` inside
    the step averages them over the devices (see `distributed.py` for why
    the mean is taken explicitly)."""
    model = CharLSTM(model_cfg)
    tx = make_optimizer(train_cfg)
    schedule = learning_rate_schedule(train_cfg)

    def train_step(state: TrainState, batch: data.Batch, axis: str | None = None) -> tuple[TrainState, dict[str, Any]]:
        # Streams that start afresh (see data.py) begin this window from zeros.
        carry = jax.tree_util.tree_map(
            lambda x: jnp.where(batch.reset[None, :, None], 0.0, x), state.carry
        )  # (L, B, H)
        params = state.params
        if axis is not None:
            # Gradients with respect to each device's own copy of the
            # parameters stay on the device until the pmean below; through
            # the replicated ones, autodiff would sum the recurrent weights'
            # gradient over the devices at every time step of the scan.
            params = distributed.own_copy(params, axis)
        # Dropout masks are a pure function of the run's key, the step and the
        # stream, so a resumed run draws exactly the masks it would have
        # drawn, on any number of devices.
        rows = batch.inputs.shape[0]  # this device's streams
        first = 0 if axis is None else jax.lax.axis_index(axis) * rows  # the global index of its first
        keys = row_keys(jax.random.fold_in(state.rng, state.step), rows, first)  # (B,)
        (loss, carry), grads = jax.value_and_grad(_loss, argnums=1, has_aux=True)(
            model, params, batch.inputs, batch.targets, carry, train_cfg.dropout, keys
        )
        if axis is not None:
            # Every device has the mean over its own, equally many streams:
            # the mean of those is the mean over the global batch.
            loss, grads = jax.lax.pmean((loss, grads), axis)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)  # before clipping
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            # Per layer (embed, lstm_0, ..., head): vanishing gradients show
            # as the layers far from the loss getting norms far below the head's.
            "layer_grad_norms": {name: optax.tree.norm(g) for name, g in grads.items()},
            "clipped": grad_norm > train_cfg.grad_clip,
            "lr": schedule(state.step),
            # The loss above comes from the parameters before this update; a
            # checkpoint must also never hold parameters that overflowed now.
            "params_finite": jnp.all(jnp.stack([jnp.isfinite(p).all() for p in jax.tree_util.tree_leaves(params)])),
        }
        # The carry is a value, not a parameter: no gradient flows into the
        # next window through it (that is the truncation in truncated BPTT).
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
    specs = distributed.state_specs()
    per_device = jax.shard_map(
        functools.partial(train_step, axis=distributed.AXIS),
        mesh=mesh,
        in_specs=(specs, PartitionSpec(distributed.AXIS)),
        out_specs=(specs, PartitionSpec()),
    )
    return jax.jit(per_device, donate_argnums=0)


def fit(
    run: Run,
    save: Callable[[Run, bool, int], str],
    should_stop: Callable[[], bool] = lambda: False,
    sample: SampleConfig | None = PROGRESS_SAMPLE,
    devices: int | None = None,
) -> Iterator[events.Event]:
    """Train `run` to `train_config.steps`, yielding events as it goes.

    `save(run, best, windows_per_pass)` writes a checkpoint and returns where;
    the loop decides when: every `checkpoint_every` steps, at every new best
    validation loss, and when it stops for any reason (so an interrupted run
    always has a checkpoint to resume from). After each validation pass a
    short `sample` is generated (None: no samples).

    The step runs over the first `devices` local devices (default: all) of
    every process; in a multi-process run every process runs this loop, all
    use the first's validation loss, and only the first samples."""
    tc, mc = run.train_config, run.model_config
    mesh = distributed.make_mesh(tc.batch_size, devices)
    train_streams, val_ids = data.layout(
        run.corpus.text, run.vocab, tc.batch_size, tc.seq_len, tc.val_fraction, tc.reset_chars
    )
    score = make_scorer(mc)
    step = int(run.state.step)
    main, several = distributed.is_main(), jax.process_count() > 1
    yield events.Started(
        step=step,
        total_steps=tc.steps,
        backend=jax.default_backend(),
        devices=[str(d) for d in mesh.devices.flat],
        processes=jax.process_count(),
        train_chars=train_streams.windows * tc.seq_len * tc.batch_size,
        val_chars=len(val_ids) - 1,
        windows_per_pass=train_streams.windows,
    )
    if step >= tc.steps:
        yield events.Finished(step, "done", run.best_val_loss, run.train_seconds)
        return

    t0 = time.perf_counter()
    if mesh.size == 1:
        # One device: the step exactly as it is compiled without a mesh, so
        # that single-device runs keep their losses and speed bit for bit.
        feed: Callable[[int], data.Batch] = train_streams.window
        train_step = make_train_step(mc, tc).lower(run.state, feed(step)).compile()
    else:
        feed = distributed.Feeder(train_streams, mesh)
        run.state = distributed.place_state(run.state, mesh)
        train_step = make_train_step(mc, tc, mesh).lower(run.state, feed(step)).compile()
    yield events.Compiled(seconds=time.perf_counter() - t0)

    session_start = time.perf_counter()
    seconds_before = run.train_seconds
    last_report, last_report_step = session_start, step
    pending: list[dict[str, Any]] = []
    saved_step: int | None = None
    evaluated_step: int | None = None
    healthy = True  # every loss, gradient norm and parameter seen so far is finite

    def clock() -> float:
        run.train_seconds = seconds_before + time.perf_counter() - session_start
        return run.train_seconds

    def report() -> events.Progress:
        nonlocal last_report, last_report_step, healthy
        # Steps are dispatched asynchronously; this is the only per-log sync
        # with the device, so times are taken after it.
        host = jax.device_get(pending)
        pending.clear()
        healthy = all(
            bool(m["params_finite"]) and math.isfinite(float(m["loss"])) and math.isfinite(float(m["grad_norm"]))
            for m in host
        )
        now = time.perf_counter()
        progress = events.Progress(
            step=step,
            total_steps=tc.steps,
            loss=float(np.mean([m["loss"] for m in host])),
            grad_norm=float(host[-1]["grad_norm"]),
            layer_grad_norms={name: float(v) for name, v in host[-1]["layer_grad_norms"].items()},
            clipped_fraction=float(np.mean([m["clipped"] for m in host])),
            lr=float(host[-1]["lr"]),
            chars_per_sec=(step - last_report_step) * tc.batch_size * tc.seq_len / (now - last_report),
            elapsed=clock(),
        )
        last_report, last_report_step = now, step
        return progress

    def validate() -> Iterator[events.Event]:
        nonlocal evaluated_step, healthy
        # Up to batch_size streams: the same layout `charlstm eval` uses by
        # default. Every process scores (so none waits long enough in the next
        # collective to time out) and all decide on process 0's number.
        val_loss = score(distributed.local_copy(run.state.params), val_ids, tc.batch_size).loss
        val_loss = distributed.from_main(val_loss)
        evaluated_step = step
        if not math.isfinite(val_loss):
            healthy = False
            yield events.Evaluated(step, val_loss, best=False)
            return
        is_best = run.best_val_loss is None or val_loss < run.best_val_loss
        if is_best:
            run.best_val_loss = val_loss
        run.history.append({"step": step, "val_loss": val_loss, "train_seconds": clock()})
        yield events.Evaluated(step, val_loss, is_best)
        if is_best:
            yield events.Saved(step, save(run, True, train_streams.windows), best=True)
        if sample is not None and main:
            yield events.Sampled(step, sample_text(mc, distributed.local_copy(run.state.params), run.vocab, sample))

    def checkpoint() -> events.Saved:
        nonlocal saved_step
        saved_step = step
        return events.Saved(step, save(run, False, train_streams.windows), best=False)

    def stop_wanted() -> str | None:
        if should_stop():
            return "interrupted"
        if tc.max_seconds is not None and time.perf_counter() - session_start >= tc.max_seconds:
            return "time limit"
        return None

    reason = "done"
    while step < tc.steps:
        stop = stop_wanted()
        if several:
            # Processes settle a stop together, at report steps only: there
            # the host waits for the device anyway.
            stop = distributed.stop_agreed(stop) if step % tc.log_every == 0 else None
        if stop is not None:
            reason = stop
            break
        run.state, metrics = train_step(run.state, feed(step))
        step += 1
        pending.append(metrics)
        evaluate_now = step % tc.eval_every == 0 or step == tc.steps
        save_now = step % tc.checkpoint_every == 0 or step == tc.steps
        # Every step that evaluates or saves is also a report, so nothing is
        # ever evaluated or written from a state whose loss went non-finite.
        if step % tc.log_every == 0 or evaluate_now or save_now:
            yield report()
            if not healthy:
                reason = "diverged"
                break
        paused = time.perf_counter()
        if evaluate_now:
            yield from validate()
            if not healthy:
                reason = "diverged"
                break
        if save_now:
            yield checkpoint()
        # Evaluation and saving are not training: keep them out of chars/s.
        last_report += time.perf_counter() - paused

    if pending and reason != "diverged":
        yield report()
        if not healthy:
            reason = "diverged"
    if reason == "time limit" and evaluated_step != step:
        yield from validate()
        if not healthy:
            reason = "diverged"
    # A diverged state is never saved: the newest checkpoint stays the last good one.
    if saved_step != step and reason != "diverged":
        yield checkpoint()
    yield events.Finished(step, reason, run.best_val_loss, clock())
