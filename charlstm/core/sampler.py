"""Generating text from a trained model: the compiled pieces.

The prime is read a block of characters per compiled call (one program for
every prime length), then every new character is drawn inside one jitted
loop (`lax.fori_loop`, its length traced up to a compiled capacity): one
compiled loop on the device, not a Python loop per character. Streaming
runs the same loop a chunk at a time, passing its state along.

Every row of a batch carries its own settings (`Rows`: its key, temperature,
top-k and top-p) and its own position (`SampleState`). So one compiled call
can advance rows of different requests at once (`charlstm serve` batches its
clients this way), and `charlstm sample` runs the same call with the rows of
one request.

Randomness depends only on the seed, the sample's row and the character's
position: the draw for row r of a request with seed s at generated position
t uses the key `fold_in(fold_in(PRNGKey(s), r), t)`. So sample 0 of a batch
is drawn with the keys the same seed gives it alone, and generating in chunks
of any size draws the same characters as generating in one go.
(`generation.py` turns these pieces into texts.)

Shapes: B rows, V vocabulary size, K the characters of one block of noise
(NOISE_BLOCK, or fewer for a shorter call), P a prime's length (the
whole prime's, or PRIME_BLOCK's where one block of it is read).
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from charlstm.config import ModelConfig
from charlstm.core.model import Carry, CharLSTM, Params, forward, row_keys, zero_carry

# Characters whose random draws are derived together, ahead of the loop that
# uses them: 32 and 64 sampled alike at batch 1 on a 2-core CPU (docs/benchmarks.md).
NOISE_BLOCK = 32


class Rows(NamedTuple):
    """Each row's sampling settings; rows of a batch may come from different requests."""

    key: jax.Array  # (B, 2) uint32: row r of a request with seed s has fold_in(PRNGKey(s), r)
    temperature: jax.Array  # (B,) float32; 0 is greedy
    top_k: jax.Array  # (B,) int32; <= 0 keeps every character
    top_p: jax.Array  # (B,) float32; >= 1 keeps every character


class SampleState(NamedTuple):
    """Where generation stands; a chunk takes one and returns the next."""

    token: jax.Array  # (B,) int32: the last character, the next step's input
    carry: Carry  # (h, c), each (L, B, H): the model's state before reading `token`
    position: jax.Array  # (B,) int32: characters each row has generated so far


def filtering_on(top_k: int, top_p: float, vocab_size: int) -> bool:
    """Whether top-k or top-p can remove any character. Static: plain
    temperature sampling compiles without the sort that filtering needs."""
    return 0 < top_k < vocab_size or top_p < 1


def filter_logits(logits: jax.Array, top_k: jax.Array, top_p: jax.Array) -> jax.Array:
    """logits (B, V) -> (B, V) with every character outside the kept set at -inf.
    `draw` passes logits already divided by the temperature, so top-k and
    top-p act on the distribution the temperature made.

    top_k and top_p are scalars or (B, 1), one per row. top-k keeps the k most
    likely characters (k <= 0 keeps all); top-p then keeps the fewest most
    likely of those whose renormalised probability sums to at least p (p >= 1
    keeps all). The most likely character is always kept, and a row that
    keeps everything leaves its logits exactly as they were.
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
    keep = keep & ((before < top_p) | (top_p >= 1) | (rank == 0))  # (B, V) by rank; p <= 0 keeps the likeliest
    keep_by_id = jnp.put_along_axis(jnp.zeros_like(keep), order, keep, axis=-1, inplace=False)  # (B, V)
    return jnp.where(keep_by_id, logits, -jnp.inf)


def noise(rows: Rows, positions: jax.Array, vocab_size: int) -> jax.Array:
    """positions (K, B) -> (K, B, V) the Gumbel noise of each row's draw there.

    Row r draws its character at position t as `jax.random.categorical` with
    the key fold_in(rows.key[r], t) would: the argmax of this noise plus the
    logits. Deriving many positions' keys and noise in one call, rather than
    one character at a time inside the loop, is what keeps batch-1 sampling
    fast on a CPU, where each call of the random-bits generator is a small
    loop of its own."""
    keys = jnp.broadcast_to(rows.key, (*positions.shape, 2))  # (K, B, 2)
    keys = jax.vmap(jax.vmap(jax.random.fold_in))(keys, positions)  # (K, B, 2)
    gumbel = partial(jax.random.gumbel, shape=(vocab_size,), dtype=jnp.float32)
    return jax.vmap(jax.vmap(gumbel))(keys)  # (K, B, V)


def draw(logits: jax.Array, gumbel: jax.Array, rows: Rows, filtered: bool) -> jax.Array:
    """logits (B, V) and each row's Gumbel noise (B, V) -> (B,) int32 drawn ids.

    Temperature 0 is greedy. `filtered` (static) says whether to apply
    top-k and top-p at all; their values stay traced."""
    temperature = rows.temperature[:, None]  # (B, 1)
    # The division is only used where temperature > 0; 1 keeps the other
    # branch of the `where` finite.
    scaled = logits / jnp.where(temperature > 0, temperature, 1.0)  # (B, V)
    if filtered:
        scaled = filter_logits(scaled, rows.top_k[:, None], rows.top_p[:, None])
    # The Gumbel-max draw, what jax.random.categorical computes from the same
    # key: the argmax of the logits plus independent Gumbel(0, 1) noise is a
    # draw from their softmax. The noise does not depend on the logits, which
    # is why `noise` can draw it ahead of the characters. A greedy row takes
    # the argmax of its logits alone. One argmax for both kinds of row rather
    # than one each and a choice: the same characters, and batch-32 sampling
    # about 4% faster on a 2-core CPU (5 paired runs, 2026-12-03).
    scores = jnp.where(temperature > 0, gumbel + scaled, logits)  # (B, V)
    return jnp.argmax(scores, axis=-1).astype(jnp.int32)  # (B,)


def request_rows(
    config: ModelConfig, seed: int, n: int, temperature: float, top_k: int, top_p: float, first: int = 0
) -> Rows:
    """The rows of one request: `n` samples drawn with `seed` and these
    settings, samples `first` .. `first` + n - 1 of the request."""
    # Fixed dtypes, so requests with the same n share one compilation; k
    # beyond the vocabulary means the same as k = V and would overflow int32.
    # A seed is wrapped to 32 bits as eager PRNGKey(seed) wraps it without
    # 64-bit integers, so any seed gives the key it always gave.
    seed32 = np.int64(seed).astype(np.int32)
    settings = seed32, np.float32(temperature), np.int32(min(top_k, config.vocab_size)), np.float32(top_p)
    return _request_rows(*settings, np.int32(first), n=n)


@partial(jax.jit, static_argnames=("n",))
def _request_rows(
    seed: jax.Array, temperature: jax.Array, top_k: jax.Array, top_p: jax.Array, first: jax.Array, *, n: int
) -> Rows:
    # One compiled call rather than a dozen operations dispatched one by one:
    # `charlstm serve` builds a request's rows while its batch generates,
    # and eagerly they took about 2 ms of the server's Python a request
    # (2026-12-02). The keys are the same bits as eager PRNGKey(seed)'s
    # (tests/test_sample.py).
    return Rows(
        row_keys(jax.random.PRNGKey(seed), n, first),  # (n, 2)
        jnp.full((n,), temperature, jnp.float32),
        jnp.full((n,), top_k, jnp.int32),
        jnp.full((n,), top_p, jnp.float32),
    )


# Characters of a prime read by one call: every prime, whatever its length,
# is read by the same compiled program, a block at a time.
PRIME_BLOCK = 64


def start(config: ModelConfig, params: Params, prime: jax.Array | np.ndarray) -> SampleState:
    """prime (B, P) ids, P >= 1 -> the state before generating anything.

    All of the prime but its last character is read here, one character a
    step as the generation loop steps, in blocks of `PRIME_BLOCK` padded to
    that length: so a new prime length compiles nothing (a server would
    otherwise compile, and keep, a program for every length its clients
    send, 0.4-0.85 s each for the default model on a 2-core CPU). The
    last character is the first input of the generation loop."""
    ids = np.asarray(prime, np.int32)  # (B, P)
    batch, body = ids.shape[0], ids.shape[1] - 1
    carry = beside_params(params, zero_carry(config, batch))  # (h, c), each (L, B, H)
    for begin in range(0, body, PRIME_BLOCK):
        block = np.zeros((batch, PRIME_BLOCK), np.int32)  # (B, P): the block, then padding never read
        count = min(PRIME_BLOCK, body - begin)
        block[:, :count] = ids[:, begin : begin + count]
        carry = _read(config, params, carry, block, np.int32(count))
    token, position = beside_params(params, (ids[:, -1], np.zeros(batch, np.int32)))
    return SampleState(token, carry, position)


def beside_params(params: Params, tree: Any) -> Any:
    """Arrays placed as the parameters are: committed to their device where
    they are (a loaded checkpoint's are), as a compiled call's results then
    are too. jit compiles a program per placement of its arguments, so a
    state that started anywhere else would compile the prime reader, and
    then the sampler, twice: for the first call and for the calls after."""
    leaf = jax.tree.leaves(params)[0]
    if isinstance(leaf, jax.Array) and leaf.committed:
        return jax.device_put(tree, leaf.sharding)
    return jax.tree.map(jnp.asarray, tree)


@partial(jax.jit, static_argnames=("config",))
def _read(config: ModelConfig, params: Params, carry: Carry, block: jax.Array, count: jax.Array) -> Carry:
    """The carry after the first `count` characters of `block` (B, P)."""
    model = CharLSTM(config)

    def step(i: jax.Array, carry: Carry) -> Carry:
        token = jax.lax.dynamic_slice_in_dim(block, i, 1, axis=1)  # (B, 1)
        return forward(model, params, token, carry)[1]

    return jax.lax.fori_loop(0, count, step, carry)


def capacity_for(length: int) -> int:
    """The compiled length that serves a request for `length` characters:
    the next power of two (at least NOISE_BLOCK), so every length up to it
    shares one compiled sampler and a new `--length` rarely compiles."""
    return max(NOISE_BLOCK, 1 << (max(length, 1) - 1).bit_length())


@partial(jax.jit, static_argnames=("config", "length", "filtered"))
def sample_chunk(
    config: ModelConfig,
    params: Params,
    state: SampleState,
    rows: Rows,
    count: jax.Array | int | None = None,
    *,
    length: int,
    filtered: bool,
) -> tuple[SampleState, jax.Array]:
    """The next `count` characters of every row after `state` -> (the state
    after them, (B, length) ids of which the first `count` columns are
    drawn; the rest are 0).

    `length` is static (one compilation per length) and `count` traced, at
    most `length` (default: all of it), so one compiled call serves every
    count up to its length. Each row's position in `state` picks its
    characters' keys, so chunks can be of any size and rows at different
    positions can share a call. The settings in `rows` are traced, so
    changing them does not recompile; `filtered` must be true for top_k and
    top_p to have any effect (see `filtering_on`)."""
    model = CharLSTM(config)
    block = min(NOISE_BLOCK, length)
    count = length if count is None else jnp.minimum(count, length)

    def fresh(position: jax.Array) -> jax.Array:  # (B,) -> (K, B, V) for the next K characters
        return noise(rows, position[None, :] + jnp.arange(block)[:, None], config.vocab_size)

    def step(i: jax.Array, carry: tuple[SampleState, jax.Array, jax.Array]) -> tuple[SampleState, jax.Array, jax.Array]:
        state, gumbel, tokens = carry  # gumbel (K, B, V): this block's noise; tokens (length, B)
        # A `cond` rather than a loop of blocks inside the loop of
        # characters: the model's step then appears once in the compiled
        # program, which keeps compiling the sampler fast.
        gumbel = jax.lax.cond(i % block == 0, fresh, lambda _: gumbel, state.position)
        logits, model_carry = forward(model, params, state.token[:, None], state.carry)  # (B, 1, V)
        token = draw(logits[:, 0], gumbel[i % block], rows, filtered)  # (B,)
        return SampleState(token, model_carry, state.position + 1), gumbel, tokens.at[i].set(token)

    batch = state.token.shape[0]
    empty = jnp.zeros((block, batch, config.vocab_size), jnp.float32)  # (K, B, V)
    tokens = jnp.zeros((length, batch), jnp.int32)  # (length, B)
    state, _, tokens = jax.lax.fori_loop(0, count, step, (state, empty, tokens))
    return state, tokens.T


def generate(
    config: ModelConfig,
    params: Params,
    prime: jax.Array,
    key: jax.Array,
    temperature: jax.Array | float,
    length: int,
    *,
    top_k: int = 0,
    top_p: float = 1.0,
) -> jax.Array:
    """prime (B, P) ids, P >= 1 -> (B, length) sampled ids, row r drawn with fold_in(key, r):
    the sampler in one call, for tests and benchmarks (the commands, the API
    and the server go through core/generation.py, which checks settings and
    reads primes of any length).

    temperature (0 for greedy) is traced, so changing it does not recompile;
    nor does changing top_k or top_p, except switching filtering on or off."""
    batch = prime.shape[0]
    rows = Rows(
        row_keys(key, batch),
        jnp.broadcast_to(jnp.asarray(temperature, jnp.float32), (batch,)),
        jnp.full((batch,), min(top_k, config.vocab_size), jnp.int32),
        jnp.full((batch,), top_p, jnp.float32),
    )
    filtered = filtering_on(top_k, top_p, config.vocab_size)
    capacity = capacity_for(length)  # one compiled sampler for every length up to it
    state = start(config, params, prime)
    _, tokens = sample_chunk(config, params, state, rows, length, length=capacity, filtered=filtered)
    return tokens[:, :length]
