"""The layer-normalised LSTM cell (`--norm layer`, the default), and one
layer of it over a window with a hand-written backward pass built like the
plain LSTM's (`cells.py` says why the backward pass is written by hand).

Layer normalisation inside the cell, as in Ba, Kiros and Hinton (2016): the
input's and the state's shares of the gates are normalised separately, each
with its own gain, and so is the cell state before its tanh:

    z = LN(W_x x) * gain_x + LN(W_h h_prev) * gain_h + b
    c = f * c_prev + i * g
    h = o * tanh(LN(c) * gain_c + bias_c)

Each LN of a gates' share runs over all 4H pre-activations together, not
gate by gate, and has a gain but no bias of its own (b plays that part).
The gates i, f, g, o come from z as in the plain LSTM (lstm.py).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from charlstm.core.cells import (
    Recorded,
    Resets,
    State,
    dot,
    grad_like,
    recorded,
    restart,
    rows_transposed,
    states_as_read,
)
from charlstm.core.lstm import lstm_gate_grads, lstm_gates

LNParams = dict[str, jax.Array]  # the names in LN_NAMES
LN_NAMES = ("w_x", "b", "w_h", "gain_x", "gain_h", "gain_c", "bias_c")


# Added to the variance: keeps a constant row (all units equal) finite. The
# exported page and weights (export/) compute with the same value.
EPSILON = 1e-5


def _normalised(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x normalised to zero mean and unit variance over its last axis, and
    1 / the standard deviation it divided by, (..., 1)."""
    mean = x.mean(axis=-1, keepdims=True)
    rstd = jax.lax.rsqrt(jnp.square(x - mean).mean(axis=-1, keepdims=True) + EPSILON)
    return (x - mean) * rstd, rstd


def _normalised_grad(d_out: jax.Array, out: jax.Array, rstd: jax.Array) -> jax.Array:
    """The gradient of x from that of out = _normalised(x)[0], written with
    out: dx = rstd * (d - mean(d) - out * mean(d * out)), means over the last
    axis; exact with EPSILON too, since rstd already holds it."""
    mean_d = d_out.mean(axis=-1, keepdims=True)
    mean_d_out = (d_out * out).mean(axis=-1, keepdims=True)
    return rstd * (d_out - mean_d - out * mean_d_out)


def ln_lstm_input(p: LNParams, xs: jax.Array) -> jax.Array:
    """The input's share of the gates, (..., D) -> (..., 4H), bias included."""
    return _normalised(dot(xs, p["w_x"], p["w_x"].dtype))[0] * p["gain_x"] + p["b"]


def _ln_cell(p: LNParams, zx_t: jax.Array, h_prev: jax.Array, c_prev: jax.Array) -> tuple[jax.Array, ...]:
    """One step: (i, f, g, o, h, c), each (B, H), then what the backward pass
    keeps: LN(h_prev @ W_h) (B, 4H) and its 1/std, LN(c) (B, H) and its 1/std,
    and tanh(LN(c) * gain_c + bias_c) (B, H)."""
    ah, rstd_h = _normalised(dot(h_prev, p["w_h"], p["w_h"].dtype))  # (B, 4H), (B, 1)
    i, f, g, o = lstm_gates(zx_t + ah * p["gain_h"])  # (B, 4H) + (B, 4H) * (4H,)
    c = f * c_prev + i * g
    nc, rstd_c = _normalised(c)  # (B, H), (B, 1)
    tanh_y = jnp.tanh(nc * p["gain_c"] + p["bias_c"])  # (B, H) * (H,) + (H,)
    return i, f, g, o, o * tanh_y, c, ah, rstd_h, nc, rstd_c, tanh_y


def ln_lstm_step(p: LNParams, zx_t: jax.Array, h_prev: jax.Array, c_prev: jax.Array) -> tuple[jax.Array, ...]:
    """One step from the input's share zx_t (B, 4H): (i, f, g, o, h, c), each (B, H);
    with `ln_lstm_input`, a reference step whose scan the tests differentiate
    by autodiff, to check the hand-written backward pass against."""
    return _ln_cell(p, zx_t, h_prev, c_prev)[:6]


class LNLSTMSaved(NamedTuple):
    """What the forward pass keeps for the backward pass: the plain LSTM's
    (lstm.LSTMSaved), and each normalisation's output with its 1/std."""

    xs: jax.Array  # (T, B, D)
    w_x: jax.Array  # (D, 4H)
    w_h: jax.Array  # (H, 4H)
    gain_x: jax.Array  # (4H,)
    gain_h: jax.Array  # (4H,)
    gain_c: jax.Array  # (H,)
    h0: jax.Array  # (B, H)
    c0: jax.Array  # (B, H)
    ax: jax.Array  # (T, B, 4H): LN(xs @ W_x)
    rstd_x: jax.Array  # (T, B, 1)
    hs: jax.Array  # (T, B, H)
    cs: jax.Array  # (T, B, H)
    gates: jax.Array  # (T, B, 4H): [i | f | g | o] after their nonlinearities
    ah: jax.Array  # (T, B, 4H): LN(h_prev @ W_h)
    rstd_h: jax.Array  # (T, B, 1)
    nc: jax.Array  # (T, B, H): LN(c)
    rstd_c: jax.Array  # (T, B, 1)
    tanh_y: jax.Array  # (T, B, H): tanh(LN(c) * gain_c + bias_c)
    resets: Resets  # (T, B) bool, or None


def _ln_lstm_forward(
    xs: jax.Array, resets: Resets, *weights_and_state: jax.Array
) -> tuple[tuple[jax.Array, jax.Array, jax.Array], LNLSTMSaved]:
    p = dict(zip(LN_NAMES, weights_and_state[:-2], strict=True))
    h0, c0 = weights_and_state[-2:]
    ax, rstd_x = _normalised(dot(xs, p["w_x"], p["w_x"].dtype))  # (T, B, 4H), (T, B, 1)

    def step(state: State, at_t: tuple[jax.Array, jax.Array | None]) -> tuple[State, tuple[jax.Array, ...]]:
        zx_t, restart_t = at_t
        i, f, g, o, h, c, *kept = _ln_cell(p, zx_t, *(restart(x, restart_t) for x in state))
        return (h, c), (h, c, jnp.concatenate([i, f, g, o], axis=-1), *kept)

    # ax (T, B, 4H) * gain_x (4H,) + b (4H,): the input's share of the gates, all T steps at once.
    (h, c), kept = jax.lax.scan(step, (h0, c0), (ax * p["gain_x"] + p["b"], resets))  # (T, B, ...) each
    hs, cs, gates, ah, rstd_h, nc, rstd_c, tanh_y = kept
    weights = (p["w_x"], p["w_h"], p["gain_x"], p["gain_h"], p["gain_c"])
    saved = LNLSTMSaved(xs, *weights, h0, c0, ax, rstd_x, hs, cs, gates, ah, rstd_h, nc, rstd_c, tanh_y, resets)
    return (hs, h, c), saved


def _ln_lstm_backward(
    saved: LNLSTMSaved, grads: tuple[jax.Array, jax.Array, jax.Array]
) -> tuple[jax.Array | None, ...]:
    # The LSTM's plan again, with each normalisation's gradient taken where
    # it sits: carry (dh, dc) backwards, keep what the weight gradients need.
    (xs, w_x, w_h, gain_x, gain_h, gain_c, h0, c0, ax, rstd_x) = saved[:10]
    hs, cs, gates, ah, rstd_h, nc, rstd_c, tanh_y, resets = saved[10:]  # (T, B, ...) each, resets (T, B)
    dhs, dh_last, dc_last = grads  # (T, B, H), (B, H), (B, H)
    hidden, dtype = h0.shape[-1], w_h.dtype
    c_prevs = states_as_read(c0, cs, resets)  # (T, B, H)
    w_h_t = jax.lax.optimization_barrier(w_h.T)  # (4H, H)

    def step(carry: State, at_t: tuple[tuple[jax.Array, ...], Resets]) -> tuple[State, tuple[jax.Array, ...]]:
        dh_next, dc_next = carry
        (dh_t, gates_t, c_prev, ah_t, rstd_h_t, nc_t, rstd_c_t, tanh_y_t), restart_t = at_t
        _, f, _, o = jnp.split(gates_t, 4, axis=-1)  # the forget and output gates, (B, H) each
        dh = dh_t + dh_next
        dy = dh * o * (1.0 - tanh_y_t * tanh_y_t)  # through h = o tanh(y), y = LN(c) gain_c + bias_c
        dc = dc_next + _normalised_grad(dy * gain_c, nc_t, rstd_c_t)  # dy (B, H) * gain_c (H,); rstd (B, 1)
        dz = lstm_gate_grads(gates_t, dc, dh * tanh_y_t, c_prev)  # (B, 4H)
        da = _normalised_grad(dz * gain_h, ah_t, rstd_h_t)  # (B, 4H): the gradient of h_prev @ W_h
        return (restart(dot(da, w_h_t, dtype), restart_t), restart(dc * f, restart_t)), (dz, da, dy)

    at = ((dhs, gates, c_prevs, ah, rstd_h, nc, rstd_c, tanh_y), resets)
    (dh0, dc0), (dzs, das, dys) = jax.lax.scan(step, (dh_last, dc_last), at, reverse=True)  # (T, B, 4H|4H|H)
    h_prevs = states_as_read(h0, hs, resets)  # (T, B, H)
    dw_h = dot(rows_transposed(h_prevs), das.reshape(-1, 4 * hidden), dtype)  # (H, 4H)
    dax = _normalised_grad(dzs * gain_x, ax, rstd_x)  # (T, B, 4H): the gradient of xs @ W_x
    dw_x = dot(rows_transposed(xs), dax.reshape(-1, 4 * hidden), dtype)  # (D, 4H)
    dxs = dot(dax, w_x.T, dtype)  # (T, B, D)
    total = lambda x: x.sum(axis=(0, 1))  # noqa: E731  over time and batch
    # gain_x and gain_h (4H,), gain_c and bias_c (H,): sums over the T * B rows.
    gains = (total(dzs * ax), total(dzs * ah), total(dys * nc), total(dys))
    grads_out = (grad_like(dw_x, w_x), total(dzs), grad_like(dw_h, w_h), *gains)
    return (dxs, None, *grads_out, dh0, dc0)


# A custom VJP differentiates positional arrays, so the seven weights travel
# as separate arguments (in LN_NAMES order, then h0 and c0), behind `resets`,
# which has no gradient; `ln_lstm_layer` takes them as one dict.
@jax.custom_vjp
def _ln_lstm(xs: jax.Array, resets: Resets, *weights_and_state: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    return _ln_lstm_forward(xs, resets, *weights_and_state)[0]


_ln_lstm.defvjp(_ln_lstm_forward, _ln_lstm_backward)


def ln_lstm_layer(
    p: LNParams, xs: jax.Array, h0: jax.Array, c0: jax.Array, resets: Resets = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """xs (T, B, D), h0 and c0 (B, H), resets (T, B) bool or None -> hs (T, B, H) and the final h and c."""
    return _ln_lstm(xs, resets, *(p[name] for name in LN_NAMES), h0, c0)


def ln_lstm_record(
    p: LNParams, xs: jax.Array, h0: jax.Array, c0: jax.Array, resets: Resets = None
) -> tuple[jax.Array, jax.Array, jax.Array, Recorded]:
    """`ln_lstm_layer`'s outputs and what `lstm_record` records."""
    (hs, h, c), saved = _ln_lstm_forward(xs, resets, *(p[name] for name in LN_NAMES), h0, c0)
    return hs, h, c, recorded("lstm", saved.gates, c=saved.cs, h=hs)
