"""The LSTM cell, and one LSTM layer over a window (T >= 1 characters) with
a hand-written backward pass; what the other cells share with it (their
matrix products, restarts and gate gradients). The layer-normalised LSTM is
in `ln_lstm.py`, the GRU in `gru.py`.

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
more of the forward pass than the backward needs. `_lstm_backward` walks the
window in reverse carrying only (dh, dc), keeps every step's gate gradient dz,
and forms the weight gradients afterwards as one large product each over all
T * B rows. Measured on the 2-core CPU (2026-11-24, the benchmark's small
configuration, 2x256 on 64 x 128 characters, malloc settings of runtime/hostmem.py
on both sides): the training step took 0.36-0.39 s with autodiff and
0.26-0.30 s with this pass. The gradients equal autodiff's to float32
rounding (tests/test_recurrence.py). `gru.gru_layer` does the same for the GRU
(the cell's equations are in `gru.gru_gates`), and `ln_lstm.ln_lstm_layer` for the
layer-normalised LSTM (2026-11-25, same machine, 2x256 on 64 x 64: 15.7k
chars/s with autodiff, 19.0k with its own pass; the plain LSTM 25.9k).

Mixed precision (`--precision bf16`): the layer hands the cell its weight
matrices cast to bfloat16. Every matrix product then runs in bfloat16 with a
float32 result (`dot`), forward and backward, while the gates, the cell
state, the carried (dh, dc) and the biases and gains stay float32; the
weights' gradients leave the cell as bfloat16 and reach the float32 master
weights through the cast. With float32 weights `dot` is the plain product,
so a float32 run computes exactly what it did before bf16 existed.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

State = tuple[jax.Array, jax.Array]  # (h, c) or their gradients (dh, dc), (B, H) each
# (T, B) bool, or None: the steps whose input is the document boundary symbol
# (see core/model.py), where a stream's carried state restarts from zero.
Resets = jax.Array | None
# What a forward pass keeps for its backward pass: arrays, and the resets (or None).
Saved = tuple[Any, ...]
# What `charlstm inspect` shows per step, (T, B, H) each, taken from the very
# forward passes that training differentiates: a cell's inspector cannot
# disagree with the cell.
Recorded = dict[str, jax.Array]


# What every cell's layer uses: its products, restarts and the window's rows.


def dot(a: jax.Array, b: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """a @ b, computed in `dtype` (bfloat16 for mixed precision) with a
    float32 result; in float32, exactly `a @ b`."""
    if dtype == jnp.float32:
        return a @ b
    return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


def grad_like(grad: jax.Array, primal: jax.Array) -> jax.Array:
    """A weight's gradient in the weight's own dtype (a custom VJP must return that)."""
    return grad if grad.dtype == primal.dtype else grad.astype(primal.dtype)


def restart(x: jax.Array, r_t: jax.Array | None) -> jax.Array:
    """x (B, H) with the rows that restart at this step (r_t (B,) bool) zeroed;
    without resets, x itself (so a corpus of one document computes exactly
    what it always did)."""
    return x if r_t is None else jnp.where(r_t[:, None], 0.0, x)


def states_as_read(xs: jax.Array, resets: Resets) -> jax.Array:
    """xs (T, B, H), the state before each step, as the step reads it."""
    return xs if resets is None else jnp.where(resets[..., None], 0.0, xs)


def rows_transposed(x: jax.Array) -> jax.Array:
    """x (T, B, N) as a materialised (N, T*B) matrix.

    XLA would otherwise fold the transpose into the weight-gradient product
    as a contraction over the leading axis, which its CPU backend runs through
    a slower general path (26-31 ms against 23 ms for (256, 8192) x (8192, 1024),
    copy included, on the 2-core CPU); the barrier keeps the copy.
    """
    rows = x.reshape(-1, x.shape[-1])  # (T*B, N)
    return jax.lax.optimization_barrier(rows.T)


# The LSTM cell and layer.


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
    older ones the tests compile with, a few saturated values differ by up
    to 3 units in the last place). XLA's CPU backend otherwise runs four
    operations and a concatenation at every character, each a hand-off to
    its thread pool, and the plain cell's training step is about 4% faster
    this way (2026-12-02; docs/benchmarks.md). The layer-normalised cell,
    measured the same way, gained nothing, and keeps `lstm_gates`."""
    n = z.shape[-1] // 4
    candidate = jnp.arange(4 * n) // n == 2  # (4H,): the g block
    return jnp.where(candidate, jnp.tanh(z), jax.nn.sigmoid(z))


def lstm_update(z: jax.Array, c_prev: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The textbook cell, given the pre-activations z (B, 4H) of all four gates."""
    i, f, g, o = lstm_gates(z)
    c = f * c_prev + i * g
    h = o * jnp.tanh(c)
    return h, c


def _lstm_forward(
    xs: jax.Array, w_x: jax.Array, b: jax.Array, w_h: jax.Array, h0: jax.Array, c0: jax.Array, resets: Resets
) -> tuple[tuple[jax.Array, jax.Array, jax.Array], Saved]:
    # The input's share of the gates does not depend on h: one large product
    # for all T steps; only (B, H) x (H, 4H) stays inside the loop.
    zx = dot(xs, w_x, w_x.dtype) + b  # (T, B, 4H)

    def step(state: State, at_t: tuple[jax.Array, jax.Array | None]) -> tuple[State, tuple[jax.Array, ...]]:
        zx_t, r_t = at_t
        h_prev, c_prev = (restart(x, r_t) for x in state)  # (B, H) each
        gates = lstm_gates_at_once(zx_t + dot(h_prev, w_h, w_h.dtype))  # (B, 4H)
        i, f, g, o = jnp.split(gates, 4, axis=-1)  # (B, H) each
        c = f * c_prev + i * g
        h = o * jnp.tanh(c)
        return (h, c), (h, c, gates)

    (h, c), (hs, cs, gates) = jax.lax.scan(step, (h0, c0), (zx, resets))  # hs, cs (T, B, H); gates (T, B, 4H)
    # What the backward pass needs: the gates after their nonlinearities and
    # the cell states; the pre-activations are not kept.
    return (hs, h, c), (xs, w_x, w_h, h0, c0, hs, cs, gates, resets)


def lstm_gate_grads(gates: jax.Array, dc: jax.Array, do: jax.Array, c_prev: jax.Array) -> jax.Array:
    """The gradient of the gates' pre-activations z (B, 4H), from the kept
    gates (B, 4H, after their nonlinearities) and the gradients of c and o."""
    i, f, g, o = jnp.split(gates, 4, axis=-1)  # (B, H) each
    di, df, dg = dc * g, dc * c_prev, dc * i
    # The derivative of each gate's nonlinearity, written with its output:
    # sigmoid' = s (1 - s), tanh' = 1 - t^2.
    return jnp.concatenate([di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g * g), do * o * (1.0 - o)], axis=-1)


def _lstm_backward(
    saved: tuple[jax.Array, ...], grads: tuple[jax.Array, jax.Array, jax.Array]
) -> tuple[jax.Array | None, ...]:
    xs, w_x, w_h, h0, c0, hs, cs, gates, resets = saved
    dhs, dh_last, dc_last = grads  # (T, B, H), (B, H), (B, H)
    hidden, dtype = h0.shape[-1], w_h.dtype
    c_prev = states_as_read(jnp.concatenate([c0[None], cs[:-1]]), resets)  # (T, B, H): c_{t-1} as step t read it
    w_h_t = jax.lax.optimization_barrier(w_h.T)  # (4H, H), transposed once rather than at each step

    def step(carry: State, at_t: tuple[jax.Array, ...]) -> tuple[State, jax.Array]:
        dh_next, dc_next = carry  # from step t+1, (B, H) each
        dh_t, gates_t, c_t, c_prev_t, r_t = at_t
        _, f, _, o = jnp.split(gates_t, 4, axis=-1)  # the forget and output gates, (B, H) each
        dh = dh_t + dh_next
        tanh_c = jnp.tanh(c_t)
        dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)
        dz = lstm_gate_grads(gates_t, dc, dh * tanh_c, c_prev_t)  # (B, 4H)
        # A stream that restarted here read zeros: nothing flows into the state before.
        return (restart(dot(dz, w_h_t, dtype), r_t), restart(dc * f, r_t)), dz

    at = (dhs, gates, cs, c_prev, resets)
    (dh0, dc0), dzs = jax.lax.scan(step, (dh_last, dc_last), at, reverse=True)  # dzs (T, B, 4H)
    h_prev = states_as_read(jnp.concatenate([h0[None], hs[:-1]]), resets)  # (T, B, H): h_{t-1} as step t read it
    dz_rows = dzs.reshape(-1, 4 * hidden)  # (T*B, 4H)
    dw_h = dot(rows_transposed(h_prev), dz_rows, dtype)  # (H, 4H), one product over all T*B rows
    dw_x = dot(rows_transposed(xs), dz_rows, dtype)  # (D, 4H)
    dxs = dot(dzs, w_x.T, dtype)  # (T, B, D)
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
    cs, gates = saved[6:8]  # (T, B, H), (T, B, 4H)
    return hs, h, c, {**dict(zip("ifgo", jnp.split(gates, 4, axis=-1), strict=True)), "c": cs, "h": hs}
