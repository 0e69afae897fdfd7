"""Generating text from a trained model.

The prime is read in one call of the model (the same hoisted-projection scan
as training), then every new character is drawn inside one jitted
`lax.scan`: one compiled loop on the device, not a Python loop per character.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from charlstm.config import ModelConfig, SampleConfig
from charlstm.errors import CharlstmError
from charlstm.model import Carry, CharLSTM, Params, forward, zero_carry
from charlstm.vocab import Vocab


@partial(jax.jit, static_argnames=("config", "length"))
def generate(
    config: ModelConfig,
    params: Params,
    prime: jax.Array,
    key: jax.Array,
    temperature: jax.Array,
    length: int,
) -> jax.Array:
    """prime (B, P) ids, P >= 1 -> (B, length) sampled ids.

    temperature is traced, so changing it does not recompile; 0 means greedy
    (always the most likely character)."""
    model = CharLSTM(config)
    batch = prime.shape[0]
    # Read all of the prime but its last character; the last one is the first
    # input of the generation loop.
    _, carry = forward(model, params, prime[:, :-1], zero_carry(config, batch))

    def step(state: tuple[jax.Array, Carry], key_t: jax.Array) -> tuple[tuple[jax.Array, Carry], jax.Array]:
        token, carry = state  # token (B,)
        logits, carry = forward(model, params, token[:, None], carry)  # (B, 1, V)
        logits = logits[:, 0]  # (B, V)
        safe_t = jnp.where(temperature > 0, temperature, 1.0)
        drawn = jax.random.categorical(key_t, logits / safe_t, axis=-1)
        token = jnp.where(temperature > 0, drawn, jnp.argmax(logits, axis=-1)).astype(jnp.int32)
        return (token, carry), token

    keys = jax.random.split(key, length)
    _, tokens = jax.lax.scan(step, (prime[:, -1], carry), keys)  # (length, B)
    return tokens.T


def default_prime(vocab: Vocab) -> str:
    """A new line if the corpus has one (text then starts like a new line of
    the corpus), else its first character."""
    return "\n" if "\n" in vocab.chars else vocab.chars[0]


def sample_text(config: ModelConfig, params: Params, vocab: Vocab, request: SampleConfig) -> str:
    """`request.length` new characters following `request.prime` (which is
    not included in the result)."""
    unknown = vocab.unknown(request.prime)
    if unknown:
        raise CharlstmError(f"the prime contains characters the model never saw: {''.join(unknown)!r}; remove them")
    ids = vocab.encode(request.prime or default_prime(vocab))[None, :]  # (1, P)
    out = generate(
        config,
        params,
        jnp.asarray(ids),
        jax.random.PRNGKey(request.seed),
        jnp.float32(request.temperature),
        request.length,
    )
    return vocab.decode(np.asarray(out[0]))
