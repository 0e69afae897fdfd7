"""The character model: embedding, stacked LSTM (or GRU) layers, dense head.

Shape legend used in the comments below:
    B batch (independent text streams), T time (characters in a window),
    E embedding width, H hidden size, L layers, V vocabulary size,
    D a layer's input width (E for the first layer, H after it).

The model is Flax Linen: parameters are a plain nested dict, `apply` is a
pure function, and the recurrence is a `jax.lax.scan` with a hand-written
backward pass for each cell (`lstm.py`, `ln_lstm.py`, `gru.py`; `cells.py`
says why) over windows of two characters or more; the plain LSTM and the GRU
take a one-character window (every sampling step) without a loop, under
autodiff. That keeps
the training step a pure `(state, batch, hyper) -> (state, metrics)` function and
the checkpoint a plain tree of named arrays.

Applied with the "intermediates" collection mutable, every recurrent layer
also records its gates and states at each step (`charlstm inspect` reads
them; see `charlstm.introspect.record`), computed by the same forward pass as training's.

A model of several documents (`config.boundary_id` set) zeroes every layer's
state wherever it reads the document boundary symbol, in training, scoring
and sampling alike: a document's first character is predicted from the
boundary and a zero state only, never from the end of the document before.
"""

from __future__ import annotations

import functools
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp

from charlstm.config import ModelConfig
from charlstm.core.cells import Resets, dot, restart
from charlstm.core.gru import gru_layer, gru_record, gru_update
from charlstm.core.ln_lstm import ln_lstm_layer, ln_lstm_record
from charlstm.core.lstm import lstm_layer, lstm_record, lstm_update

# The recurrent state of the whole stack: (h, c), each (L, B, H).
Carry = tuple[jax.Array, jax.Array]
Params = Any
LayerCarry = tuple[jax.Array, jax.Array]  # one layer's (h, c), (B, H) each
RECORDED = "intermediates"  # the Flax collection the layers record into


def layer_name(config: ModelConfig, layer: int) -> str:
    """The parameter group of recurrent layer `layer`: "lstm_0", "gru_1", ..."""
    return f"{config.cell}_{layer}"


def _record(layer: nn.Module, recorded: dict[str, jax.Array]) -> None:
    """Keep a layer's per-step gates and states, (T, B, H) each, in RECORDED."""
    for name, values in recorded.items():
        layer.sow(RECORDED, name, values)


def _gate_bias_init(forget_bias: float, blocks: int = 4) -> Any:
    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        del key
        hidden = shape[0] // blocks
        # A positive bias on the second block (the LSTM's forget gate, the
        # GRU's update gate) starts every unit remembering, so gradients flow
        # through the state over long spans from the first step of training.
        return jnp.zeros(shape, dtype).at[hidden : 2 * hidden].set(forget_bias)

    return init


class LSTMLayer(nn.Module):
    """One LSTM layer over a whole window, time-major."""

    hidden_size: int
    forget_bias: float = 1.0
    norm: str = "none"  # "layer": the layer-normalised cell (ln_lstm.ln_lstm_layer)
    precision: str = "fp32"  # "bf16": the matrix products in bfloat16 (see cells.py)

    @nn.compact
    def __call__(self, xs: jax.Array, carry: LayerCarry, resets: Resets = None) -> tuple[jax.Array, LayerCarry]:
        """xs (T, B, D) and carry (h, c) each (B, H) -> hs (T, B, H), final (h, c)."""
        hidden = self.hidden_size
        w_x = self.param("w_x", nn.initializers.lecun_normal(), (xs.shape[-1], 4 * hidden))
        w_h = self.param("w_h", nn.initializers.orthogonal(), (hidden, 4 * hidden))
        b = self.param("b", _gate_bias_init(self.forget_bias), (4 * hidden,))
        w_x, w_h = _compute(self.precision, w_x, w_h)
        if xs.shape[0] == 0:  # no characters (T = 0): nothing to read, and the scans below need one
            return jnp.zeros((0, *carry[0].shape), xs.dtype), carry
        if self.norm == "layer":
            ones, zeros = nn.initializers.ones, nn.initializers.zeros
            p = {"w_x": w_x, "w_h": w_h, "b": b}
            p |= {name: self.param(name, ones, (4 * hidden,)) for name in ("gain_x", "gain_h")}
            p |= {"gain_c": self.param("gain_c", ones, (hidden,)), "bias_c": self.param("bias_c", zeros, (hidden,))}
            if self.is_mutable_collection(RECORDED):
                hs, h, c, recorded = ln_lstm_record(p, xs, *carry, resets)
                _record(self, recorded)
                return hs, (h, c)
            hs, h, c = ln_lstm_layer(p, xs, *carry, resets)  # hs (T, B, H)
            return hs, (h, c)
        if self.is_mutable_collection(RECORDED):
            hs, h, c, recorded = lstm_record(xs, w_x, b, w_h, *carry, resets)
            _record(self, recorded)
            return hs, (h, c)
        # One character (generation; or training with --seq-len 1, which
        # autodiff then differentiates through lstm_update): no loop.
        if xs.shape[0] == 1:
            h_prev, c_prev = _restarted(carry, resets)
            z = dot(xs[0], w_x, w_x.dtype) + b + dot(h_prev, w_h, w_h.dtype)  # (B, 4H); bf16 as a window's are
            h, c = lstm_update(z, c_prev)  # (B, H) each
            return h[None], (h, c)
        # A window: the whole recurrence with its hand-written backward pass
        # (see cells.py for why, and what it measured).
        hs, h, c = lstm_layer(xs, w_x, b, w_h, *carry, resets)  # hs (T, B, H)
        return hs, (h, c)


class GRULayer(nn.Module):
    """One GRU layer over a whole window, time-major: the lighter recurrent
    cell (three gate blocks instead of four, no separate cell state).

        r = sigmoid(W_xr x + W_hr h + b_r)          reset gate
        u = sigmoid(W_xu x + W_hu h + b_u)          update gate
        n = tanh(W_xn x + W_hn (r * h) + b_n)       candidate state
        h' = (1 - u) * n + u * h

    The carry keeps the LSTM's (h, c) shape so that both cells share one
    training state layout; a GRU has no cell state, and its c stays zero.
    """

    hidden_size: int
    update_bias: float = 1.0  # like the LSTM's forget bias: start out keeping h
    precision: str = "fp32"  # "bf16": the matrix products in bfloat16 (see cells.py)

    @nn.compact
    def __call__(self, xs: jax.Array, carry: LayerCarry, resets: Resets = None) -> tuple[jax.Array, LayerCarry]:
        """xs (T, B, D) and carry (h, c) each (B, H) -> hs (T, B, H), final (h, c)."""
        hidden = self.hidden_size
        w_x = self.param("w_x", nn.initializers.lecun_normal(), (xs.shape[-1], 3 * hidden))  # [r | u | n]
        w_h = self.param("w_h", nn.initializers.orthogonal(), (hidden, 2 * hidden))  # [r | u]
        w_hn = self.param("w_hn", nn.initializers.orthogonal(), (hidden, hidden))
        b = self.param("b", _gate_bias_init(self.update_bias, blocks=3), (3 * hidden,))
        w_x, w_h, w_hn = _compute(self.precision, w_x, w_h, w_hn)
        h_last, c = carry
        if xs.shape[0] == 0:  # no characters (T = 0): nothing to read, and the scans below need one
            return jnp.zeros((0, *h_last.shape), xs.dtype), carry
        if self.is_mutable_collection(RECORDED):
            hs, h, recorded = gru_record(xs, w_x, b, w_h, w_hn, h_last, resets)
            _record(self, {**recorded, "c": jnp.zeros_like(hs)})
            return hs, (h, c)
        if xs.shape[0] == 1:  # one character (generation, or --seq-len 1 through autodiff): no loop
            h = gru_update(dot(xs[0], w_x, w_x.dtype) + b, _restarted(carry, resets)[0], w_h, w_hn)  # (B, H)
            return h[None], (h, c)
        # A window: the recurrence with its hand-written backward pass (gru.py).
        hs, h = gru_layer(xs, w_x, b, w_h, w_hn, h_last, resets)  # hs (T, B, H)
        return hs, (h, c)


def _compute(precision: str, *weights: jax.Array) -> tuple[jax.Array, ...]:
    """The weight matrices as the cells multiply with them: cast to bfloat16
    for mixed precision (the float32 parameters stay the master copy, and
    their gradients come back through the cast), else as they are."""
    if precision == "bf16":
        return tuple(w.astype(jnp.bfloat16) for w in weights)
    return weights


def _restarted(carry: LayerCarry, resets: Resets) -> LayerCarry:
    """A one-character window's carry as it reads it: zero where the character is the boundary symbol."""
    h, c = (restart(x, None if resets is None else resets[0]) for x in carry)
    return h, c


def row_keys(key: jax.Array, batch: int, first: jax.Array | int = 0) -> jax.Array:
    """key -> (B, 2) keys for rows first .. first + B - 1, row r's being fold_in(key, r).

    A row's randomness (its dropout masks in training, its draws in sampling)
    then depends on its own index alone, not on how many rows are batched
    with it or on which device holds it."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, first + jnp.arange(batch))


def _dropped(x: jax.Array, keys: jax.Array, layer: int, rate: float) -> jax.Array:
    """x (T, B, H) with units dropped at `rate`, row b's mask drawn from keys[b] alone."""

    def mask(key: jax.Array) -> jax.Array:
        return jax.random.bernoulli(jax.random.fold_in(key, layer), 1.0 - rate, (x.shape[0], x.shape[2]))  # (T, H)

    keep = jax.vmap(mask, out_axes=1)(keys)  # (T, B, H)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


class CharLSTM(nn.Module):
    """Embedding, `num_layers` recurrent layers (LSTM, or GRU with
    `config.cell == "gru"`), and a dense head over the vocabulary.

    With the RECORDED collection mutable, layer l's gates and states at every
    step are kept under `layer_name(config, l)`: i, f, g, o, c, h for an LSTM;
    r, u, n, h for a GRU, and a zero c (see `charlstm.introspect.record`)."""

    config: ModelConfig
    # How the matrix products are computed (TrainConfig.precision): a property
    # of a training step, not of the model, so sampling and scoring use float32.
    precision: str = "fp32"

    @nn.compact
    def __call__(
        self, tokens: jax.Array, carry: Carry, dropout: float = 0.0, keys: jax.Array | None = None
    ) -> tuple[jax.Array, Carry]:
        """tokens (B, T) int -> logits (B, T, V) and the carry after the window.

        With `keys` (B, 2), one per row, and a `dropout` rate, each layer's
        output (what the next layer or the head reads, never the recurrent
        state) is dropped at that rate, as in Zaremba, Sutskever and Vinyals
        (2014); without, nothing is. A row's mask depends only on its own key,
        so splitting the rows over devices does not change the masks."""
        cfg = self.config
        # Time-major inside: scan walks the leading axis, and transposing the
        # small int token array is cheaper than transposing activations.
        x = nn.Embed(cfg.vocab_size, cfg.embed_dim, name="embed")(tokens.T)  # (T, B, E)
        # boundary_id is a Python value: a model of one document gets
        # resets=None, and its program contains no selects.
        resets = None if cfg.boundary_id is None else cfg.boundary_id == tokens.T  # (T, B)
        h0, c0 = carry  # (L, B, H) each
        hs, cs = [], []
        for layer in range(cfg.num_layers):
            name = layer_name(cfg, layer)
            if cfg.cell == "lstm":
                cell: nn.Module = LSTMLayer(cfg.hidden_size, cfg.forget_bias, cfg.norm, self.precision, name=name)
            else:
                cell = GRULayer(cfg.hidden_size, update_bias=cfg.forget_bias, precision=self.precision, name=name)
            x, (h, c) = cell(x, (h0[layer], c0[layer]), resets)  # x (T, B, H)
            if keys is not None and dropout > 0:
                x = _dropped(x, keys, layer, dropout)
            hs.append(h)
            cs.append(c)
        # bf16: the product in bfloat16 with a float32 result, as the cells'
        # (`cells.dot`); the bias and the logits stay float32.
        dot_general = _bf16_dot_general if self.precision == "bf16" else jax.lax.dot_general
        logits = nn.Dense(cfg.vocab_size, dot_general=dot_general, name="head")(x)  # (T, B, V)
        # (B, T, V) logits as the caller's tokens are laid out; (L, B, H) each for the carry.
        return jnp.swapaxes(logits, 0, 1), (jnp.stack(hs), jnp.stack(cs))


def _bf16_dot_general(lhs: jax.Array, rhs: jax.Array, dimensions: Any, **kwargs: Any) -> jax.Array:
    """`jax.lax.dot_general` of the operands rounded to bfloat16, accumulated
    and returned in float32 (Flax's `dtype=bfloat16` would return bfloat16
    logits, rounding them to about three digits)."""
    kwargs["preferred_element_type"] = jnp.float32
    return jax.lax.dot_general(lhs.astype(jnp.bfloat16), rhs.astype(jnp.bfloat16), dimensions, **kwargs)


def forward(
    model: CharLSTM,
    params: Params,
    tokens: jax.Array,
    carry: Carry,
    dropout: float = 0.0,
    keys: jax.Array | None = None,
) -> tuple[jax.Array, Carry]:
    """tokens (B, T) -> logits (B, T, V) and the carry after them (dropout
    only in training, with a key per row)."""
    return cast(tuple[jax.Array, Carry], model.apply({"params": params}, tokens, carry, dropout, keys))


def zero_carry(config: ModelConfig, batch: int) -> Carry:
    shape = (config.num_layers, batch, config.hidden_size)  # (L, B, H)
    return jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)


def init_params(config: ModelConfig, key: jax.Array) -> Params:
    tokens = jnp.zeros((1, 1), jnp.int32)
    return CharLSTM(config).init(key, tokens, zero_carry(config, 1))["params"]


def count_params(params: Params) -> int:
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


def product_weights(config: ModelConfig) -> int:
    """The weights of the model's matrix products, counted (not traced), one
    multiply-add each a character: each layer's gates over its input and its
    state, and the head. Its parameters less the embedding, biases and gains."""
    gates, h = (4 if config.cell == "lstm" else 3), config.hidden_size
    return gates * h * (config.embed_dim + h) + (config.num_layers - 1) * gates * h * 2 * h + h * config.vocab_size


@functools.lru_cache(maxsize=64)  # `charlstm runs` counts every run's: a trace each
def count_params_of_shape(config: ModelConfig) -> int:
    """Parameters of a model of this shape, without creating them."""
    return count_params(jax.eval_shape(lambda: init_params(config, jax.random.PRNGKey(0))))


def grow_vocab(params: Params, new_size: int) -> Params:
    """The parameters of a model over more characters: ids below the old
    vocabulary size keep their embedding rows, head columns and biases bit
    for bit; a new one starts with the means of the old embedding rows and
    head columns and the lowest old bias, an average and unlikely character.
    So every old character's logit is unchanged at first, and with it the
    old characters' probabilities relative to one another; the new ones take
    a little of the mass."""
    embed = params["embed"]["embedding"]  # (V, E)
    kernel, bias = params["head"]["kernel"], params["head"]["bias"]  # (H, V), (V,)
    extra = new_size - embed.shape[0]
    if extra <= 0:
        return params
    rows = jnp.broadcast_to(embed.mean(axis=0), (extra, embed.shape[1]))  # (extra, E)
    columns = jnp.broadcast_to(kernel.mean(axis=1, keepdims=True), (kernel.shape[0], extra))  # (H, extra)
    return {
        **params,
        "embed": {"embedding": jnp.concatenate([embed, rows])},  # (V', E)
        "head": {
            "kernel": jnp.concatenate([kernel, columns], axis=1),
            "bias": jnp.concatenate([bias, jnp.full(extra, bias.min())]),
        },
    }
