"""Generating text from a trained model.

The prime is read in one call of the model (the same hoisted-projection scan
as training), then every new character is drawn inside one jitted
`lax.scan`: one compiled loop on the device, not a Python loop per character.
Streaming runs the same loop a chunk at a time, passing its state along.

Randomness depends only on the seed, the sample's row and the character's
position: the draw for row r at generated position t uses the key
`fold_in(fold_in(key, r), t)`. So sample 0 of a batch is the sample the same
seed gives alone, and generating in chunks of any size gives the same text as
generating in one go.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from charlstm.config import ModelConfig, SampleConfig
from charlstm.core.model import Carry, CharLSTM, Params, forward, row_keys, zero_carry
from charlstm.errors import CharlstmError
from charlstm.text.vocab import Vocab


class SampleState(NamedTuple):
    """Where generation stands; a chunk takes one and returns the next."""

    token: jax.Array  # (B,) int32: the last character, the next step's input
    carry: Carry  # (h, c), each (L, B, H): the model's state before reading `token`
    position: jax.Array  # () int32: characters generated so far


def filtering_on(top_k: int, top_p: float, vocab_size: int) -> bool:
    """Whether top-k or top-p can remove any character. Static: plain
    temperature sampling compiles without the sort that filtering needs."""
    return 0 < top_k < vocab_size or top_p < 1


def filter_logits(logits: jax.Array, top_k: jax.Array, top_p: jax.Array) -> jax.Array:
    """logits (B, V) -> (B, V) with every character outside the kept set at -inf.

    top-k keeps the k most likely characters (k <= 0 keeps all); top-p then
    keeps the fewest most likely of those whose renormalised probability sums
    to at least p (p >= 1 keeps all). The most likely character is always kept.
    """
    vocab = logits.shape[-1]
    # Most likely first; a stable sort of the negated logits ranks equal
    # logits by id, the order argmax breaks ties in, so top-k 1 is greedy.
    order = jnp.argsort(-logits, axis=-1, stable=True)  # (B, V) ids by rank
    ranked = jnp.take_along_axis(logits, order, axis=-1)  # (B, V) descending
    rank = jnp.arange(vocab)[None, :]  # (1, V)
    keep = (top_k <= 0) | (rank < top_k)  # (B or 1, V) by rank
    probs = jax.nn.softmax(jnp.where(keep, ranked, -jnp.inf), axis=-1)  # (B, V), renormalised over the top k
    # A character is needed while the more likely ones hold less than p. The
    # explicit p >= 1 keeps the tail that rounding in the cumulative sum
    # would otherwise drop.
    before = jnp.cumsum(probs, axis=-1) - probs  # (B, V) mass ranked above each
    keep = keep & ((before < top_p) | (top_p >= 1))  # (B, V) by rank
    keep_by_id = jnp.put_along_axis(jnp.zeros_like(keep), order, keep, axis=-1, inplace=False)  # (B, V)
    return jnp.where(keep_by_id, logits, -jnp.inf)


def draw(
    logits: jax.Array,
    keys: jax.Array,
    temperature: jax.Array,
    top_k: jax.Array,
    top_p: jax.Array,
    filtered: bool,
) -> jax.Array:
    """logits (B, V) and one key per row (B, 2) -> (B,) int32 drawn ids.

    Temperature 0 is greedy. `filtered` (static) says whether to apply
    top-k and top-p at all; their values stay traced."""
    greedy = jnp.argmax(logits, axis=-1)  # (B,)
    # The division is only used where temperature > 0; 1 keeps the other
    # branch of the `where` finite.
    scaled = logits / jnp.where(temperature > 0, temperature, 1.0)  # (B, V)
    if filtered:
        scaled = filter_logits(scaled, top_k, top_p)
    # One key per row: a row's draws do not depend on how many rows there are.
    drawn = jax.vmap(jax.random.categorical)(keys, scaled)  # (B,)
    return jnp.where(temperature > 0, drawn, greedy).astype(jnp.int32)


@partial(jax.jit, static_argnames=("config",))
def start(config: ModelConfig, params: Params, prime: jax.Array) -> SampleState:
    """prime (B, P) ids, P >= 1 -> the state before generating anything."""
    # Read all of the prime but its last character; the last one is the first
    # input of the generation loop.
    _, carry = forward(CharLSTM(config), params, prime[:, :-1], zero_carry(config, prime.shape[0]))
    return SampleState(prime[:, -1].astype(jnp.int32), carry, jnp.zeros((), jnp.int32))


@partial(jax.jit, static_argnames=("config", "length", "filtered"))
def sample_chunk(
    config: ModelConfig,
    params: Params,
    state: SampleState,
    key: jax.Array,
    temperature: jax.Array,
    top_k: jax.Array,
    top_p: jax.Array,
    *,
    length: int,
    filtered: bool,
) -> tuple[SampleState, jax.Array]:
    """The next `length` characters after `state` -> (new state, (B, length) ids).

    `key` is the whole generation's key, the same for every chunk: the
    position in `state` picks each character's key. temperature, top_k and
    top_p are traced, so changing them does not recompile; `filtered` must be
    true for top_k and top_p to have any effect (see `filtering_on`)."""
    model = CharLSTM(config)
    rows = row_keys(key, state.token.shape[0])  # (B, 2)

    def step(state: SampleState, _: None) -> tuple[SampleState, jax.Array]:
        logits, carry = forward(model, params, state.token[:, None], state.carry)  # (B, 1, V)
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(rows, state.position)  # (B, 2)
        token = draw(logits[:, 0], keys, temperature, top_k, top_p, filtered)  # (B,)
        return SampleState(token, carry, state.position + 1), token

    state, tokens = jax.lax.scan(step, state, None, length=length)  # tokens (length, B)
    return state, tokens.T


def _knobs(
    config: ModelConfig, temperature: jax.Array | float, top_k: int, top_p: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    # Fixed dtypes, so a Python number and an array share one compilation;
    # k beyond the vocabulary means the same as k = V and would overflow int32.
    return (
        jnp.asarray(temperature, jnp.float32),
        jnp.int32(min(top_k, config.vocab_size)),
        jnp.float32(top_p),
    )


def generate(
    config: ModelConfig,
    params: Params,
    prime: jax.Array,
    key: jax.Array,
    temperature: jax.Array,
    length: int,
    *,
    top_k: int = 0,
    top_p: float = 1.0,
) -> jax.Array:
    """prime (B, P) ids, P >= 1 -> (B, length) sampled ids.

    temperature (0 for greedy) is traced, so changing it does not recompile;
    nor does changing top_k or top_p, except switching filtering on or off."""
    state = start(config, params, prime)
    _, tokens = sample_chunk(
        config,
        params,
        state,
        key,
        *_knobs(config, temperature, top_k, top_p),
        length=length,
        filtered=filtering_on(top_k, top_p, config.vocab_size),
    )
    return tokens


def default_prime(vocab: Vocab) -> str:
    """A new line if the corpus has one (text then starts like a new line of
    the corpus), else its first character."""
    return "\n" if "\n" in vocab.chars else vocab.chars[0]


def _prime_ids(vocab: Vocab, request: SampleConfig) -> jax.Array:
    """The request's prime, once per sample: (N, P) ids."""
    unknown = vocab.unknown(request.prime)
    if unknown:
        raise CharlstmError(f"the prime contains characters the model never saw: {''.join(unknown)!r}; remove them")
    ids = vocab.encode(request.prime or default_prime(vocab))  # (P,)
    return jnp.asarray(np.tile(ids, (request.num_samples, 1)))  # (N, P)


def _decode_rows(vocab: Vocab, ids: np.ndarray) -> list[str]:
    return [vocab.decode(row) for row in ids]


def sample_texts(config: ModelConfig, params: Params, vocab: Vocab, request: SampleConfig) -> list[str]:
    """`request.num_samples` texts of `request.length` new characters each,
    following `request.prime` (not included), generated in one batch."""
    tokens = generate(
        config,
        params,
        _prime_ids(vocab, request),
        jax.random.PRNGKey(request.seed),
        jnp.float32(request.temperature),
        request.length,
        top_k=request.top_k,
        top_p=request.top_p,
    )
    return _decode_rows(vocab, np.asarray(tokens))


def sample_text(config: ModelConfig, params: Params, vocab: Vocab, request: SampleConfig) -> str:
    """The first of `sample_texts`: with the same seed, the same text whatever
    `request.num_samples` is."""
    return sample_texts(config, params, vocab, request)[0]


def stream_texts(
    config: ModelConfig, params: Params, vocab: Vocab, request: SampleConfig, chunk: int = 256
) -> Iterator[list[str]]:
    """The texts of `sample_texts`, `chunk` characters of every sample at a
    time: joining each sample's pieces gives exactly `sample_texts(...)`.

    The request is checked here, before the first piece is asked for."""
    if chunk < 1:
        raise CharlstmError(f"chunk must be >= 1, got {chunk}")
    prime = _prime_ids(vocab, request)
    key = jax.random.PRNGKey(request.seed)
    knobs = _knobs(config, request.temperature, request.top_k, request.top_p)
    filtered = filtering_on(request.top_k, request.top_p, config.vocab_size)
    # Every chunk has the same length, so one compilation serves them all;
    # the last one is generated whole and cut.
    size = min(chunk, request.length)

    def run(state: SampleState) -> tuple[SampleState, jax.Array]:
        return sample_chunk(config, params, state, key, *knobs, length=size, filtered=filtered)

    def pieces() -> Iterator[list[str]]:
        pending = run(start(config, params, prime))
        for done in range(0, request.length, size):
            state, tokens = pending
            if done + size < request.length:
                # Dispatched before this chunk is decoded: JAX runs it
                # asynchronously while the caller handles this piece.
                pending = run(state)
            yield _decode_rows(vocab, np.asarray(tokens)[:, : request.length - done])

    return pieces()
