"""Recording what the recurrent layers do, character by character.

`record` reads a text the way `eval` reads one stream: from a zero state, in
windows of EVAL_WINDOW characters with the state carried from window to
window. For every character and layer it keeps the gates, the cell state, the
hidden state, and the distribution of the next character. Position t always
holds the values after reading character t.

Nothing here knows how a cell is wired: the model itself records its gates
and states as it reads (`CharLSTM` applied with its RECORDED collection
mutable; see `core/model.py`), from the same forward pass that training
differentiates, so a new cell brings its own inspector.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from charlstm.arguments import whole_number
from charlstm.config import ModelConfig
from charlstm.core.cells import GATES
from charlstm.core.model import RECORDED, CharLSTM, Params, layer_name, zero_carry
from charlstm.core.scorer import EVAL_WINDOW
from charlstm.errors import ConfigError, CorpusError
from charlstm.flags import flag
from charlstm.text.vocab import BOUNDARY, Vocab
from charlstm.units import bits

MAX_CHARS = 2000  # default cap on the characters read: the arrays grow with it
SATURATED_LOW, SATURATED_HIGH = 0.1, 0.9  # as in Karpathy, Johnson and Fei-Fei (2015)
Saturation = Mapping[str, tuple[np.ndarray, np.ndarray]]  # sigmoid gate -> (left, right), each (L, H)

# The candidates (g, n) are tanh, not gates in [0, 1]: saturation leaves them out.
SIGMOID_GATES = {"lstm": ("i", "f", "o"), "gru": ("r", "u")}
LABELS = {
    "c": "cell state",
    "h": "hidden state",
    "i": "input gate",
    "f": "forget gate",
    "g": "candidate",
    "o": "output gate",
    "r": "reset gate",
    "u": "update gate",
    "n": "candidate",
}


@dataclass(frozen=True, eq=False)
class Inspection:
    """What a model did on a text. Shapes: L layers, N characters read, H
    units per layer, V vocabulary; layers and units are counted from 0, and
    index t along N holds the values after reading `text[t]`.

    For a GRU, `gates` holds r, u and n, and `c` is all zeros: the cell has
    no separate state (the model carries a zero c in its place).
    """

    text: str  # the N characters read (characters outside the vocabulary left out)
    vocab: Vocab
    cell: str  # "lstm" or "gru"
    gates: Mapping[str, np.ndarray]  # name -> (L, N, H) float32: LSTM i, f, g, o; GRU r, u, n
    c: np.ndarray  # (L, N, H) float32 cell state
    h: np.ndarray  # (L, N, H) float32 hidden state
    probs: np.ndarray  # (N, V) float32: p(next character | text[: t + 1])
    losses: np.ndarray  # (N - 1,) float32 nats: -ln p(text[t + 1] | text[: t + 1])
    skipped: Mapping[str, int] = field(default_factory=dict)  # characters left out (not in the vocabulary): count
    truncated: int = 0  # characters after the first max_chars, not read
    model: str = ""  # the model in words, ModelConfig.describe(): "2x256 LSTM"

    def __repr__(self) -> str:
        # The dataclass's own printed every array (94 lines for 60 characters in a notebook).
        layers, _, units = self.h.shape
        scored = f", {self.bits_per_char:.3f} bits per character" if self.losses.size else ""
        return (
            f"<charlstm.Inspection {self.model or self.cell}, {self.text_chars:,} characters read, "
            f"{layers} x {units} units{scored}>"
        )

    @property
    def text_chars(self) -> int:
        """The characters of the text given that were read: N, less the
        symbols that mark documents, which a model of several reads before
        each (a text given as documents is read so)."""
        return len(self.text) - self.text.count(BOUNDARY)

    @property
    def loss(self) -> float:
        """Mean loss in nats per character, what `eval` reports for one stream."""
        return float(np.mean(self.losses, dtype=np.float64))

    @property
    def bits_per_char(self) -> float:
        return bits(self.loss)

    @property
    def states(self) -> dict[str, np.ndarray]:
        """The recurrent state: c and h, or h alone for a GRU."""
        return {"c": self.c, "h": self.h} if self.cell == "lstm" else {"h": self.h}

    @property
    def quantities(self) -> dict[str, np.ndarray]:
        """Everything recorded per unit: the states, then the gates."""
        return {**self.states, **self.gates}

    def top_predictions(self, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The k likeliest next characters after each position: ids (N, k)
        and their probabilities (N, k), likeliest first."""
        k = min(k, self.probs.shape[1])
        ids = np.argsort(-self.probs, axis=1, kind="stable")[:, :k]  # (N, k)
        return ids, np.take_along_axis(self.probs, ids, axis=1)

    def saturation(self, low: float = SATURATED_LOW, high: float = SATURATED_HIGH) -> Saturation:
        """Sigmoid gate -> (left, right), each (L, H): the fraction of the N
        steps each unit spent below `low` and above `high`."""
        return {
            name: ((self.gates[name] < low).mean(axis=1), (self.gates[name] > high).mean(axis=1))
            for name in SIGMOID_GATES[self.cell]
        }


def record(
    config: ModelConfig,
    params: Params,
    vocab: Vocab,
    text: str,
    *,
    skipped: Mapping[str, int] | None = None,
    truncated: int = 0,
) -> Inspection:
    """Run the model over `text` (every character in `vocab`, at least 2)
    and keep everything `Inspection` describes."""
    if len(text) < 2:
        raise CorpusError("text to inspect needs at least 2 characters (one to read, one to predict)")
    ids = vocab.encode(text)  # (N,)
    n, layers, hidden = len(ids), config.num_layers, config.hidden_size
    names = ("c", "h", *GATES[config.cell])
    kept = {name: np.zeros((layers, n, hidden), np.float32) for name in names}
    probs = np.empty((n, config.vocab_size), np.float32)
    losses = np.empty(n, np.float32)
    # Padding repeats the last character; its outputs are cut off below and,
    # coming last, it cannot change what was recorded before it.
    pad = -n % EVAL_WINDOW
    inputs = np.concatenate([ids, np.full(pad, ids[-1], np.int32)])
    targets = np.concatenate([ids[1:], np.full(pad + 1, ids[-1], np.int32)])
    window = _window_fn(config)
    carry = zero_carry(config, 1)
    for start in range(0, n, EVAL_WINDOW):
        span = slice(start, start + EVAL_WINDOW)
        got, window_probs, window_losses, carry = window(params, inputs[span], targets[span], carry)
        stop = min(n, start + EVAL_WINDOW) - start
        for name, values in got.items():
            kept[name][:, start : start + stop] = np.asarray(values)[:, :stop]  # (L, T, H) -> (L, stop, H)
        probs[start : start + stop] = np.asarray(window_probs)[:stop]
        losses[start : start + stop] = np.asarray(window_losses)[:stop]
    return Inspection(
        text=text,
        vocab=vocab,
        cell=config.cell,
        model=config.describe(),
        gates={name: kept[name] for name in GATES[config.cell]},
        c=kept["c"],
        h=kept["h"],
        probs=probs,
        losses=losses[: n - 1],  # the last character has no next one to predict
        skipped=dict(skipped or {}),
        truncated=truncated,
    )


def check_max_chars(max_chars: int) -> int:
    """`max_chars` as a plain int (a NumPy integer's counts would come back NumPy's), if it is at least 2."""
    max_chars = whole_number(max_chars, flag("max_chars"))
    if max_chars < 2:
        raise ConfigError(f"{flag('max_chars')} must be >= 2, got {max_chars}")
    return max_chars


@functools.lru_cache(maxsize=8)
def _window_fn(config: ModelConfig) -> Callable[..., Any]:
    """One jitted window: compiled once per model shape and reused."""
    model = CharLSTM(config)
    names = ("c", "h", *GATES[config.cell])

    @jax.jit
    def window(params: Params, inputs: jax.Array, targets: jax.Array, carry: tuple[jax.Array, jax.Array]) -> Any:
        """inputs, targets (T,) and carry (h, c) each (L, 1, H) -> records
        name -> (L, T, H), probs (T, V), losses (T,) and the next carry."""
        # A batch of one, the single stream `eval --streams 1` reads.
        (logits, carry), kept = model.apply(
            {"params": params}, inputs[None, :], carry, mutable=[RECORDED]
        )  # logits (1, T, V)
        by_layer = [kept[RECORDED][layer_name(config, layer)] for layer in range(config.num_layers)]
        # Each name was recorded once per layer, (T, 1, H): sow keeps a tuple.
        records = {name: jnp.stack([layer[name][0][:, 0] for layer in by_layer]) for name in names}  # (L, T, H)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits[0], targets)  # (T,)
        return records, jax.nn.softmax(logits[0], axis=-1), losses, carry

    return window
