"""A model of several documents: reading the boundary symbol restarts it,
and its samples start and end documents."""

import runpy
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from charlstm.config import ModelConfig, SampleConfig
from charlstm.core.generation import complete, default_prime, sample_texts, stream_texts
from charlstm.core.model import CharLSTM, forward, init_params, zero_carry
from charlstm.export.weights import write_weights
from charlstm.text.vocab import BOUNDARY, Vocab

VOCAB = Vocab("\nab" + BOUNDARY)
SHAPES = {
    "lstm": {"norm": "none"},
    "lstm-layer-norm": {"norm": "layer"},
    "gru": {"cell": "gru"},
}


def _config(**shape) -> ModelConfig:
    return ModelConfig(VOCAB.size, embed_dim=4, hidden_size=8, num_layers=2, boundary_id=VOCAB.boundary_id, **shape)


@pytest.mark.parametrize("cell", SHAPES)
def test_nothing_before_the_boundary_reaches_anything_after_it(cell):
    """Other text before the boundary, and another carried state, leave every
    prediction from the boundary on unchanged, bit for bit."""
    config = _config(**SHAPES[cell])
    params = init_params(config, jax.random.PRNGKey(0))
    b = VOCAB.boundary_id
    after = [1, 2, 0, 1, 1, 2, 0]
    tokens = jnp.array([[1, 2, 2, 0, b, *after], [2, 0, 1, 1, b, *after]])  # (B, T): the same after the boundary
    other = jnp.array([[0, 0, 1, 2, b, *after], [1, 1, 1, 2, b, *after]])
    carry = tuple(jax.random.normal(jax.random.PRNGKey(k), (2, 2, 8)) for k in (1, 2))
    run = jax.jit(lambda t, c: forward(CharLSTM(config), params, t, c))
    logits, _ = run(tokens, carry)
    logits_other, _ = run(other, jax.tree_util.tree_map(lambda x: -3.0 * x, carry))
    np.testing.assert_array_equal(np.asarray(logits[:, 4:]), np.asarray(logits_other[:, 4:]))
    np.testing.assert_array_equal(np.asarray(logits[0, 4:]), np.asarray(logits[1, 4:]))
    assert not np.array_equal(np.asarray(logits[:, :4]), np.asarray(logits_other[:, :4]))


def _biased(config: ModelConfig, char: str) -> dict:
    """Parameters whose every prediction is `char`."""
    params = init_params(config, jax.random.PRNGKey(0))
    bias = params["head"]["bias"].at[VOCAB.chars.index(char)].set(50.0)
    return {**params, "head": {**params["head"], "bias": bias}}


def test_samples_start_a_document_and_end_where_the_model_ends_it():
    config = _config(norm="none")
    assert default_prime(VOCAB) == BOUNDARY
    request = SampleConfig(length=12, seed=3, num_samples=2)
    assert sample_texts(config, _biased(config, BOUNDARY), VOCAB, request) == ["", ""]
    assert [c.finish_reason for c in complete(config, _biased(config, BOUNDARY), VOCAB, request)] == ["end"] * 2
    assert sample_texts(config, _biased(config, "a"), VOCAB, request) == ["a" * 12] * 2
    assert [c.finish_reason for c in complete(config, _biased(config, "a"), VOCAB, request)] == ["length"] * 2
    # A prime is read as the start of a document: the boundary, then the prime.
    params = init_params(config, jax.random.PRNGKey(4))
    primed = SampleConfig(length=40, seed=5, prime="ab\na", temperature=1.0)
    texts = sample_texts(config, params, VOCAB, primed)
    assert texts == sample_texts(config, params, VOCAB, SampleConfig(length=40, seed=5, prime=BOUNDARY + "ab\na"))
    # Streamed, a sample ends at the same place, and nothing follows in later pieces.
    for seed in range(4):
        request = SampleConfig(length=40, seed=seed, num_samples=3)
        whole = sample_texts(config, params, VOCAB, request)
        pieces = list(stream_texts(config, params, VOCAB, request, chunk=6))
        assert ["".join(p[i] for p in pieces) for i in range(3)] == whole
        assert all(BOUNDARY not in t for t in whole)


@pytest.mark.parametrize("cell", SHAPES)
def test_the_exported_weights_restart_at_the_boundary_like_the_model(cell, tmp_path):
    """examples/numpy_forward.py (and so the page, which mirrors it) zeroes
    the state on reading the boundary, and a greedy sample ends with the document."""
    reference = runpy.run_path(str(Path(__file__).resolve().parent.parent / "examples" / "numpy_forward.py"))
    config = _config(**SHAPES[cell])
    params = init_params(config, jax.random.PRNGKey(7))
    write_weights(tmp_path, config, VOCAB, params, {})
    meta, tensors = reference["load"](tmp_path)
    text = "ab\nba" + BOUNDARY + "aab\n" + BOUNDARY + "b"
    logits, _ = forward(CharLSTM(config), params, jnp.asarray(VOCAB.encode(text))[None], zero_carry(config, 1))
    state, seen = reference["zero_state"](meta), []
    for ch in text:
        out, state = reference["step"](meta, tensors, VOCAB.chars.index(ch), state)
        seen.append(out)
    np.testing.assert_allclose(np.array(seen), np.asarray(logits[0]), atol=1e-5, rtol=0)
    for prime in ("", "ab"):
        request = SampleConfig(length=30, temperature=0.0, prime=prime)
        expected = complete(config, params, VOCAB, request)[0].text
        assert reference["greedy"](meta, tensors, prime or BOUNDARY, 30) == expected
    biased = _biased(config, BOUNDARY)
    write_weights(tmp_path, config, VOCAB, biased, {})
    meta, tensors = reference["load"](tmp_path)
    assert reference["greedy"](meta, tensors, "ab", 30) == ""
