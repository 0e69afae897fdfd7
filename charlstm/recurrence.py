"""The LSTM cell, and one LSTM layer over a window with a hand-written backward pass.

Shapes: T time, B batch, D input width, H hidden size.

    i = sigmoid(W_xi x + W_hi h_prev + b_i)     input gate
    f = sigmoid(W_xf x + W_hf h_prev + b_f)     forget gate
    g = tanh(W_xg x + W_hg h_prev + b_g)        candidate
    o = sigmoid(W_xo x + W_ho h_prev + b_o)     output gate
    c = f * c_prev + i * g
    h = o * tanh(c)

Why `lstm_layer` has its own backward pass: automatic differentiation of the
scan adds the recurrent weight's gradient h_{t-1}^T dz_t into a (H, 4H)
accumulator at every time step, T small matrix products with a short inner
dimension plus a full read and write of the accumulator each, and it keeps
more of the forward pass than the backward needs. `_backward` walks the
window in reverse carrying only (dh, dc), keeps every step's gate gradient dz,
and forms the weight gradients afterwards as one large product each over all
T * B rows. Measured on the 2-core CPU (2026-11-24, the benchmark's small
configuration, 2x256 on 64 x 128 characters, malloc settings of hostmem.py
on both sides): the training step took 0.36-0.39 s with autodiff and
0.26-0.30 s with this pass. The gradients equal autodiff's to float32
rounding (tests/test_recurrence.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

State = tuple[jax.Array, jax.Array]  # (h, c) or their gradients (dh, dc), (B, H) each


def lstm_gates(z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(i, f, g, o), each (B, H): the input and forget gates, the candidate
    and the output gate, from their pre-activations z (B, 4H), laid out as
    [input i | forget f | candidate g | output o]; each block is
    W_x x_t + W_h h_{t-1} + b for that gate.
    """
    i, f, g, o = jnp.split(z, 4, axis=-1)  # each (B, H)
    return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)


def lstm_update(z: jax.Array, c_prev: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The textbook cell, given the pre-activations z (B, 4H) of all four gates."""
    # `charlstm inspect` records the same gates through lstm_gates.
    i, f, g, o = lstm_gates(z)
    c = f * c_prev + i * g
    h = o * jnp.tanh(c)
    return h, c


def _rows_transposed(x: jax.Array) -> jax.Array:
    """x (T, B, N) as a materialised (N, T*B) matrix.

    XLA would otherwise fold the transpose into the weight-gradient product
    as a contraction over the leading axis, which its CPU backend runs through
    a slower general path (26-31 ms against 23 ms for (256, 8192) x (8192, 1024),
    copy included, on the 2-core CPU); the barrier keeps the copy.
    """
    rows = x.reshape(-1, x.shape[-1])  # (T*B, N)
    return jax.lax.optimization_barrier(rows.T)


def _forward(
    xs: jax.Array, w_x: jax.Array, b: jax.Array, w_h: jax.Array, h0: jax.Array, c0: jax.Array
) -> tuple[tuple[jax.Array, jax.Array, jax.Array], tuple[jax.Array, ...]]:
    # The input's share of the gates does not depend on h: one large product
    # for all T steps; only (B, H) x (H, 4H) stays inside the loop.
    zx = xs @ w_x + b  # (T, B, 4H)

    def step(state: State, zx_t: jax.Array) -> tuple[State, tuple[jax.Array, ...]]:
        h_prev, c_prev = state  # (B, H) each
        i, f, g, o = lstm_gates(zx_t + h_prev @ w_h)  # (B, H) each
        c = f * c_prev + i * g
        h = o * jnp.tanh(c)
        return (h, c), (h, c, jnp.concatenate([i, f, g, o], axis=-1))

    (h, c), (hs, cs, gates) = jax.lax.scan(step, (h0, c0), zx)  # hs, cs (T, B, H); gates (T, B, 4H)
    # What the backward pass needs: the gates after their nonlinearities and
    # the cell states; the pre-activations are not kept.
    return (hs, h, c), (xs, w_x, w_h, h0, c0, hs, cs, gates)


def _backward(saved: tuple[jax.Array, ...], grads: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, ...]:
    xs, w_x, w_h, h0, c0, hs, cs, gates = saved
    dhs, dh_last, dc_last = grads  # (T, B, H), (B, H), (B, H)
    hidden = h0.shape[-1]
    c_prev = jnp.concatenate([c0[None], cs[:-1]])  # (T, B, H): c_{t-1} at step t
    w_h_t = jax.lax.optimization_barrier(w_h.T)  # (4H, H), transposed once rather than at each step

    def step(carry: State, at_t: tuple[jax.Array, ...]) -> tuple[State, jax.Array]:
        dh_next, dc_next = carry  # from step t+1, (B, H) each
        dh_t, gates_t, c_t, c_prev_t = at_t
        i, f, g, o = jnp.split(gates_t, 4, axis=-1)  # (B, H) each
        dh = dh_t + dh_next
        tanh_c = jnp.tanh(c_t)
        dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)
        # The derivative of each gate's nonlinearity, written with its output:
        # sigmoid' = s (1 - s), tanh' = 1 - t^2.
        di, df, dg, do = dc * g, dc * c_prev_t, dc * i, dh * tanh_c
        dz = jnp.concatenate([di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g * g), do * o * (1.0 - o)], axis=-1)
        return (dz @ w_h_t, dc * f), dz

    (dh0, dc0), dzs = jax.lax.scan(step, (dh_last, dc_last), (dhs, gates, cs, c_prev), reverse=True)  # dzs (T, B, 4H)
    h_prev = jnp.concatenate([h0[None], hs[:-1]])  # (T, B, H): h_{t-1} at step t
    dz_rows = dzs.reshape(-1, 4 * hidden)  # (T*B, 4H)
    dw_h = _rows_transposed(h_prev) @ dz_rows  # (H, 4H), one product over all T*B rows
    dw_x = _rows_transposed(xs) @ dz_rows  # (D, 4H)
    dxs = dzs @ w_x.T  # (T, B, D)
    return dxs, dw_x, dzs.sum(axis=(0, 1)), dw_h, dh0, dc0


@jax.custom_vjp
def lstm_layer(
    xs: jax.Array, w_x: jax.Array, b: jax.Array, w_h: jax.Array, h0: jax.Array, c0: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One LSTM layer over a window: xs (T, B, D), w_x (D, 4H), b (4H,),
    w_h (H, 4H), h0 and c0 (B, H) -> hs (T, B, H) and the final h and c."""
    return _forward(xs, w_x, b, w_h, h0, c0)[0]


lstm_layer.defvjp(_forward, _backward)
