"""The LSTM layer against an independent float64 NumPy implementation of the
textbook equations, and the stacked model's carry semantics."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from charlstm.config import ModelConfig
from charlstm.core.model import CharLSTM, GRULayer, LSTMLayer, count_params, init_params, zero_carry
from charlstm.errors import ConfigError


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_layer_norm(x):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)


def numpy_lstm(xs, h, c, w_x, w_h, b, ln=None):
    """xs (T, B, D); gates in the order i, f, g, o; one time step per loop.
    With `ln` (gain_x, gain_h, gain_c, bias_c): Ba, Kiros and Hinton's
    layer-normalised cell."""
    hidden = h.shape[-1]
    norm = _numpy_layer_norm if ln else (lambda x: x)
    ln = ln or {"gain_x": 1.0, "gain_h": 1.0, "gain_c": 1.0, "bias_c": 0.0}
    outputs = []
    for x_t in xs:
        z = norm(x_t @ w_x) * ln["gain_x"] + norm(h @ w_h) * ln["gain_h"] + b
        i = _sigmoid(z[:, 0 * hidden : 1 * hidden])
        f = _sigmoid(z[:, 1 * hidden : 2 * hidden])
        g = np.tanh(z[:, 2 * hidden : 3 * hidden])
        o = _sigmoid(z[:, 3 * hidden : 4 * hidden])
        c = f * c + i * g
        h = o * np.tanh(norm(c) * ln["gain_c"] + ln["bias_c"])
        outputs.append(h)
    return np.stack(outputs), h, c


def test_lstm_layer_matches_numpy_float64_reference():
    T, B, D, H = 17, 3, 5, 8
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(T, B, D)).astype(np.float32)
    h0 = rng.normal(size=(B, H)).astype(np.float32) * 0.5
    c0 = rng.normal(size=(B, H)).astype(np.float32) * 0.5
    layer = LSTMLayer(H)
    params = layer.init(jax.random.PRNGKey(0), xs, (h0, c0))["params"]
    # Random weights everywhere (not the initialisers' values), biases included.
    params = {
        "w_x": jnp.asarray(rng.normal(size=(D, 4 * H)), jnp.float32) * 0.7,
        "w_h": jnp.asarray(rng.normal(size=(H, 4 * H)), jnp.float32) * 0.7,
        "b": jnp.asarray(rng.normal(size=(4 * H,)), jnp.float32),
    }
    hs, (h, c) = layer.apply({"params": params}, xs, (h0, c0))
    f64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    ref_hs, ref_h, ref_c = numpy_lstm(
        xs.astype(np.float64), h0.astype(np.float64), c0.astype(np.float64), f64["w_x"], f64["w_h"], f64["b"]
    )
    np.testing.assert_allclose(np.asarray(hs), ref_hs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(h), ref_h, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(c), ref_c, atol=1e-5, rtol=0)


def test_layer_normalised_lstm_matches_numpy_float64_reference():
    T, B, D, H = 11, 3, 5, 8
    rng = np.random.default_rng(5)
    xs = rng.normal(size=(T, B, D)).astype(np.float32)
    h0, c0 = (rng.normal(size=(B, H)).astype(np.float32) * 0.5 for _ in range(2))
    layer = LSTMLayer(H, norm="layer")
    shapes = jax.tree_util.tree_map(jnp.shape, layer.init(jax.random.PRNGKey(0), xs, (h0, c0))["params"])
    assert shapes == {"w_x": (D, 4 * H), "w_h": (H, 4 * H), "b": (4 * H,), "gain_x": (4 * H,), "gain_h": (4 * H,)} | {
        "gain_c": (H,),
        "bias_c": (H,),
    }
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) * 0.7 for k, s in shapes.items()}
    hs, (h, c) = layer.apply({"params": params}, xs, (h0, c0))
    f64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    weights = [f64.pop(name) for name in ("w_x", "w_h", "b")]
    ref = numpy_lstm(xs.astype(np.float64), h0.astype(np.float64), c0.astype(np.float64), *weights, ln=f64)
    for got, want in zip((hs, h, c), ref, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=0)


def numpy_gru(xs, h, w_x, w_h, w_hn, b):
    """xs (T, B, D); blocks in the order reset r, update u, candidate n."""
    hidden = h.shape[-1]
    outputs = []
    for x_t in xs:
        zx = x_t @ w_x + b
        r = _sigmoid(zx[:, :hidden] + h @ w_h[:, :hidden])
        u = _sigmoid(zx[:, hidden : 2 * hidden] + h @ w_h[:, hidden:])
        n = np.tanh(zx[:, 2 * hidden :] + (r * h) @ w_hn)
        h = (1 - u) * n + u * h
        outputs.append(h)
    return np.stack(outputs), h


def test_gru_layer_matches_numpy_float64_reference():
    T, B, D, H = 17, 3, 5, 8
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(T, B, D)).astype(np.float32)
    h0 = rng.normal(size=(B, H)).astype(np.float32) * 0.5
    c0 = np.zeros((B, H), np.float32)
    layer = GRULayer(H)
    shapes = jax.tree_util.tree_map(np.shape, layer.init(jax.random.PRNGKey(0), xs, (h0, c0))["params"])
    assert shapes == {"w_x": (D, 3 * H), "w_h": (H, 2 * H), "w_hn": (H, H), "b": (3 * H,)}
    params = {k: jnp.asarray(rng.normal(size=shape), jnp.float32) * 0.7 for k, shape in shapes.items()}
    hs, (h, c) = layer.apply({"params": params}, xs, (h0, c0))
    f64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    weights = (f64[k] for k in ("w_x", "w_h", "w_hn", "b"))
    ref_hs, ref_h = numpy_gru(xs.astype(np.float64), h0.astype(np.float64), *weights)
    np.testing.assert_allclose(np.asarray(hs), ref_hs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(h), ref_h, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(np.asarray(c), 0.0)  # a GRU has no cell state
    # One character at a time (generation) gives the same states as the scan.
    h1, (h_step, _) = layer.apply({"params": params}, xs[:1], (h0, c0))
    np.testing.assert_allclose(np.asarray(h1[0]), np.asarray(hs[0]), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(h_step), np.asarray(h1[0]))


def test_a_gru_model_is_lighter_and_starts_with_the_update_gate_keeping_h():
    lstm = ModelConfig(vocab_size=7, embed_dim=4, hidden_size=6, num_layers=2, norm="none")
    gru = ModelConfig(vocab_size=7, embed_dim=4, hidden_size=6, num_layers=2, cell="gru")
    params = init_params(gru, jax.random.PRNGKey(0))
    assert set(params) == {"embed", "gru_0", "gru_1", "head"}
    np.testing.assert_array_equal(np.asarray(params["gru_0"]["b"])[6:12], 1.0)
    recurrent = lambda p: sum(count_params(p[k]) for k in p if k not in ("embed", "head"))  # noqa: E731
    assert recurrent(params) == 3 * recurrent(init_params(lstm, jax.random.PRNGKey(0))) // 4


def test_forget_gate_bias_starts_at_one():
    cfg = ModelConfig(vocab_size=7, embed_dim=4, hidden_size=6, num_layers=2)
    params = init_params(cfg, jax.random.PRNGKey(0))
    b = np.asarray(params["lstm_0"]["b"])
    np.testing.assert_array_equal(b[6:12], 1.0)
    np.testing.assert_array_equal(np.delete(b, np.s_[6:12]), 0.0)
    # A bias float32 cannot hold, or NaN, is refused: it would make every loss NaN.
    for bad in (float("nan"), 1e300, -101):
        with pytest.raises(ConfigError, match="forget_bias must be between -100 and 100"):
            ModelConfig(vocab_size=7, forget_bias=bad)


def _model(cfg):
    params = init_params(cfg, jax.random.PRNGKey(1))
    return CharLSTM(cfg), params


CELL_KINDS = pytest.mark.parametrize(("cell", "norm"), [("lstm", "none"), ("lstm", "layer"), ("gru", "none")])


@CELL_KINDS
def test_carried_state_makes_two_windows_equal_one_long_window(cell, norm):
    cfg = ModelConfig(vocab_size=11, embed_dim=4, hidden_size=8, num_layers=3, cell=cell, norm=norm)
    model, params = _model(cfg)
    tokens = jax.random.randint(jax.random.PRNGKey(2), (2, 20), 0, 11)
    whole, carry_whole = model.apply({"params": params}, tokens, zero_carry(cfg, 2))
    first, carry = model.apply({"params": params}, tokens[:, :12], zero_carry(cfg, 2))
    second, carry = model.apply({"params": params}, tokens[:, 12:], carry)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-6)
    for a, b in zip(carry, carry_whole, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_shapes_and_parameter_count():
    cfg = ModelConfig(vocab_size=65, embed_dim=16, hidden_size=32, num_layers=2, norm="none")
    model, params = _model(cfg)
    logits, (h, c) = model.apply({"params": params}, jnp.zeros((4, 9), jnp.int32), zero_carry(cfg, 4))
    assert logits.shape == (4, 9, 65)
    assert h.shape == c.shape == (2, 4, 32)
    expected = 65 * 16 + (16 * 128 + 32 * 128 + 128) + (32 * 128 + 32 * 128 + 128) + (32 * 65 + 65)
    assert count_params(params) == expected
    # The default LSTM is layer-normalised: gains for the input and state
    # products (4H each), gain and bias for the cell state (H each), per layer.
    default = dataclasses.replace(cfg, norm="auto")
    assert default.norm == "layer" and ModelConfig(vocab_size=65, cell="gru").norm == "none"
    assert count_params(_model(default)[1]) == expected + 2 * (2 * 128 + 2 * 32)


@CELL_KINDS
def test_one_character_at_a_time_equals_the_scanned_window(cell, norm):
    """Generation feeds one character per call (the plain cells take a
    shortcut without a loop); it must agree with the scan over a whole window."""
    cfg = ModelConfig(vocab_size=11, embed_dim=4, hidden_size=8, num_layers=2, cell=cell, norm=norm)
    model, params = _model(cfg)
    tokens = jax.random.randint(jax.random.PRNGKey(3), (2, 9), 0, 11)
    whole, carry_whole = model.apply({"params": params}, tokens, zero_carry(cfg, 2))
    carry, steps = zero_carry(cfg, 2), []
    for t in range(9):
        logits, carry = model.apply({"params": params}, tokens[:, t : t + 1], carry)
        steps.append(logits)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), whole, atol=1e-6)
    for a, b in zip(carry, carry_whole, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_fresh_state_of_any_seed_is_drawn_from_that_seeds_key_by_one_program():
    """The seed is an argument of the compiled initialisation, not part of
    its key: every seed shares one program and still gets the parameters
    and key its eager PRNGKey(seed) gives (a seed wrapped to 32 bits as
    eager PRNGKey wraps it), so runs started before the change resume and
    sample the same."""
    from charlstm.config import SEEDS, TrainConfig
    from charlstm.core import state

    config = ModelConfig(vocab_size=11, hidden_size=8, embed_dim=4)
    before = state._init_state._cache_size()
    for seed in (0, 7, -1, *SEEDS):
        fresh = state.init_state(config, TrainConfig(batch_size=2, seed=seed))
        init_key, rng = jax.random.split(jax.random.PRNGKey(seed))
        expected = init_params(config, init_key)
        assert jax.tree.all(jax.tree.map(np.array_equal, fresh.params, expected))
        assert np.array_equal(fresh.rng, rng)
    assert state._init_state._cache_size() - before <= 1
