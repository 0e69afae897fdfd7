"""The textbook LSTM cell, and one LSTM layer over a window with a
hand-written backward pass (`cells.py` says why).

    i = sigmoid(W_xi x + W_hi h_prev + b_i)     input gate
    f = sigmoid(W_xf x + W_hf h_prev + b_f)     forget gate
    g = tanh(W_xg x + W_hg h_prev + b_g)        candidate
    o = sigmoid(W_xo x + W_ho h_prev + b_o)     output gate
    c = f * c_prev + i * g
    h = o * tanh(c)

The four gates' pre-activations z (B, 4H) are computed together, laid out
[i | f | g | o]. The forward pass keeps the gates after their
nonlinearities and the cell states; the backward pass writes each
nonlinearity's derivative with its output (sigmoid' = s (1 - s), tanh' =
1 - t^2), so the pre-activations need not be kept. The layer-normalised
LSTM (ln_lstm.py) reuses the gates and their gradients.
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


def lstm_gates(z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(i, f, g, o), each (B, H): the input and forget gates, the candidate
    and the output gate, from their pre-activations z (B, 4H), laid out as
    [input i | forget f | candidate g | output o]; each block is
    W_x x_t + W_h h_{t-1} + b for that gate.
    """
    i, f, g, o = jnp.split(z, 4, axis=-1)  # each (B, H)
    return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)


def lstm_gates_at_once(z: jax.Array) -> jax.Array:
    """`lstm_gates` as one (B, 4H) array [i | f | g | o], computed by one
    elementwise operation: both nonlinearities over all 4H columns, the
    candidate's tanh kept in its block and the sigmoid elsewhere: bit for
    bit `lstm_gates`'s values with XLA's default CPU emitters (with the
    older ones the tests compile with, set in tests/conftest.py, a few saturated values differ by up
    to 3 units in the last place). XLA's CPU backend otherwise runs four
    operations and a concatenation at every character, each a hand-off to
    its thread pool, and the plain cell's training step is about 4% faster
    this way (2026-12-02; docs/benchmarks.md). The layer-normalised cell,
    measured the same way, gained nothing, and keeps `lstm_gates`."""
    n = z.shape[-1] // 4
    candidate = jnp.arange(4 * n) // n == 2  # (4H,): the g block
    return jnp.where(candidate, jnp.tanh(z), jax.nn.sigmoid(z))


def lstm_update(z: jax.Array, c_prev: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The textbook cell, given the pre-activations z (B, 4H) of all four
    gates. A one-character window takes it (every sampling step); a longer
    window's loop (`_lstm_forward`) writes the same two lines after
    `lstm_gates_at_once`, the same gates fused for speed."""
    i, f, g, o = lstm_gates(z)
    c = f * c_prev + i * g
    h = o * jnp.tanh(c)
    return h, c


class LSTMSaved(NamedTuple):
    """What the forward pass keeps for the backward pass: the gates after
    their nonlinearities and the cell states, not the pre-activations."""

    xs: jax.Array  # (T, B, D)
    w_x: jax.Array  # (D, 4H)
    w_h: jax.Array  # (H, 4H)
    h0: jax.Array  # (B, H)
    c0: jax.Array  # (B, H)
    hs: jax.Array  # (T, B, H)
    cs: jax.Array  # (T, B, H)
    gates: jax.Array  # (T, B, 4H): [i | f | g | o] after their nonlinearities
    resets: Resets  # (T, B) bool, or None


def _lstm_forward(
    xs: jax.Array, w_x: jax.Array, b: jax.Array, w_h: jax.Array, h0: jax.Array, c0: jax.Array, resets: Resets
) -> tuple[tuple[jax.Array, jax.Array, jax.Array], LSTMSaved]:
    # The input's share of the gates does not depend on h: one large product
    # for all T steps; only (B, H) x (H, 4H) stays inside the loop.
    zx = dot(xs, w_x, w_x.dtype) + b  # (T, B, 4H)

    def step(state: State, at_t: tuple[jax.Array, jax.Array | None]) -> tuple[State, tuple[jax.Array, ...]]:
        zx_t, restart_t = at_t
        h_prev, c_prev = (restart(x, restart_t) for x in state)  # (B, H) each
        gates = lstm_gates_at_once(zx_t + dot(h_prev, w_h, w_h.dtype))  # (B, 4H)
        i, f, g, o = jnp.split(gates, 4, axis=-1)  # (B, H) each
        c = f * c_prev + i * g
        h = o * jnp.tanh(c)
        return (h, c), (h, c, gates)

    (h, c), (hs, cs, gates) = jax.lax.scan(step, (h0, c0), (zx, resets))  # hs, cs (T, B, H); gates (T, B, 4H)
    return (hs, h, c), LSTMSaved(xs, w_x, w_h, h0, c0, hs, cs, gates, resets)


def lstm_gate_grads(gates: jax.Array, dc: jax.Array, do: jax.Array, c_prev: jax.Array) -> jax.Array:
    """The gradient of the gates' pre-activations z (B, 4H), from the kept
    gates (B, 4H, after their nonlinearities) and the gradients of c and o."""
    i, f, g, o = jnp.split(gates, 4, axis=-1)  # (B, H) each
    di, df, dg = dc * g, dc * c_prev, dc * i
    # The derivative of each gate's nonlinearity, written with its output:
    # sigmoid' = s (1 - s), tanh' = 1 - t^2.
    return jnp.concatenate([di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g * g), do * o * (1.0 - o)], axis=-1)


def _lstm_backward(saved: LSTMSaved, grads: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array | None, ...]:
    xs, w_x, w_h, h0, c0, hs, cs, gates, resets = saved
    dhs, dh_last, dc_last = grads  # (T, B, H), (B, H), (B, H)
    hidden, dtype = h0.shape[-1], w_h.dtype
    # c_{t-1} is the kept c shifted by one step, not an array of its own: one
    # (T, B, H) array fewer kept from the forward pass.
    c_prev = states_as_read(c0, cs, resets)  # (T, B, H): c_{t-1} as step t read it
    w_h_t = jax.lax.optimization_barrier(w_h.T)  # (4H, H), transposed once rather than at each step

    def step(carry: State, at_t: tuple[jax.Array, jax.Array, jax.Array, jax.Array, Resets]) -> tuple[State, jax.Array]:
        dh_next, dc_next = carry  # from step t+1, (B, H) each
        dh_t, gates_t, c_t, c_prev_t, restart_t = at_t
        _, f, _, o = jnp.split(gates_t, 4, axis=-1)  # the forget and output gates, (B, H) each
        dh = dh_t + dh_next
        tanh_c = jnp.tanh(c_t)
        dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)
        dz = lstm_gate_grads(gates_t, dc, dh * tanh_c, c_prev_t)  # (B, 4H)
        # A stream that restarted here read zeros: nothing flows into the state before.
        return (restart(dot(dz, w_h_t, dtype), restart_t), restart(dc * f, restart_t)), dz

    at = (dhs, gates, cs, c_prev, resets)
    (dh0, dc0), dzs = jax.lax.scan(step, (dh_last, dc_last), at, reverse=True)  # dzs (T, B, 4H)
    h_prev = states_as_read(h0, hs, resets)  # (T, B, H): h_{t-1} as step t read it
    dz_rows = dzs.reshape(-1, 4 * hidden)  # (T*B, 4H)
    dw_h = dot(rows_transposed(h_prev), dz_rows, dtype)  # (H, 4H), one product over all T*B rows
    dw_x = dot(rows_transposed(xs), dz_rows, dtype)  # (D, 4H)
    dxs = dot(dzs, w_x.T, dtype)  # (T, B, D)
    # One gradient per argument of lstm_layer (b's, (4H,), sums dz over T and B);
    # `resets`, booleans, has none.
    return dxs, grad_like(dw_x, w_x), dzs.sum(axis=(0, 1)), grad_like(dw_h, w_h), dh0, dc0, None


@jax.custom_vjp
def lstm_layer(
    xs: jax.Array, w_x: jax.Array, b: jax.Array, w_h: jax.Array, h0: jax.Array, c0: jax.Array, resets: Resets = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One LSTM layer over a window: xs (T, B, D), w_x (D, 4H), b (4H,),
    w_h (H, 4H), h0 and c0 (B, H), resets (T, B) bool or None -> hs (T, B, H)
    and the final h and c."""
    return _lstm_forward(xs, w_x, b, w_h, h0, c0, resets)[0]


lstm_layer.defvjp(_lstm_forward, _lstm_backward)


def lstm_record(
    xs: jax.Array, w_x: jax.Array, b: jax.Array, w_h: jax.Array, h0: jax.Array, c0: jax.Array, resets: Resets
) -> tuple[jax.Array, jax.Array, jax.Array, Recorded]:
    """`lstm_layer`'s outputs and its gates i, f, g, o, cell states c and hidden states h."""
    (hs, h, c), saved = _lstm_forward(xs, w_x, b, w_h, h0, c0, resets)
    return hs, h, c, recorded("lstm", saved.gates, c=saved.cs, h=hs)
