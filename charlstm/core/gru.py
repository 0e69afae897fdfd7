"""The GRU cell (`--cell gru`), the lighter alternative to the LSTM: two
gates and no cell state. One layer of it over a window with a hand-written
backward pass, built like the LSTM's (`cells.py` says why the backward
pass is written by hand).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from charlstm.core.cells import (
    Recorded,
    Resets,
    dot,
    grad_like,
    recorded,
    restart,
    rows_transposed,
    states_as_read,
)


def gru_gates(
    zx: jax.Array, h_prev: jax.Array, w_h: jax.Array, w_hn: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The GRU's reset gate r, update gate u and candidate n, each (B, H);
    zx (B, 3H) is the input's part of [r | u | n]:

        r = sigmoid(W_xr x + W_hr h_prev + b_r)
        u = sigmoid(W_xu x + W_hu h_prev + b_u)
        n = tanh(W_xn x + W_hn (r * h_prev) + b_n)
        h = (1 - u) * n + u * h_prev

    This is Cho et al.'s (2014) GRU, r applied to h before W_hn; PyTorch's
    nn.GRU (cuDNN's) applies it after, r * (W_hn h_prev + b_hn), so the two
    do not compute the same function. W_hn is a matrix of its own because
    its product needs r first: it cannot join W_h's product for r and u.
    """
    hidden = h_prev.shape[-1]
    ru = jax.nn.sigmoid(zx[:, : 2 * hidden] + dot(h_prev, w_h, w_h.dtype))  # (B, 2H)
    r, u = ru[:, :hidden], ru[:, hidden:]  # (B, H) each
    # The reset gate scales h before it enters the candidate: r near 0 lets
    # the candidate ignore the past.
    n = jnp.tanh(zx[:, 2 * hidden :] + dot(r * h_prev, w_hn, w_hn.dtype))  # (B, H)
    return r, u, n


def gru_update(zx: jax.Array, h_prev: jax.Array, w_h: jax.Array, w_hn: jax.Array) -> jax.Array:
    """The textbook GRU step; zx (B, 3H) is the input's part of [r | u | n]."""
    _, u, n = gru_gates(zx, h_prev, w_h, w_hn)
    return (1.0 - u) * n + u * h_prev


class GRUSaved(NamedTuple):
    """What the forward pass keeps for the backward pass."""

    xs: jax.Array  # (T, B, D)
    w_x: jax.Array  # (D, 3H)
    w_h: jax.Array  # (H, 2H)
    w_hn: jax.Array  # (H, H)
    h0: jax.Array  # (B, H)
    hs: jax.Array  # (T, B, H)
    gates: jax.Array  # (T, B, 3H): [r | u | n] after their nonlinearities
    resets: Resets  # (T, B) bool, or None


def _gru_forward(
    xs: jax.Array, w_x: jax.Array, b: jax.Array, w_h: jax.Array, w_hn: jax.Array, h0: jax.Array, resets: Resets
) -> tuple[tuple[jax.Array, jax.Array], GRUSaved]:
    zx = dot(xs, w_x, w_x.dtype) + b  # (T, B, 3H), hoisted as in the LSTM

    def step(h_prev: jax.Array, at_t: tuple[jax.Array, jax.Array | None]) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        zx_t, restart_t = at_t
        h_prev = restart(h_prev, restart_t)
        r, u, n = gru_gates(zx_t, h_prev, w_h, w_hn)  # (B, H) each
        h = (1.0 - u) * n + u * h_prev
        return h, (h, jnp.concatenate([r, u, n], axis=-1))

    h, (hs, gates) = jax.lax.scan(step, h0, (zx, resets))  # hs (T, B, H); gates (T, B, 3H)
    return (hs, h), GRUSaved(xs, w_x, w_h, w_hn, h0, hs, gates, resets)


def _gru_backward(saved: GRUSaved, grads: tuple[jax.Array, jax.Array]) -> tuple[jax.Array | None, ...]:
    # The same plan as the LSTM's: carry only dh backwards, keep each step's
    # pre-activation gradients, form the weight gradients afterwards.
    xs, w_x, w_h, w_hn, h0, hs, gates, resets = saved
    dhs, dh_last = grads  # (T, B, H), (B, H)
    hidden, dtype = h0.shape[-1], w_h.dtype
    h_prevs = states_as_read(h0, hs, resets)  # (T, B, H): h_{t-1} as step t read it
    # Transposed once, not at every step (the barrier keeps XLA from folding it back in).
    w_h_t = jax.lax.optimization_barrier(w_h.T)  # (2H, H)
    w_hn_t = jax.lax.optimization_barrier(w_hn.T)  # (H, H)

    def step(
        dh_next: jax.Array, at_t: tuple[jax.Array, jax.Array, jax.Array, Resets]
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        dh_t, gates_t, h_prev, restart_t = at_t
        r, u, n = jnp.split(gates_t, 3, axis=-1)  # (B, H) each
        dh = dh_t + dh_next
        dzn = dh * (1.0 - u) * (1.0 - n * n)  # through h = (1-u) n + u h_prev, then tanh' = 1 - n^2
        drh = dot(dzn, w_hn_t, dtype)  # (B, H): the gradient of r * h_prev
        dzr = drh * h_prev * r * (1.0 - r)  # sigmoid' = s (1 - s)
        dzu = dh * (h_prev - n) * u * (1.0 - u)
        dzru = jnp.concatenate([dzr, dzu], axis=-1)  # (B, 2H)
        dh_prev = dh * u + drh * r + dot(dzru, w_h_t, dtype)  # (B, H)
        return restart(dh_prev, restart_t), (dzru, dzn)

    at = (dhs, gates, h_prevs, resets)
    dh0, (dzrus, dzns) = jax.lax.scan(step, dh_last, at, reverse=True)  # (T, B, 2H), (T, B, H)
    dw_h = dot(rows_transposed(h_prevs), dzrus.reshape(-1, 2 * hidden), dtype)  # (H, 2H)
    rh = gates[..., :hidden] * h_prevs  # (T, B, H): r * h_prev, recomputed rather than kept
    dw_hn = dot(rows_transposed(rh), dzns.reshape(-1, hidden), dtype)  # (H, H)
    dzx = jnp.concatenate([dzrus, dzns], axis=-1)  # (T, B, 3H)
    dw_x = dot(rows_transposed(xs), dzx.reshape(-1, 3 * hidden), dtype)  # (D, 3H)
    dxs = dot(dzx, w_x.T, dtype)  # (T, B, D)
    # The bias's gradient, (3H,): dzx summed over T and B.
    return dxs, grad_like(dw_x, w_x), dzx.sum(axis=(0, 1)), grad_like(dw_h, w_h), grad_like(dw_hn, w_hn), dh0, None


@jax.custom_vjp
def gru_layer(
    xs: jax.Array,
    w_x: jax.Array,
    b: jax.Array,
    w_h: jax.Array,
    w_hn: jax.Array,
    h0: jax.Array,
    resets: Resets = None,
) -> tuple[jax.Array, jax.Array]:
    """One GRU layer over a window: xs (T, B, D), w_x (D, 3H), b (3H,),
    w_h (H, 2H), w_hn (H, H), h0 (B, H), resets (T, B) bool or None -> hs
    (T, B, H) and the final h."""
    return _gru_forward(xs, w_x, b, w_h, w_hn, h0, resets)[0]


gru_layer.defvjp(_gru_forward, _gru_backward)


def gru_record(
    xs: jax.Array, w_x: jax.Array, b: jax.Array, w_h: jax.Array, w_hn: jax.Array, h0: jax.Array, resets: Resets
) -> tuple[jax.Array, jax.Array, Recorded]:
    """`gru_layer`'s outputs and its reset gates r, update gates u, candidates n and hidden states h."""
    (hs, h), saved = _gru_forward(xs, w_x, b, w_h, w_hn, h0, resets)
    return hs, h, recorded("gru", saved.gates, h=hs)
