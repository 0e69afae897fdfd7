"""Scoring text: the model's mean loss per character, with carried state.

`charlstm eval` scores text through `make_scorer`; validation during
training drives the same `make_reader` one window at a time, so both lay the
text out alike, and `eval` on the validation text reproduces the validation
loss logged during training.

The layout: the N - 1 predictions of a text (character t + 1 given characters
0..t) are cut into at most `max_streams` contiguous streams, read in windows
of EVAL_WINDOW characters with the LSTM state carried from window to window,
so every prediction but the first few of each stream sees long context. The
streams are padded to a whole number of windows and the padding is masked
out: every character is scored exactly once.

Shapes: B streams, T the characters of one window (EVAL_WINDOW here, not
training's --seq-len), V vocabulary size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from charlstm.config import ModelConfig
from charlstm.core.model import Carry, CharLSTM, Params, forward, zero_carry
from charlstm.errors import CorpusError
from charlstm.text.streams import Segments
from charlstm.units import bits

# Characters a compiled call scores. The state carries from one call to the
# next, so this sets how often the host dispatches and how many (B, T, V)
# logits a call holds at once, not the loss.
EVAL_WINDOW = 256
# A stream starts from a zero state and pays a few characters of warm-up;
# keep streams long enough that this is noise.
MIN_STREAM_CHARS = 512
# Window sums are fetched and added in float64 this often, so a long text's
# total does not drift in float32 while the device still runs ahead.
_FETCH_EVERY = 64


@dataclass(frozen=True)
class Score:
    """How well a model predicts a text (`Model.evaluate`): loss, bits per
    character and perplexity, over the characters it could score."""

    loss: float  # mean cross-entropy, nats per character
    chars: int  # characters predicted and scored
    skipped: Mapping[str, int] = field(default_factory=dict)  # characters left out (not in the vocabulary): count
    # Where most of those are the model's own in another Unicode form, what
    # to do (generation.skipped_form); None otherwise.
    other_form: str | None = None

    @property
    def bits_per_char(self) -> float:
        return bits(self.loss)

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)

    @property
    def skipped_share(self) -> float:
        """The share of the text's characters left out, 0 to 1 (about: a
        text's first character is read, not scored)."""
        left = sum(self.skipped.values())
        return left / (left + self.chars) if left else 0.0


@dataclass(frozen=True)
class ScoreStreams:
    """The contiguous streams a text's predictions are scored in (above)."""

    starts: np.ndarray  # (B,) index of each stream's first input character
    lengths: np.ndarray  # (B,) predictions in each stream
    windows: int


def stream_layout(n_predictions: int, max_streams: int) -> ScoreStreams:
    streams = max(1, min(max_streams, n_predictions // MIN_STREAM_CHARS))
    base, extra = divmod(n_predictions, streams)
    lengths = np.full(streams, base, np.int64) + (np.arange(streams) < extra)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return ScoreStreams(starts, lengths, -(-int(lengths.max()) // EVAL_WINDOW))


def windows(ids: np.ndarray | Segments, layout: ScoreStreams) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(inputs, targets, mask), each (B, EVAL_WINDOW), window by window; ids
    in memory, or Segments of a mapped token file (read a window at a time)."""
    offsets = np.arange(EVAL_WINDOW)
    last = len(ids) - 1
    for w in range(layout.windows):
        pos = w * EVAL_WINDOW + offsets  # (T,) position within each stream
        mask = pos[None, :] < layout.lengths[:, None]  # (B, T)
        idx = np.minimum(layout.starts[:, None] + pos[None, :], last - 1)  # (B, T), padding clamped in range
        yield np.asarray(ids[idx], np.int32), np.asarray(ids[idx + 1], np.int32), mask.astype(np.float32)


def make_scorer(config: ModelConfig) -> Callable[..., Score]:
    """`score(params, ids, max_streams, progress=None)`: the mean loss over
    all of `ids`, calling `progress` with the share scored so far
    (make_reader's). Training's validation drives `make_reader` itself, to
    stop a long pass between windows and report from its own loop."""
    read = make_reader(config)

    def score(
        params: Params,
        ids: np.ndarray | Segments,
        max_streams: int,
        progress: Callable[[float], None] | None = None,
    ) -> Score:
        reading = read(params, ids, max_streams)
        while True:
            try:
                done = next(reading)
            except StopIteration as end:
                result: Score = end.value
                if progress is not None:
                    progress(1.0)  # the reader reports before each window: the end is said here
                return result
            if progress is not None:
                progress(done)

    return score


Reading = Generator[float, None, Score]


# One reader per model shape in a process: its jitted window is compiled
# once, not again at every `Model.evaluate` (about a second each, measured).
@functools.lru_cache(maxsize=16)
def make_reader(config: ModelConfig) -> Callable[[Params, np.ndarray | Segments, int], Reading]:
    """`read(params, ids, max_streams)`: a generator that scores `ids` as
    `make_scorer`'s function does, a window at a time. Before each window it
    yields the share of the text the device has scored so far (0 to 1),
    which lets its caller stop it or show progress; it returns the Score."""
    model = CharLSTM(config)

    @jax.jit
    def window_loss(
        params: Params, inputs: jax.Array, targets: jax.Array, mask: jax.Array, carry: Carry
    ) -> tuple[jax.Array, Carry]:
        logits, carry = forward(model, params, inputs, carry)  # (B, T, V)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)  # (B, T)
        return (losses * mask).sum(), carry

    def read(params: Params, ids: np.ndarray | Segments, max_streams: int) -> Reading:
        if len(ids) < 2:
            raise CorpusError("text to score needs at least 2 characters (one to read, one to predict)")
        layout = stream_layout(len(ids) - 1, max_streams)
        carry = zero_carry(config, len(layout.starts))
        total, fetched = 0.0, 0
        pending: list[Any] = []  # window sums not fetched yet: jax.Array (whose type omits is_ready)

        ready = 0  # of the pending windows, the first this many are known finished

        def share() -> float:
            """Of all the windows, those the device has finished: asked without waiting for it."""
            nonlocal ready
            while ready < len(pending) and pending[ready].is_ready():  # in order: a window follows the one before
                ready += 1
            return (fetched + ready) / layout.windows

        for inputs, targets, mask in windows(ids, layout):
            yield share()
            loss_sum, carry = window_loss(params, jnp.asarray(inputs), jnp.asarray(targets), jnp.asarray(mask), carry)
            pending.append(loss_sum)
            if len(pending) == _FETCH_EVERY:
                # The host runs up to this many windows ahead: while the device
                # catches up, keep saying how far it is (and let a stop in).
                yield from _caught_up(pending, share)
                total += float(np.sum(np.asarray(jax.device_get(pending), np.float64)))
                fetched += len(pending)
                pending.clear()
                ready = 0
        yield from _caught_up(pending, share)
        total += float(np.sum(np.asarray(jax.device_get(pending), np.float64)))
        chars = int(layout.lengths.sum())
        return Score(total / chars, chars)

    return read


def _caught_up(pending: list[Any], share: Callable[[], float]) -> Iterator[float]:
    """Wait for the device to finish the windows dispatched, one window at a
    time, saying how far it is after each: the caller gets a word in (a stop,
    a progress line) every window, and no clock is needed."""
    for window in pending:
        if not window.is_ready():
            yield share()
            window.block_until_ready()
