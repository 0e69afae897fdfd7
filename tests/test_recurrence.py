"""The LSTM layer's hand-written backward pass against automatic
differentiation of the plain scan of the same cell (the forward values are
checked against a float64 NumPy reference in test_model.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from charlstm.model import LSTMLayer
from charlstm.recurrence import lstm_layer, lstm_update


def plain_layer(xs, w_x, b, w_h, h0, c0):
    """The layer as autodiff sees it: one lax.scan over the cell, no custom rule."""

    def step(state, x_t):
        h, c = lstm_update(x_t @ w_x + b + state[0] @ w_h, state[1])
        return (h, c), h

    (h, c), hs = jax.lax.scan(step, (h0, c0), xs)
    return hs, h, c


def _inputs(T, B, D, H, seed=0):
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return jnp.asarray(rng.normal(size=shape) * scale, jnp.float32)

    return (
        normal(T, B, D),
        normal(D, 4 * H, scale=0.4),
        normal(4 * H),
        normal(H, 4 * H, scale=0.4),
        normal(B, H, scale=0.5),
        normal(B, H, scale=0.5),
    )


def _loss(layer, weights):
    w_hs, w_h, w_c = weights

    def loss(*args):
        hs, h, c = layer(*args)
        # Every output gets its own weighting, so no gradient path cancels.
        return jnp.sum(hs * w_hs) + jnp.sum(h * w_h) + jnp.sum(jnp.sin(c) * w_c)

    return loss


@pytest.mark.parametrize(("T", "B", "D", "H"), [(19, 3, 5, 8), (2, 1, 3, 4), (64, 4, 6, 16)])
def test_gradients_equal_autodiff_of_the_plain_scan(T, B, D, H):
    args = _inputs(T, B, D, H)
    rng = np.random.default_rng(1)
    weights = tuple(jnp.asarray(rng.normal(size=s), jnp.float32) for s in [(T, B, H), (B, H), (B, H)])
    argnums = tuple(range(6))
    ours = jax.jit(jax.grad(_loss(lstm_layer, weights), argnums))(*args)
    reference = jax.jit(jax.grad(_loss(plain_layer, weights), argnums))(*args)
    names = ["xs", "w_x", "b", "w_h", "h0", "c0"]
    for name, got, want in zip(names, ours, reference, strict=True):
        assert got.shape == want.shape, name
        scale = float(jnp.abs(want).max())
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=2e-5 * scale, err_msg=name)


def test_forward_equals_the_plain_scan():
    args = _inputs(23, 2, 5, 8, seed=3)
    for got, want in zip(lstm_layer(*args), plain_layer(*args), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-6)


def test_layer_reads_windows_of_one_and_zero_characters():
    xs, w_x, b, w_h, h0, c0 = _inputs(1, 2, 5, 8, seed=4)
    params = {"w_x": w_x, "w_h": w_h, "b": b}
    layer = LSTMLayer(8)
    hs, (h, c) = layer.apply({"params": params}, xs, (h0, c0))
    want_hs, want_h, want_c = plain_layer(xs, w_x, b, w_h, h0, c0)
    np.testing.assert_allclose(np.asarray(hs), np.asarray(want_hs), atol=1e-6)
    np.testing.assert_allclose(np.asarray(h), np.asarray(want_h), atol=1e-6)
    np.testing.assert_allclose(np.asarray(c), np.asarray(want_c), atol=1e-6)
    # An empty prime reads nothing and leaves the state as it was.
    hs, (h, c) = layer.apply({"params": params}, xs[:0], (h0, c0))
    assert hs.shape == (0, 2, 8)
    np.testing.assert_array_equal(np.asarray(h), np.asarray(h0))
    np.testing.assert_array_equal(np.asarray(c), np.asarray(c0))
