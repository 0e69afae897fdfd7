"""The LSTM, layer-normalised LSTM and GRU cells, and one layer of each over
a window (T >= 1 characters) with a hand-written backward pass.

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
rounding (tests/test_recurrence.py). `gru_layer` does the same for the GRU
(the cell's equations are in `gru_gates`), and `ln_lstm_layer` for the
layer-normalised LSTM (2026-11-25, same machine, 2x256 on 64 x 64: 15.7k
chars/s with autodiff, 19.0k with its own pass; the plain LSTM 25.9k).

Mixed precision (`--precision bf16`): the layer hands the cell its weight
matrices cast to bfloat16. Every matrix product then runs in bfloat16 with a
float32 result (`_dot`), forward and backward, while the gates, the cell
state, the carried (dh, dc) and the biases and gains stay float32; the
weights' gradients leave the cell as bfloat16 and reach the float32 master
weights through the cast. With float32 weights `_dot` is the plain product,
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


def _dot(a: jax.Array, b: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """a @ b, computed in `dtype` (bfloat16 for mixed precision) with a
    float32 result; in float32, exactly `a @ b`."""
    if dtype == jnp.float32:
        return a @ b
    return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


def _like(grad: jax.Array, primal: jax.Array) -> jax.Array:
    """A weight's gradient in the weight's own dtype (a custom VJP must return that)."""
    return grad if grad.dtype == primal.dtype else grad.astype(primal.dtype)


def restart(x: jax.Array, r_t: jax.Array | None) -> jax.Array:
    """x (B, H) with the rows that restart at this step (r_t (B,) bool) zeroed;
    without resets, x itself (so a corpus of one document computes exactly
    what it always did)."""
    return x if r_t is None else jnp.where(r_t[:, None], 0.0, x)


def _restarted(xs: jax.Array, resets: Resets) -> jax.Array:
    """xs (T, B, H), the state before each step, as the step reads it."""
    return xs if resets is None else jnp.where(resets[..., None], 0.0, xs)


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


def _rows_transposed(x: jax.Array) -> jax.Array:
    """x (T, B, N) as a materialised (N, T*B) matrix.

    XLA would otherwise fold the transpose into the weight-gradient product
    as a contraction over the leading axis, which its CPU backend runs through
    a slower general path (26-31 ms against 23 ms for (256, 8192) x (8192, 1024),
    copy included, on the 2-core CPU); the barrier keeps the copy.
    """
    rows = x.reshape(-1, x.shape[-1])  # (T*B, N)
    return jax.lax.optimization_barrier(rows.T)


def _lstm_forward(
    xs: jax.Array, w_x: jax.Array, b: jax.Array, w_h: jax.Array, h0: jax.Array, c0: jax.Array, resets: Resets
) -> tuple[tuple[jax.Array, jax.Array, jax.Array], Saved]:
    # The input's share of the gates does not depend on h: one large product
    # for all T steps; only (B, H) x (H, 4H) stays inside the loop.
    zx = _dot(xs, w_x, w_x.dtype) + b  # (T, B, 4H)

    def step(state: State, at_t: tuple[jax.Array, jax.Array | None]) -> tuple[State, tuple[jax.Array, ...]]:
        zx_t, r_t = at_t
        h_prev, c_prev = (restart(x, r_t) for x in state)  # (B, H) each
        gates = lstm_gates_at_once(zx_t + _dot(h_prev, w_h, w_h.dtype))  # (B, 4H)
        i, f, g, o = jnp.split(gates, 4, axis=-1)  # (B, H) each
        c = f * c_prev + i * g
        h = o * jnp.tanh(c)
        return (h, c), (h, c, gates)

    (h, c), (hs, cs, gates) = jax.lax.scan(step, (h0, c0), (zx, resets))  # hs, cs (T, B, H); gates (T, B, 4H)
    # What the backward pass needs: the gates after their nonlinearities and
    # the cell states; the pre-activations are not kept.
    return (hs, h, c), (xs, w_x, w_h, h0, c0, hs, cs, gates, resets)


def _gate_grads(gates: jax.Array, dc: jax.Array, do: jax.Array, c_prev: jax.Array) -> jax.Array:
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
    c_prev = _restarted(jnp.concatenate([c0[None], cs[:-1]]), resets)  # (T, B, H): c_{t-1} as step t read it
    w_h_t = jax.lax.optimization_barrier(w_h.T)  # (4H, H), transposed once rather than at each step

    def step(carry: State, at_t: tuple[jax.Array, ...]) -> tuple[State, jax.Array]:
        dh_next, dc_next = carry  # from step t+1, (B, H) each
        dh_t, gates_t, c_t, c_prev_t, r_t = at_t
        _, f, _, o = jnp.split(gates_t, 4, axis=-1)  # the forget and output gates, (B, H) each
        dh = dh_t + dh_next
        tanh_c = jnp.tanh(c_t)
        dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)
        dz = _gate_grads(gates_t, dc, dh * tanh_c, c_prev_t)  # (B, 4H)
        # A stream that restarted here read zeros: nothing flows into the state before.
        return (restart(_dot(dz, w_h_t, dtype), r_t), restart(dc * f, r_t)), dz

    at = (dhs, gates, cs, c_prev, resets)
    (dh0, dc0), dzs = jax.lax.scan(step, (dh_last, dc_last), at, reverse=True)  # dzs (T, B, 4H)
    h_prev = _restarted(jnp.concatenate([h0[None], hs[:-1]]), resets)  # (T, B, H): h_{t-1} as step t read it
    dz_rows = dzs.reshape(-1, 4 * hidden)  # (T*B, 4H)
    dw_h = _dot(_rows_transposed(h_prev), dz_rows, dtype)  # (H, 4H), one product over all T*B rows
    dw_x = _dot(_rows_transposed(xs), dz_rows, dtype)  # (D, 4H)
    dxs = _dot(dzs, w_x.T, dtype)  # (T, B, D)
    return dxs, _like(dw_x, w_x), dzs.sum(axis=(0, 1)), _like(dw_h, w_h), dh0, dc0, None


@jax.custom_vjp
def lstm_layer(
    xs: jax.Array, w_x: jax.Array, b: jax.Array, w_h: jax.Array, h0: jax.Array, c0: jax.Array, resets: Resets = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One LSTM layer over a window: xs (T, B, D), w_x (D, 4H), b (4H,),
    w_h (H, 4H), h0 and c0 (B, H), resets (T, B) bool or None -> hs (T, B, H)
    and the final h and c."""
    return _lstm_forward(xs, w_x, b, w_h, h0, c0, resets)[0]


lstm_layer.defvjp(_lstm_forward, _lstm_backward)


# What `charlstm inspect` shows per step, (T, B, H) each, taken from the very
# forward passes that training differentiates: a cell's inspector cannot
# disagree with the cell.
Recorded = dict[str, jax.Array]


def lstm_record(
    xs: jax.Array, w_x: jax.Array, b: jax.Array, w_h: jax.Array, h0: jax.Array, c0: jax.Array, resets: Resets
) -> tuple[jax.Array, jax.Array, jax.Array, Recorded]:
    """`lstm_layer`'s outputs and its gates i, f, g, o, cell states c and hidden states h."""
    (hs, h, c), saved = _lstm_forward(xs, w_x, b, w_h, h0, c0, resets)
    cs, gates = saved[6:8]  # (T, B, H), (T, B, 4H)
    return hs, h, c, {**dict(zip("ifgo", jnp.split(gates, 4, axis=-1), strict=True)), "c": cs, "h": hs}


# Layer normalisation inside the LSTM cell (`--norm layer`), as in Ba, Kiros and
# Hinton (2016): the input's and the state's shares of the gates are
# normalised separately, each with its own gain, and so is the cell state
# before its tanh:
#
#     z = LN(W_x x) * gain_x + LN(W_h h_prev) * gain_h + b
#     c = f * c_prev + i * g
#     h = o * tanh(LN(c) * gain_c + bias_c)
#
# Its backward pass (`_ln_lstm_backward`) is written by hand like the LSTM's.
LNParams = dict[str, jax.Array]  # the names in LN_NAMES
LN_NAMES = ("w_x", "b", "w_h", "gain_x", "gain_h", "gain_c", "bias_c")


def _normalised(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x normalised to zero mean and unit variance over its last axis, and
    1 / the standard deviation it divided by, (..., 1); the 1e-5 keeps a
    constant row (all units equal) finite."""
    mean = x.mean(axis=-1, keepdims=True)
    rstd = jax.lax.rsqrt(jnp.square(x - mean).mean(axis=-1, keepdims=True) + 1e-5)
    return (x - mean) * rstd, rstd


def _normalised_grad(d_out: jax.Array, out: jax.Array, rstd: jax.Array) -> jax.Array:
    """The gradient of x from that of out = _normalised(x)[0], written with out."""
    mean_d = d_out.mean(axis=-1, keepdims=True)
    mean_d_out = (d_out * out).mean(axis=-1, keepdims=True)
    return rstd * (d_out - mean_d - out * mean_d_out)


def ln_lstm_input(p: LNParams, xs: jax.Array) -> jax.Array:
    """The input's share of the gates, (..., D) -> (..., 4H), bias included."""
    return _normalised(_dot(xs, p["w_x"], p["w_x"].dtype))[0] * p["gain_x"] + p["b"]


def _ln_cell(p: LNParams, zx_t: jax.Array, h_prev: jax.Array, c_prev: jax.Array) -> tuple[jax.Array, ...]:
    """One step: (i, f, g, o, h, c), each (B, H), then what the backward pass
    keeps: LN(h_prev @ W_h) (B, 4H) and its 1/std, LN(c) (B, H) and its 1/std,
    and tanh(LN(c) * gain_c + bias_c) (B, H)."""
    ah, rstd_h = _normalised(_dot(h_prev, p["w_h"], p["w_h"].dtype))  # (B, 4H), (B, 1)
    i, f, g, o = lstm_gates(zx_t + ah * p["gain_h"])
    c = f * c_prev + i * g
    nc, rstd_c = _normalised(c)  # (B, H), (B, 1)
    tanh_y = jnp.tanh(nc * p["gain_c"] + p["bias_c"])
    return i, f, g, o, o * tanh_y, c, ah, rstd_h, nc, rstd_c, tanh_y


def ln_lstm_step(p: LNParams, zx_t: jax.Array, h_prev: jax.Array, c_prev: jax.Array) -> tuple[jax.Array, ...]:
    """One step from the input's share zx_t (B, 4H): (i, f, g, o, h, c), each (B, H);
    with `ln_lstm_input`, the plain scan that the tests differentiate."""
    return _ln_cell(p, zx_t, h_prev, c_prev)[:6]


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
    cs, gates = saved[11:13]  # after xs, 5 weights, h0, c0, ax, rstd_x and hs
    return hs, h, c, {**dict(zip("ifgo", jnp.split(gates, 4, axis=-1), strict=True)), "c": cs, "h": hs}


def _ln_lstm_forward(
    xs: jax.Array, resets: Resets, *weights_and_state: jax.Array
) -> tuple[tuple[jax.Array, jax.Array, jax.Array], Saved]:
    p = dict(zip(LN_NAMES, weights_and_state[:-2], strict=True))
    h0, c0 = weights_and_state[-2:]
    ax, rstd_x = _normalised(_dot(xs, p["w_x"], p["w_x"].dtype))  # (T, B, 4H), (T, B, 1)

    def step(state: State, at_t: tuple[jax.Array, jax.Array | None]) -> tuple[State, tuple[jax.Array, ...]]:
        zx_t, r_t = at_t
        i, f, g, o, h, c, *kept = _ln_cell(p, zx_t, *(restart(x, r_t) for x in state))
        return (h, c), (h, c, jnp.concatenate([i, f, g, o], axis=-1), *kept)

    (h, c), kept = jax.lax.scan(step, (h0, c0), (ax * p["gain_x"] + p["b"], resets))  # kept[0], hs: (T, B, H)
    weights = tuple(p[name] for name in ("w_x", "w_h", "gain_x", "gain_h", "gain_c"))
    return (kept[0], h, c), (xs, *weights, h0, c0, ax, rstd_x, *kept, resets)


def _ln_lstm_backward(
    saved: tuple[jax.Array, ...], grads: tuple[jax.Array, jax.Array, jax.Array]
) -> tuple[jax.Array | None, ...]:
    # The LSTM's plan again, with each normalisation's gradient taken where
    # it sits: carry (dh, dc) backwards, keep what the weight gradients need.
    xs, w_x, w_h, gain_x, gain_h, gain_c, h0, c0, ax, rstd_x = saved[:10]
    hs, cs, gates, ah, rstd_h, nc, rstd_c, tanh_y, resets = saved[10:]  # per step, (T, B, ...)
    dhs, dh_last, dc_last = grads  # (T, B, H), (B, H), (B, H)
    hidden, dtype = h0.shape[-1], w_h.dtype
    c_prevs = _restarted(jnp.concatenate([c0[None], cs[:-1]]), resets)  # (T, B, H)
    w_h_t = jax.lax.optimization_barrier(w_h.T)  # (4H, H)

    def step(carry: State, at_t: tuple[jax.Array, ...]) -> tuple[State, tuple[jax.Array, ...]]:
        dh_next, dc_next = carry
        dh_t, gates_t, c_prev, ah_t, rstd_h_t, nc_t, rstd_c_t, tanh_y_t, r_t = at_t
        _, f, _, o = jnp.split(gates_t, 4, axis=-1)  # the forget and output gates, (B, H) each
        dh = dh_t + dh_next
        dy = dh * o * (1.0 - tanh_y_t * tanh_y_t)  # through h = o tanh(y), y = LN(c) gain_c + bias_c
        dc = dc_next + _normalised_grad(dy * gain_c, nc_t, rstd_c_t)
        dz = _gate_grads(gates_t, dc, dh * tanh_y_t, c_prev)  # (B, 4H)
        da = _normalised_grad(dz * gain_h, ah_t, rstd_h_t)  # (B, 4H): the gradient of h_prev @ W_h
        return (restart(_dot(da, w_h_t, dtype), r_t), restart(dc * f, r_t)), (dz, da, dy)

    at = (dhs, gates, c_prevs, ah, rstd_h, nc, rstd_c, tanh_y, resets)
    (dh0, dc0), (dzs, das, dys) = jax.lax.scan(step, (dh_last, dc_last), at, reverse=True)  # (T, B, 4H|4H|H)
    h_prevs = _restarted(jnp.concatenate([h0[None], hs[:-1]]), resets)  # (T, B, H)
    dw_h = _dot(_rows_transposed(h_prevs), das.reshape(-1, 4 * hidden), dtype)  # (H, 4H)
    dax = _normalised_grad(dzs * gain_x, ax, rstd_x)  # (T, B, 4H): the gradient of xs @ W_x
    dw_x = _dot(_rows_transposed(xs), dax.reshape(-1, 4 * hidden), dtype)  # (D, 4H)
    dxs = _dot(dax, w_x.T, dtype)  # (T, B, D)
    total = lambda x: x.sum(axis=(0, 1))  # noqa: E731  over time and batch
    gains = (total(dzs * ax), total(dzs * ah), total(dys * nc), total(dys))  # gain_x, gain_h, gain_c, bias_c
    grads_out = (_like(dw_x, w_x), total(dzs), _like(dw_h, w_h), *gains)
    return (dxs, None, *grads_out, dh0, dc0)


@jax.custom_vjp
def _ln_lstm(xs: jax.Array, resets: Resets, *weights_and_state: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    return _ln_lstm_forward(xs, resets, *weights_and_state)[0]


_ln_lstm.defvjp(_ln_lstm_forward, _ln_lstm_backward)


def gru_gates(
    zx: jax.Array, h_prev: jax.Array, w_h: jax.Array, w_hn: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The GRU's reset gate r, update gate u and candidate n, each (B, H);
    zx (B, 3H) is the input's part of [r | u | n]:

        r = sigmoid(W_xr x + W_hr h_prev + b_r)
        u = sigmoid(W_xu x + W_hu h_prev + b_u)
        n = tanh(W_xn x + W_hn (r * h_prev) + b_n)
        h = (1 - u) * n + u * h_prev
    """
    hidden = h_prev.shape[-1]
    ru = jax.nn.sigmoid(zx[:, : 2 * hidden] + _dot(h_prev, w_h, w_h.dtype))  # (B, 2H)
    r, u = ru[:, :hidden], ru[:, hidden:]
    # The reset gate scales h before it enters the candidate: r near 0 lets
    # the candidate ignore the past.
    n = jnp.tanh(zx[:, 2 * hidden :] + _dot(r * h_prev, w_hn, w_hn.dtype))
    return r, u, n


def gru_update(zx: jax.Array, h_prev: jax.Array, w_h: jax.Array, w_hn: jax.Array) -> jax.Array:
    """The textbook GRU step; zx (B, 3H) is the input's part of [r | u | n]."""
    _, u, n = gru_gates(zx, h_prev, w_h, w_hn)
    return (1.0 - u) * n + u * h_prev


def _gru_forward(
    xs: jax.Array, w_x: jax.Array, b: jax.Array, w_h: jax.Array, w_hn: jax.Array, h0: jax.Array, resets: Resets
) -> tuple[tuple[jax.Array, jax.Array], Saved]:
    zx = _dot(xs, w_x, w_x.dtype) + b  # (T, B, 3H), hoisted as in the LSTM

    def step(h_prev: jax.Array, at_t: tuple[jax.Array, jax.Array | None]) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        zx_t, r_t = at_t
        h_prev = restart(h_prev, r_t)
        r, u, n = gru_gates(zx_t, h_prev, w_h, w_hn)  # (B, H) each
        h = (1.0 - u) * n + u * h_prev
        return h, (h, jnp.concatenate([r, u, n], axis=-1))

    h, (hs, gates) = jax.lax.scan(step, h0, (zx, resets))  # hs (T, B, H); gates (T, B, 3H)
    return (hs, h), (xs, w_x, w_h, w_hn, h0, hs, gates, resets)


def _gru_backward(saved: tuple[jax.Array, ...], grads: tuple[jax.Array, jax.Array]) -> tuple[jax.Array | None, ...]:
    # The same plan as the LSTM's: carry only dh backwards, keep each step's
    # pre-activation gradients, form the weight gradients afterwards.
    xs, w_x, w_h, w_hn, h0, hs, gates, resets = saved
    dhs, dh_last = grads  # (T, B, H), (B, H)
    hidden, dtype = h0.shape[-1], w_h.dtype
    h_prevs = _restarted(jnp.concatenate([h0[None], hs[:-1]]), resets)  # (T, B, H): h_{t-1} as step t read it
    # Transposed once, not at every step (the barrier keeps XLA from folding it back in).
    w_h_t = jax.lax.optimization_barrier(w_h.T)  # (2H, H)
    w_hn_t = jax.lax.optimization_barrier(w_hn.T)  # (H, H)

    def step(dh_next: jax.Array, at_t: tuple[jax.Array, ...]) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        dh_t, gates_t, h_prev, r_t = at_t
        r, u, n = jnp.split(gates_t, 3, axis=-1)  # (B, H) each
        dh = dh_t + dh_next
        dzn = dh * (1.0 - u) * (1.0 - n * n)  # through h = (1-u) n + u h_prev, then tanh' = 1 - n^2
        drh = _dot(dzn, w_hn_t, dtype)  # (B, H): the gradient of r * h_prev
        dzr = drh * h_prev * r * (1.0 - r)  # sigmoid' = s (1 - s)
        dzu = dh * (h_prev - n) * u * (1.0 - u)
        dzru = jnp.concatenate([dzr, dzu], axis=-1)  # (B, 2H)
        dh_prev = dh * u + drh * r + _dot(dzru, w_h_t, dtype)  # (B, H)
        return restart(dh_prev, r_t), (dzru, dzn)

    at = (dhs, gates, h_prevs, resets)
    dh0, (dzrus, dzns) = jax.lax.scan(step, dh_last, at, reverse=True)  # (T, B, 2H), (T, B, H)
    dw_h = _dot(_rows_transposed(h_prevs), dzrus.reshape(-1, 2 * hidden), dtype)  # (H, 2H)
    rh = gates[..., :hidden] * h_prevs  # (T, B, H): r * h_prev, recomputed rather than kept
    dw_hn = _dot(_rows_transposed(rh), dzns.reshape(-1, hidden), dtype)  # (H, H)
    dzx = jnp.concatenate([dzrus, dzns], axis=-1)  # (T, B, 3H)
    dw_x = _dot(_rows_transposed(xs), dzx.reshape(-1, 3 * hidden), dtype)  # (D, 3H)
    dxs = _dot(dzx, w_x.T, dtype)  # (T, B, D)
    return dxs, _like(dw_x, w_x), dzx.sum(axis=(0, 1)), _like(dw_h, w_h), _like(dw_hn, w_hn), dh0, None


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
    gates = saved[6]  # (T, B, 3H)
    return hs, h, {**dict(zip("run", jnp.split(gates, 3, axis=-1), strict=True)), "h": hs}
