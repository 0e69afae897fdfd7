"""The batch on the device: a slot for every row the server can generate at
once, requests' rows written into free slots (`put`, `joined`), and the
occupied slots advanced a chunk by one call of the sampler (`advance`).
Calls are compiled per bucket of rows (`bucket`), never per request.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from charlstm.config import ModelConfig
from charlstm.core.model import Params
from charlstm.core.sampler import Rows, SampleState, sample_chunk

# A request's rows as `generation.begin` reads them in, brought to the host:
# a SampleState and Rows whose fields are NumPy arrays.
HostRows = tuple[Any, Any]


def bucket(rows: int, most: int) -> int:
    """The batch size a call compiles for: the next of 1, 2, 3, 4, 6, 8, 12,
    16, 24, ... (powers of two and the steps half-way between), at most
    `most`, so a server compiles a dozen programs rather than one per size,
    and under a third of a call's rows are padding (half of them with
    powers of two alone: 17 rows paid for 32, where from 8 rows up on the
    2-core CPU a chunk costs about the same per row)."""
    size = next(s for k in range(32) for s in (2**k, 3 * 2**k // 2) if s >= rows)
    return min(size, most)


def empty_batch(config: ModelConfig, capacity: int) -> tuple[SampleState, Rows]:
    """A batch of `capacity` idle rows: every row the server can generate at once has a slot here."""
    shape = (config.num_layers, capacity, config.hidden_size)  # (L, C, H); h and c apart: both are donated
    carry = (jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32))
    state = SampleState(jnp.zeros(capacity, jnp.int32), carry, jnp.zeros(capacity, jnp.int32))
    rows = Rows(
        jnp.zeros((capacity, 2), jnp.uint32), jnp.ones(capacity), jnp.zeros(capacity, jnp.int32), jnp.ones(capacity)
    )
    return state, rows


@partial(jax.jit, donate_argnums=(0,))
def put(batch: tuple[SampleState, Rows], new: tuple[SampleState, Rows], slots: jax.Array) -> tuple[SampleState, Rows]:
    """`new`'s rows (n of them) written into `batch` at `slots` (n,). Compiled
    once per n (a bucket); a slot that repeats is written twice with the same row."""
    (state, rows), (fresh, fresh_rows) = batch, new
    h, c = (x.at[:, slots].set(y) for x, y in zip(state.carry, fresh.carry, strict=True))  # (L, C, H)
    state = SampleState(state.token.at[slots].set(fresh.token), (h, c), state.position.at[slots].set(fresh.position))
    return state, Rows(*(x.at[slots].set(y) for x, y in zip(rows, fresh_rows, strict=True)))


def joined(read: list[HostRows], size: int) -> HostRows:
    """Several requests' rows, read in, as one batch of `size` rows (host
    arrays): one `put`, compiled once per bucket, for every request that
    joins at a boundary."""
    count = sum(len(state.token) for state, _ in read)
    index = np.arange(size) % count  # (size,): the rows in order, then again from the first as padding

    def rows_of(*parts: np.ndarray) -> np.ndarray:
        axis = 1 if parts[0].ndim == 3 else 0  # the carry's h and c are (L, n, H), the rest (n, ...)
        return np.take(np.concatenate(parts, axis=axis), index, axis=axis)

    return jax.tree.map(rows_of, *read)


@partial(jax.jit, static_argnames=("config", "length", "filtered"), donate_argnums=(2,))
def advance(
    config: ModelConfig,
    params: Params,
    batch: tuple[SampleState, Rows],
    slots: jax.Array,
    *,
    length: int,
    filtered: bool,
) -> tuple[tuple[SampleState, Rows], jax.Array]:
    """The rows at `slots` (S,) advanced by `length` characters in one call of
    the sampler's chunk -> (the batch with them updated, (S, length) ids).

    One program per number of slots (the bucket) and `filtered`: whatever
    rows join and leave, the arrays keep their shapes, so nothing else
    compiles while serving. Slots may repeat (padding): a repeated row is
    computed twice, identically, and written back once."""
    state, rows = batch
    carry = tuple(x[:, slots] for x in state.carry)
    picked = SampleState(state.token[slots], carry, state.position[slots])  # type: ignore[arg-type]
    advanced, tokens = sample_chunk(
        config, params, picked, Rows(*(x[slots] for x in rows)), length=length, filtered=filtered
    )
    h, c = (x.at[:, slots].set(y) for x, y in zip(state.carry, advanced.carry, strict=True))
    state = SampleState(
        state.token.at[slots].set(advanced.token), (h, c), state.position.at[slots].set(advanced.position)
    )
    return (state, rows), tokens
