"""The sampler on models whose next-character distribution is known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from charlstm.config import ModelConfig, SampleConfig
from charlstm.errors import CharlstmError
from charlstm.model import CharLSTM, forward, init_params, zero_carry
from charlstm.sample import generate, sample_text
from charlstm.vocab import Vocab

VOCAB = Vocab("\nabcd")
CFG = ModelConfig(vocab_size=VOCAB.size, embed_dim=4, hidden_size=8, num_layers=1)


def _with_head_bias(bias):
    """A model whose output ignores its input: logits = bias, whatever came before."""
    params = jax.tree_util.tree_map(jnp.zeros_like, init_params(CFG, jax.random.PRNGKey(0)))
    params["head"]["bias"] = jnp.asarray(bias, jnp.float32)
    return params


def test_peaked_distribution_always_gives_its_peak():
    params = _with_head_bias([0, 0, 30.0, 0, 0])
    assert sample_text(CFG, params, VOCAB, SampleConfig(50, temperature=1.0)) == "b" * 50


def test_temperature_zero_is_greedy_and_low_temperature_approaches_it():
    params = _with_head_bias([0, 0, 0, 1.0, 0.5])
    assert sample_text(CFG, params, VOCAB, SampleConfig(40, temperature=0)) == "c" * 40
    cold = sample_text(CFG, params, VOCAB, SampleConfig(400, temperature=0.05))
    hot = sample_text(CFG, params, VOCAB, SampleConfig(400, temperature=5.0))
    assert cold.count("c") > 390
    assert hot.count("c") < 200


def test_frequencies_follow_the_softmax():
    probs = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    params = _with_head_bias(np.log(probs))
    out = generate(CFG, params, jnp.zeros((64, 1), jnp.int32), jax.random.PRNGKey(3), jnp.float32(1.0), 500)
    counts = np.bincount(np.asarray(out).ravel(), minlength=5) / out.size
    np.testing.assert_allclose(counts, probs, atol=0.01)


def test_same_seed_same_text_and_seeds_differ():
    params = init_params(CFG, jax.random.PRNGKey(5))
    a = sample_text(CFG, params, VOCAB, SampleConfig(100, seed=1))
    assert a == sample_text(CFG, params, VOCAB, SampleConfig(100, seed=1))
    assert a != sample_text(CFG, params, VOCAB, SampleConfig(100, seed=2))
    assert len(a) == 100 and set(a) <= set(VOCAB.chars)


def test_prime_is_read_once_then_continued_greedily():
    """Greedy generation after a prime equals reading the prime with the
    model and then taking the argmax one character at a time."""
    params = init_params(CFG, jax.random.PRNGKey(5))
    prime = "ab\ncd"
    got = sample_text(CFG, params, VOCAB, SampleConfig(12, temperature=0, prime=prime))
    model = CharLSTM(CFG)
    logits, carry = forward(model, params, jnp.asarray(VOCAB.encode(prime))[None], zero_carry(CFG, 1))
    expected = []
    for _ in range(12):
        token = int(jnp.argmax(logits[0, -1]))
        expected.append(token)
        logits, carry = forward(model, params, jnp.asarray([[token]]), carry)
    assert got == VOCAB.decode(expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"length": 0}, "--length must be >= 1"),
        ({"length": 5, "temperature": -1.0}, "--temp must be > 0"),
    ],
)
def test_bad_requests(kwargs, message):
    with pytest.raises(CharlstmError, match=message):
        SampleConfig(**kwargs)


def test_prime_with_unseen_characters_names_them():
    params = init_params(CFG, jax.random.PRNGKey(0))
    with pytest.raises(CharlstmError, match=r"never saw: '!z'"):
        sample_text(CFG, params, VOCAB, SampleConfig(5, prime="abz!"))
