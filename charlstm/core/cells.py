"""The recurrent cells, and what they share.

charlstm has three cells, each with one layer over a window (T >= 1
characters, `jax.lax.scan` inside) and a backward pass written by hand:

    lstm.py      the textbook LSTM (`--norm none`)
    ln_lstm.py   the LSTM with layer normalisation inside (`--norm layer`, the default)
    gru.py       the GRU (`--cell gru`), the lighter alternative

This module holds what all three use: their matrix products (`dot`), the
restarts at document boundaries (`restart`, `states_as_read`) and the
window's rows for the weight gradients (`rows_transposed`).

Shapes: T time, B batch, D input width, H hidden size. In the code rows are
batch elements: the textbook's `W_x x` is `xs @ w_x`, with w_x (D, 4H) for
an LSTM and gate k in columns kH to (k+1)H.

Restarts: a corpus of several documents marks each document's start with a
boundary symbol (core/model.py); at a step that reads it, a stream's
carried state restarts from zero. `resets` (T, B) says where, or is None
for a corpus of one document. (Not to be confused with the GRU's reset gate
r, nor with `--reset-chars`, the periodic reset of training streams.)

Why each layer has its own backward pass: automatic differentiation of the
scan adds the recurrent weight's gradient h_{t-1}^T dz_t into a (H, 4H)
accumulator at every time step, T small matrix products with a short inner
dimension plus a full read and write of the accumulator each, and it keeps
more of the forward pass than the backward needs. The hand-written passes
walk the window in reverse carrying only the state's gradients (dh, dc),
keep every step's gate gradient dz (and, in the layer-normalised cell, the
gradients through its normalisations), and form the weight gradients
afterwards as one large product each over all T * B rows. Measured on the
2-core CPU (2026-11-24, the small row of benchmarks/vs_pytorch.py, 2x256 on 64 x
128 characters, malloc settings of runtime/hostmem.py on both sides): the
plain LSTM's training step took 0.36-0.39 s with autodiff and 0.26-0.30 s
with its own pass; the layer-normalised LSTM (2026-11-25, same machine, 2x256
on 64 x 64) 15.7k chars/s with autodiff, 19.0k with its own pass. The
gradients equal autodiff's to float32 rounding (tests/test_recurrence.py).

Mixed precision (`--precision bf16`): the layer hands the cell its weight
matrices cast to bfloat16. Every matrix product then runs in bfloat16 with a
float32 result (`dot`), forward and backward, while the gates, the cell
state, the carried (dh, dc) and the biases and gains stay float32; the
weights' gradients leave the cell as bfloat16 and reach the float32 master
weights through the cast. With float32 weights `dot` is the plain product,
so a float32 run computes the same numbers as one without mixed precision.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

State = tuple[jax.Array, jax.Array]  # (h, c) or their gradients (dh, dc), (B, H) each
# (T, B) bool, or None: the steps whose input is the document boundary symbol
# (see core/model.py), where a stream's carried state restarts from zero.
Resets = jax.Array | None
# What `charlstm inspect` shows per step, (T, B, H) each, taken from the very
# forward passes that training differentiates: a cell's inspector cannot
# disagree with the cell.
Recorded = dict[str, jax.Array]
# Each cell's gates in the order its pre-activations are laid out.
GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "u", "n")}


def dot(a: jax.Array, b: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """a @ b, computed in `dtype` (bfloat16 for mixed precision) with a
    float32 result; in float32, exactly `a @ b`. The cells run in float32
    (or bfloat16): under `jax_enable_x64` a float64 product would come back
    as float32."""
    if dtype == jnp.float32:
        return a @ b
    return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


def grad_like(grad: jax.Array, primal: jax.Array) -> jax.Array:
    """A weight's gradient in the weight's own dtype (a custom VJP must return that)."""
    return grad if grad.dtype == primal.dtype else grad.astype(primal.dtype)


def restart(x: jax.Array, restart_t: jax.Array | None) -> jax.Array:
    """x (B, H) with the rows that restart at this step (restart_t (B,) bool) zeroed;
    without resets, x itself: a corpus of one document compiles no select."""
    return x if restart_t is None else jnp.where(restart_t[:, None], 0.0, x)


def states_as_read(x0: jax.Array, xs: jax.Array, resets: Resets) -> jax.Array:
    """The state before each step, as the step read it (zero where it
    restarted): x0 (B, H), the state before the window, then the states
    after each step but the last, xs (T, B, H) -> (T, B, H)."""
    before = jnp.concatenate([x0[None], xs[:-1]])  # (T, B, H)
    return before if resets is None else jnp.where(resets[..., None], 0.0, before)


def rows_transposed(x: jax.Array) -> jax.Array:
    """x (T, B, N) as a materialised (N, T*B) matrix.

    XLA would otherwise fold the transpose into the weight-gradient product
    as a contraction over the leading axis, which its CPU backend runs through
    a slower general path (26-31 ms against 23 ms for (256, 8192) x (8192, 1024),
    copy included, on the 2-core CPU); the barrier keeps the copy.
    """
    rows = x.reshape(-1, x.shape[-1])  # (T*B, N)
    return jax.lax.optimization_barrier(rows.T)


def recorded(cell: str, gates: jax.Array, **states: jax.Array) -> Recorded:
    """What a layer records: its gates, (T, B, kH) split into one (T, B, H)
    array each, and its states (c, h)."""
    names = GATES[cell]
    return {**dict(zip(names, jnp.split(gates, len(names), axis=-1), strict=True)), **states}
