"""The LSTM and GRU layers' hand-written backward passes against automatic
differentiation of the plain scan of the same cell (the forward values are
checked against float64 NumPy references in test_model.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from charlstm.core.gru import gru_layer, gru_update
from charlstm.core.ln_lstm import LN_NAMES, ln_lstm_input, ln_lstm_layer, ln_lstm_step
from charlstm.core.lstm import lstm_gates, lstm_gates_at_once, lstm_layer, lstm_update
from charlstm.core.model import GRULayer, LSTMLayer


def test_the_gates_at_once_are_the_four_gates():
    """The layer computes its gates in one operation (a speed choice): the
    values of the four separate nonlinearities, saturated ones included. Bit
    for bit with XLA's default CPU emitters (the training step's parameters
    and benchmarks/same_results.py's fingerprints are unchanged by it); the
    older emitters this suite compiles with differ in a few saturated
    values by up to 3 units in the last place."""
    z = jax.random.normal(jax.random.PRNGKey(3), (5, 4 * 7)) * 30.0  # (B, 4H), far into saturation too
    z = z.at[0].set(jnp.array([0.0, -0.0, 1e-8, -1e-8, 88.0, -88.0, 1e4] * 4))
    together = np.asarray(jax.jit(lstm_gates_at_once)(z))
    apart = np.concatenate([np.asarray(g) for g in jax.jit(lstm_gates)(z)], axis=-1)
    np.testing.assert_array_max_ulp(together, apart, maxulp=4)


def plain_lstm(xs, w_x, b, w_h, h0, c0):
    """The layer as autodiff sees it: one lax.scan over the cell, no custom rule."""

    def step(state, x_t):
        h, c = lstm_update(x_t @ w_x + b + state[0] @ w_h, state[1])
        return (h, c), h

    (h, c), hs = jax.lax.scan(step, (h0, c0), xs)
    return hs, h, c


def plain_gru(xs, w_x, b, w_h, w_hn, h0):
    def step(h, x_t):
        h = gru_update(x_t @ w_x + b, h, w_h, w_hn)
        return h, h

    h, hs = jax.lax.scan(step, h0, xs)
    return hs, h


def _ln_params(w_x, b, w_h, gain_x, gain_h, gain_c, bias_c):
    return dict(zip(LN_NAMES, (w_x, b, w_h, gain_x, gain_h, gain_c, bias_c), strict=True))


def ln_layer(xs, *weights_and_state):
    return ln_lstm_layer(_ln_params(*weights_and_state[:-2]), xs, *weights_and_state[-2:])


def plain_ln_lstm(xs, *weights_and_state):
    p = _ln_params(*weights_and_state[:-2])

    def step(state, zx_t):
        *_, h, c = ln_lstm_step(p, zx_t, *state)
        return (h, c), h

    (h, c), hs = jax.lax.scan(step, weights_and_state[-2:], ln_lstm_input(p, xs))
    return hs, h, c


def _normal(rng, *shape, scale=1.0):
    return jnp.asarray(rng.normal(size=shape) * scale, jnp.float32)


def lstm_inputs(T, B, D, H, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [((T, B, D), 1.0), ((D, 4 * H), 0.4), ((4 * H,), 1.0), ((H, 4 * H), 0.4), ((B, H), 0.5), ((B, H), 0.5)]
    return tuple(_normal(rng, *shape, scale=scale) for shape, scale in sizes)


def gru_inputs(T, B, D, H, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [((T, B, D), 1.0), ((D, 3 * H), 0.4), ((3 * H,), 1.0), ((H, 2 * H), 0.4), ((H, H), 0.4), ((B, H), 0.5)]
    return tuple(_normal(rng, *shape, scale=scale) for shape, scale in sizes)


def ln_inputs(T, B, D, H, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [((T, B, D), 1.0), ((D, 4 * H), 0.4), ((4 * H,), 1.0), ((H, 4 * H), 0.4)]
    sizes += [((4 * H,), 0.5), ((4 * H,), 0.5), ((H,), 0.5), ((H,), 0.5), ((B, H), 0.5), ((B, H), 0.5)]
    args = [_normal(rng, *shape, scale=scale) for shape, scale in sizes]
    for k in (4, 5, 6):  # gains around 1, as trained ones are
        args[k] = args[k] + 1.0
    return tuple(args)


CELLS = {
    # name: (layer, plain scan, inputs, argument names)
    "lstm": (lstm_layer, plain_lstm, lstm_inputs, ["xs", "w_x", "b", "w_h", "h0", "c0"]),
    "gru": (gru_layer, plain_gru, gru_inputs, ["xs", "w_x", "b", "w_h", "w_hn", "h0"]),
    "lstm-layer-norm": (ln_layer, plain_ln_lstm, ln_inputs, ["xs", *LN_NAMES, "h0", "c0"]),
}


def _loss(layer, weights):
    def loss(*args):
        # Every output gets its own weighting (and the last a nonlinearity),
        # so no gradient path cancels.
        *outs, last = layer(*args)
        total = sum(jnp.sum(out * w) for out, w in zip(outs, weights[:-1], strict=True))
        return total + jnp.sum(jnp.sin(last) * weights[-1])

    return loss


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("T", "B", "D", "H"), [(19, 3, 5, 8), (2, 1, 3, 4), (64, 4, 6, 16)])
def test_gradients_equal_autodiff_of_the_plain_scan(cell, T, B, D, H):
    layer, plain, inputs, names = CELLS[cell]
    args = inputs(T, B, D, H)
    outs = jax.eval_shape(layer, *args)
    rng = np.random.default_rng(1)
    weights = tuple(_normal(rng, *out.shape) for out in outs)
    argnums = tuple(range(len(args)))
    ours = jax.jit(jax.grad(_loss(layer, weights), argnums))(*args)
    reference = jax.jit(jax.grad(_loss(plain, weights), argnums))(*args)
    for name, got, want in zip(names, ours, reference, strict=True):
        assert got.shape == want.shape, name
        scale = float(jnp.abs(want).max())
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=2e-5 * scale, err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_forward_equals_the_plain_scan(cell):
    """The layers' own loops (the ones their backward passes belong to) carry
    the state as a plain scan of the same cell does; the cell's arithmetic is
    checked against float64 NumPy in test_model.py."""
    layer, plain, inputs, _ = CELLS[cell]
    args = inputs(23, 2, 5, 8, seed=3)
    # A GPU sums the layer norm's statistics in another order than the plain
    # scan's: 3.1e-6 apart on an H200 (2026-12-04), against under 1e-6 on a CPU
    # with JAX 0.10 (Python 3.11's); the CPU's XLA of JAX 0.12 (newer Pythons')
    # orders them otherwise too: 2.1e-6 (2026-12-06).
    same_order = jax.default_backend() == "cpu" and jax.__version__.startswith("0.10.")
    atol = 1e-6 if same_order else 1e-5
    for got, want in zip(layer(*args), plain(*args), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=atol)


def test_lstm_layer_reads_windows_of_one_and_zero_characters():
    xs, w_x, b, w_h, h0, c0 = lstm_inputs(1, 2, 5, 8, seed=4)
    params = {"w_x": w_x, "w_h": w_h, "b": b}
    layer = LSTMLayer(8)
    hs, (h, c) = layer.apply({"params": params}, xs, (h0, c0))
    want_hs, want_h, want_c = plain_lstm(xs, w_x, b, w_h, h0, c0)
    np.testing.assert_allclose(np.asarray(hs), np.asarray(want_hs), atol=1e-6)
    np.testing.assert_allclose(np.asarray(h), np.asarray(want_h), atol=1e-6)
    np.testing.assert_allclose(np.asarray(c), np.asarray(want_c), atol=1e-6)
    # An empty prime reads nothing and leaves the state as it was.
    hs, (h, c) = layer.apply({"params": params}, xs[:0], (h0, c0))
    assert hs.shape == (0, 2, 8)
    np.testing.assert_array_equal(np.asarray(h), np.asarray(h0))
    np.testing.assert_array_equal(np.asarray(c), np.asarray(c0))


def test_gru_layer_reads_windows_of_one_and_zero_characters():
    xs, w_x, b, w_h, w_hn, h0 = gru_inputs(1, 2, 5, 8, seed=5)
    c0 = jnp.zeros_like(h0)  # a GRU's cell-state slot
    params = {"w_x": w_x, "w_h": w_h, "w_hn": w_hn, "b": b}
    layer = GRULayer(8)
    hs, (h, c) = layer.apply({"params": params}, xs, (h0, c0))
    want_hs, want_h = plain_gru(xs, w_x, b, w_h, w_hn, h0)
    np.testing.assert_allclose(np.asarray(hs), np.asarray(want_hs), atol=1e-6)
    np.testing.assert_allclose(np.asarray(h), np.asarray(want_h), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(c), 0.0)
    hs, (h, c) = layer.apply({"params": params}, xs[:0], (h0, c0))
    assert hs.shape == (0, 2, 8)
    np.testing.assert_array_equal(np.asarray(h), np.asarray(h0))


# Documents (core/model.py): where a step's input is the boundary symbol, the
# layer reads it from a zero state. The plain scans, with that restart.
def _restart(state, r_t):
    return jax.tree_util.tree_map(lambda x: jnp.where(r_t[:, None], 0.0, x), state)


def plain_lstm_restarting(resets, xs, w_x, b, w_h, h0, c0):
    def step(state, at_t):
        x_t, r_t = at_t
        h_prev, c_prev = _restart(state, r_t)
        h, c = lstm_update(x_t @ w_x + b + h_prev @ w_h, c_prev)
        return (h, c), h

    (h, c), hs = jax.lax.scan(step, (h0, c0), (xs, resets))
    return hs, h, c


def plain_gru_restarting(resets, xs, w_x, b, w_h, w_hn, h0):
    def step(h, at_t):
        x_t, r_t = at_t
        h = gru_update(x_t @ w_x + b, _restart(h, r_t), w_h, w_hn)
        return h, h

    h, hs = jax.lax.scan(step, h0, (xs, resets))
    return hs, h


def plain_ln_lstm_restarting(resets, xs, *weights_and_state):
    p = _ln_params(*weights_and_state[:-2])

    def step(state, at_t):
        zx_t, r_t = at_t
        *_, h, c = ln_lstm_step(p, zx_t, *_restart(state, r_t))
        return (h, c), h

    (h, c), hs = jax.lax.scan(step, weights_and_state[-2:], (ln_lstm_input(p, xs), resets))
    return hs, h, c


RESTARTING = {
    "lstm": (lambda r, *a: lstm_layer(*a, r), plain_lstm_restarting),
    "gru": (lambda r, *a: gru_layer(*a, r), plain_gru_restarting),
    "lstm-layer-norm": (
        lambda r, xs, *w: ln_lstm_layer(_ln_params(*w[:-2]), xs, *w[-2:], r),
        plain_ln_lstm_restarting,
    ),
}


@pytest.mark.parametrize("cell", CELLS)
def test_restarts_at_the_boundary_equal_autodiff_of_the_plain_scan(cell):
    """Forward values and every gradient with the state zeroed at some steps
    of some streams (the first step of one of them too): nothing flows back
    across a restart."""
    _, _, inputs, names = CELLS[cell]
    layer, plain = RESTARTING[cell]
    args = inputs(19, 3, 5, 8, seed=6)
    resets = jnp.asarray(np.random.default_rng(7).random((19, 3)) < 0.15).at[0, 1].set(True)
    for got, want in zip(jax.jit(layer)(resets, *args), jax.jit(plain)(resets, *args), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-6)
    outs = jax.eval_shape(layer, resets, *args)
    weights = tuple(_normal(np.random.default_rng(8), *out.shape) for out in outs)
    argnums = tuple(range(1, len(args) + 1))
    ours = jax.jit(jax.grad(_loss(layer, weights), argnums))(resets, *args)
    reference = jax.jit(jax.grad(_loss(plain, weights), argnums))(resets, *args)
    for name, got, want in zip(names, ours, reference, strict=True):
        scale = float(jnp.abs(want).max())
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=2e-5 * scale, err_msg=name)
    # A stream restarted at its first step never reads the carried state.
    initial = names.index("h0")
    np.testing.assert_array_equal(np.asarray(ours[initial])[1], 0.0)
