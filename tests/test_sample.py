"""The sampler on models whose next-character distribution is known."""

import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlstm.config import ModelConfig, SampleConfig
from charlstm.core.generation import begin, sample_text, sample_texts, stream_texts
from charlstm.core.model import CharLSTM, forward, init_params, zero_carry
from charlstm.core.sampler import (
    NOISE_BLOCK,
    PRIME_BLOCK,
    _request_rows,
    capacity_for,
    draw,
    filter_logits,
    filtering_on,
    generate,
    noise,
    request_rows,
    sample_chunk,
    start,
)
from charlstm.errors import CharlstmError
from charlstm.text.vocab import Vocab

from .helpers import COMPILE_LOGGER, compilations

VOCAB = Vocab("\nabcd")
CFG = ModelConfig(vocab_size=VOCAB.size, embed_dim=4, hidden_size=8, num_layers=1)


def _with_head_bias(bias):
    """A model whose output ignores its input: logits = bias, whatever came before."""
    params = jax.tree_util.tree_map(jnp.zeros_like, init_params(CFG, jax.random.PRNGKey(0)))
    params["head"]["bias"] = jnp.asarray(bias, jnp.float32)
    return params


def _frequencies(params, **filters):
    """Frequencies of each id over 64 x 500 draws at temperature 1."""
    out = generate(CFG, params, jnp.zeros((64, 1), jnp.int32), jax.random.PRNGKey(3), jnp.float32(1.0), 500, **filters)
    return np.bincount(np.asarray(out).ravel(), minlength=VOCAB.size) / out.size


def _kept(logits, top_k=0, top_p=1.0):
    """The ids filter_logits keeps, for one row of logits."""
    out = filter_logits(jnp.asarray([logits], jnp.float32), jnp.int32(top_k), jnp.float32(top_p))
    return set(np.flatnonzero(np.isfinite(np.asarray(out[0]))).tolist())


def test_peaked_distribution_always_gives_its_peak():
    params = _with_head_bias([0, 0, 30.0, 0, 0])
    assert sample_text(CFG, params, VOCAB, SampleConfig(50, temperature=1.0)) == "b" * 50


def test_temperature_zero_is_greedy_and_low_temperature_approaches_it():
    params = _with_head_bias([0, 0, 0, 1.0, 0.5])
    assert sample_text(CFG, params, VOCAB, SampleConfig(40, temperature=0)) == "c" * 40
    cold = sample_text(CFG, params, VOCAB, SampleConfig(400, temperature=0.05))
    hot = sample_text(CFG, params, VOCAB, SampleConfig(400, temperature=5.0))
    assert cold.count("c") > 390
    # At 5.0 the likeliest keeps 23% of the draws (92 expected, sd 8), where at 1.0 it keeps 37% (148).
    assert 60 < hot.count("c") < 120


def test_frequencies_follow_the_softmax():
    probs = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    np.testing.assert_allclose(_frequencies(_with_head_bias(np.log(probs))), probs, atol=0.01)


def test_top_k_one_is_greedy():
    params = init_params(CFG, jax.random.PRNGKey(5))
    for prime in ("", "ab\nc"):
        greedy = sample_text(CFG, params, VOCAB, SampleConfig(80, temperature=0, prime=prime))
        assert greedy == sample_text(CFG, params, VOCAB, SampleConfig(80, temperature=1.3, prime=prime, top_k=1))


def test_top_k_draws_from_the_k_most_likely_in_proportion():
    probs = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    expected = np.where(probs >= 0.25, probs, 0) / 0.55  # ids 2 and 3, renormalised
    freq = _frequencies(_with_head_bias(np.log(probs)), top_k=2)
    assert set(np.flatnonzero(freq)) == {2, 3}
    np.testing.assert_allclose(freq, expected, atol=0.01)


@pytest.mark.parametrize(("top_p", "kept"), [(0.75, {1, 3}), (0.85, {1, 3, 4}), (0.3, {1})])
def test_top_p_keeps_the_fewest_likely_characters_that_reach_p(top_p, kept):
    probs = np.array([0.06, 0.5, 0.04, 0.3, 0.1])  # by rank: 0.5, 0.3, 0.1, 0.06, 0.04
    assert _kept(np.log(probs), top_p=top_p) == kept
    freq = _frequencies(_with_head_bias(np.log(probs)), top_p=top_p)
    expected = np.where(np.isin(np.arange(5), list(kept)), probs, 0)
    np.testing.assert_allclose(freq, expected / expected.sum(), atol=0.01)


def test_filters_apply_in_order_temperature_top_k_top_p():
    logits = np.log([0.5, 0.3, 0.1, 0.06, 0.04])
    # top-p alone: 0.5 + 0.3 < 0.85, so 0.1 is needed too. After top-k 3 the
    # first two hold 0.8 / 0.9 of the renormalised mass, which is enough.
    assert _kept(logits, top_p=0.85) == {0, 1, 2}
    assert _kept(logits, top_k=3, top_p=0.85) == {0, 1}
    # Temperature 0.5 squares the probabilities: the first then holds 0.70,
    # enough for p = 0.6 on its own.
    params = _with_head_bias(logits)
    assert set(sample_text(CFG, params, VOCAB, SampleConfig(200, temperature=1.0, top_p=0.6))) == {"\n", "a"}
    assert sample_text(CFG, params, VOCAB, SampleConfig(200, temperature=0.5, top_p=0.6)) == "\n" * 200


def test_filter_edge_cases_are_exact_and_deterministic():
    assert _kept([1.0, 1.0, 1.0, 0.0], top_k=1) == {0}  # ties go to the lowest id, as argmax does
    assert _kept([0.0, 2.0, 2.0, 1.0], top_k=2) == {1, 2}
    assert _kept([0.0, 2.0, 2.0, 1.0], top_k=9) == {0, 1, 2, 3}  # k >= V keeps everything
    # p = 1 keeps characters so unlikely that the cumulative sum is 1.0 before them.
    assert _kept([0.0, -40.0, -80.0, -100.0], top_k=3, top_p=1.0) == {0, 1, 2}
    assert _kept([0.0, 5.0, 1.0], top_p=1e-6) == {1}  # the most likely is always kept
    assert _kept([0.0, 5.0, 1.0], top_p=0.0) == {1}  # even at p = 0, which only the core's callers can give
    assert filtering_on(0, 1.0, 5) is False
    assert filtering_on(5, 1.0, 5) is False  # k >= V: no sort compiled at all
    assert filtering_on(4, 1.0, 5) and filtering_on(0, 0.9, 5)


_filter = jax.jit(filter_logits)


@settings(max_examples=60, deadline=None)
@given(
    halves=st.lists(st.integers(-6, 6), min_size=1, max_size=8),  # small integers: many ties
    top_k=st.integers(0, 9),
    top_p=st.floats(0.01, 1.0),
)
def test_filter_matches_its_definition(halves, top_k, top_p):
    logits = np.asarray(halves, np.float64) / 2
    order = np.argsort(-logits, kind="stable")
    k = len(logits) if top_k == 0 else min(top_k, len(logits))
    probs = np.exp(logits[order[:k]] - logits[order[0]])
    cumulative = np.cumsum(probs / probs.sum())
    if top_p < 1 and np.min(np.abs(cumulative - top_p)) < 1e-5:
        return  # float32 and float64 may disagree on which side of p the sum falls
    m = k if top_p >= 1 else int(np.argmax(cumulative >= top_p)) + 1
    out = _filter(jnp.asarray([logits], jnp.float32), jnp.int32(top_k), jnp.float32(top_p))
    assert set(np.flatnonzero(np.isfinite(np.asarray(out[0])))) == set(order[:m].tolist())
    kept = np.isfinite(np.asarray(out[0]))
    np.testing.assert_array_equal(np.asarray(out[0])[kept], logits[kept])  # kept logits unchanged


def test_each_draw_is_jax_categorical_with_the_rows_key_at_its_position():
    """The noise is derived ahead of the loop, but each character is what
    jax.random.categorical draws with fold_in(row key, position)."""
    rows = request_rows(CFG, seed=11, n=3, temperature=0.7, top_k=0, top_p=1.0)
    rows = rows._replace(temperature=jnp.asarray([0.7, 1.0, 1.9], jnp.float32))
    positions = jnp.asarray([[0, 5, 40], [1, 6, 41]], jnp.int32)  # (K, B): rows at different positions
    logits = jax.random.normal(jax.random.PRNGKey(2), (2, 3, CFG.vocab_size)) * 3  # (K, B, V)
    gumbel = noise(rows, positions, CFG.vocab_size)  # (K, B, V)
    for k in range(2):
        drawn = draw(logits[k], gumbel[k], rows, filtered=False)
        for r in range(3):
            key = jax.random.fold_in(rows.key[r], positions[k, r])
            expected = jax.random.categorical(key, logits[k, r] / rows.temperature[r])
            assert int(drawn[r]) == int(expected), (k, r)


@pytest.mark.parametrize("seed", [0, 11, -1, 2**31 - 1, -(2**31), 2**31, 3_000_000_000, 2**32 + 5, -(2**63)])
def test_a_requests_rows_are_its_seeds_keys_and_settings(seed):
    """`request_rows` is one compiled call; its keys are the bits that eager
    PRNGKey(seed) and fold_in give (a seed past 32 bits wraps, as PRNGKey
    wraps it), and no seed or setting compiles it again."""
    request_rows(CFG, seed=0, n=3, temperature=1.0, top_k=0, top_p=1.0)
    compiled = _request_rows._cache_size()
    rows = request_rows(CFG, seed=seed, n=3, temperature=0.7, top_k=99, top_p=0.9)
    assert _request_rows._cache_size() == compiled
    expected = [jax.random.fold_in(jax.random.PRNGKey(seed), r) for r in range(3)]
    np.testing.assert_array_equal(np.asarray(rows.key), np.stack([np.asarray(k) for k in expected]))
    assert rows.temperature.dtype == jnp.float32 and rows.top_k.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(rows.temperature), np.float32([0.7] * 3))
    np.testing.assert_array_equal(np.asarray(rows.top_k), [CFG.vocab_size] * 3)  # k past V means V
    np.testing.assert_array_equal(np.asarray(rows.top_p), np.float32([0.9] * 3))


@pytest.mark.parametrize("seed", [2**31, 2**32, -(2**31) - 1, 2**64])
def test_a_seed_that_another_seed_stands_for_is_refused(seed):
    """PRNGKey keeps a seed's low 32 bits: 2**32 would give seed 0's text."""
    with pytest.raises(CharlstmError, match=r"seed must be from -2147483648 to 2147483647"):
        SampleConfig(seed=seed)
    SampleConfig(seed=2**31 - 1), SampleConfig(seed=-(2**31))


def test_an_infinite_temperature_is_refused():
    with pytest.raises(CharlstmError, match="temperature must be at most 100"):
        SampleConfig(temperature=float("inf"))
    SampleConfig(temperature=100.0)


def test_changing_temperature_top_k_or_top_p_does_not_recompile():
    params = init_params(CFG, jax.random.PRNGKey(5))
    sample_text(CFG, params, VOCAB, SampleConfig(33, top_k=2, top_p=0.9))
    compiled = sample_chunk._cache_size()
    for temperature, top_k, top_p in [(0.7, 3, 0.5), (1.5, 1, 0.99), (0.0, 4, 1.0), (1.0, 0, 0.8)]:
        sample_text(CFG, params, VOCAB, SampleConfig(33, temperature=temperature, top_k=top_k, top_p=top_p))
    assert sample_chunk._cache_size() == compiled


def test_lengths_up_to_the_same_capacity_share_one_compiled_sampler():
    """A new --length compiles only past the next power of two, and a text
    is the start of any longer one with the same seed."""
    params = init_params(CFG, jax.random.PRNGKey(5))
    longest = sample_text(CFG, params, VOCAB, SampleConfig(capacity_for(40), seed=2))
    compiled = sample_chunk._cache_size()
    for length in (33, 40, 50, capacity_for(40)):
        assert sample_text(CFG, params, VOCAB, SampleConfig(length, seed=2)) == longest[:length]
    assert sample_chunk._cache_size() == compiled
    assert [capacity_for(n) for n in (1, 32, 33, 64, 65, 1000)] == [32, 32, 64, 64, 128, 1024]


@pytest.mark.parametrize("chunk", [1, 7, 33, 100])
def test_streaming_in_chunks_gives_exactly_the_batch_texts(chunk):
    """Chunks of any size, across the blocks the sampler derives its noise in."""
    params = init_params(CFG, jax.random.PRNGKey(5))
    request = SampleConfig(2 * NOISE_BLOCK + 9, temperature=1.2, prime="ab", seed=4, top_p=0.9, num_samples=2)
    pieces = list(stream_texts(CFG, params, VOCAB, request, chunk))
    assert [len(p[0]) for p in pieces[:-1]] == [chunk] * (len(pieces) - 1)
    assert all(len(p) == 2 for p in pieces)
    assert ["".join(p[i] for p in pieces) for i in range(2)] == sample_texts(CFG, params, VOCAB, request)


def test_stream_checks_its_request_before_the_first_piece():
    params = init_params(CFG, jax.random.PRNGKey(0))
    with pytest.raises(CharlstmError, match="never saw: '!'"):
        stream_texts(CFG, params, VOCAB, SampleConfig(5, prime="a!"))
    with pytest.raises(CharlstmError, match="chunk must be >= 1"):
        stream_texts(CFG, params, VOCAB, SampleConfig(5), chunk=0)


def test_samples_in_a_batch_are_independent_and_do_not_depend_on_the_batch():
    params = init_params(CFG, jax.random.PRNGKey(5))
    three = sample_texts(CFG, params, VOCAB, SampleConfig(60, seed=5, num_samples=3))
    assert len(three) == 3 and len(set(three)) == 3
    assert all(len(t) == 60 for t in three)
    assert three[0] == sample_text(CFG, params, VOCAB, SampleConfig(60, seed=5))
    assert three[:2] == sample_texts(CFG, params, VOCAB, SampleConfig(60, seed=5, num_samples=2))


def test_many_samples_are_generated_a_group_at_a_time_with_the_same_texts(monkeypatch):
    """More samples than `ROW_GROUP` are generated in groups of rows (in
    bounded memory), each row with the draws of its index in the request."""
    from charlstm.core import generation
    from charlstm.core.generation import complete

    params = init_params(CFG, jax.random.PRNGKey(5))
    requests = [
        SampleConfig(40, temperature=1.1, seed=3, top_k=3, num_samples=7),
        SampleConfig(300, seed=2, prime="ab", stop=("\n",), num_samples=5),  # chunks, and rows that stop early
    ]
    whole = [complete(CFG, params, VOCAB, r) for r in requests]
    monkeypatch.setattr(generation, "ROW_GROUP", 2)
    grouped = [complete(CFG, params, VOCAB, r) for r in requests]
    assert grouped == whole
    assert "stop" in {c.finish_reason for c in whole[1]} and len({c.text for c in whole[0]}) == 7


def test_a_long_sample_is_drawn_in_bounded_chunks_with_the_same_text(monkeypatch):
    """Without stop texts a sample is one compiled call up to LONGEST_CHUNK
    characters, and chunks past it: its ids are held for the call's whole
    capacity, and the longest --length (2**31 - 1) would round it up to 2**31,
    past the sampler's 32-bit count."""
    from charlstm.config import MAX_COUNT
    from charlstm.core import generation
    from charlstm.core.generation import complete, stream_completions

    params = init_params(CFG, jax.random.PRNGKey(5))
    request = SampleConfig(150, temperature=1.1, seed=3, num_samples=2)
    whole = complete(CFG, params, VOCAB, request)
    monkeypatch.setattr(generation, "LONGEST_CHUNK", 64)
    assert complete(CFG, params, VOCAB, request) == whole
    monkeypatch.undo()

    class Called(Exception):
        pass

    def first_call_only(*args, length, **kwargs):
        raise Called(length)  # the compiled length is all this test needs to see

    monkeypatch.setattr(generation, "sample_chunk", first_call_only)
    longest = stream_completions(CFG, params, VOCAB, SampleConfig(MAX_COUNT), chunk=MAX_COUNT)
    with pytest.raises(Called) as called:
        next(longest)
    assert called.value.args == (capacity_for(generation.LONGEST_CHUNK),)


def test_generate_compiles_by_capacity_and_draws_any_length():
    """The core's `generate` (the benchmarks' sampler) is `sample_chunk` at
    the length's capacity: a text is the start of any longer one, and 0
    characters is an empty array, not an error."""
    params = init_params(CFG, jax.random.PRNGKey(5))
    prime, key = jnp.ones((2, 3), jnp.int32), jax.random.PRNGKey(1)
    longest = generate(CFG, params, prime, key, 1.0, 64)
    assert longest.shape == (2, 64)
    for length in (0, 1, 33):
        np.testing.assert_array_equal(generate(CFG, params, prime, key, 1.0, length), longest[:, :length])


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


# Sizes no other test uses (a program another test compiled in this process
# would not be logged again), for each cell, and a model of documents.
PRIME_MODELS = {
    "lstm": {"norm": "none"},
    "lstm-layer-norm": {"norm": "layer"},
    "gru": {"cell": "gru"},
    "documents": {"norm": "layer", "boundary_id": 0},
}


@pytest.mark.parametrize("model_name", PRIME_MODELS)
def test_a_prime_of_any_length_is_read_by_one_compiled_program(model_name, caplog):
    """Reading a prime in blocks of PRIME_BLOCK characters, padded, leaves
    the state the model reaches over the whole prime in one call (a model of
    documents meets boundaries inside it), and a new prime length compiles
    nothing; nor does a stream's second chunk (counted in JAX's own log of
    what it compiles). A request's samples share one reading of the prime."""
    config = ModelConfig(vocab_size=VOCAB.size, embed_dim=3, hidden_size=6, num_layers=2, **PRIME_MODELS[model_name])
    # Placed on a device, as a loaded checkpoint's are.
    params = jax.device_put(init_params(config, jax.random.PRNGKey(5)), jax.devices()[0])
    model, rng = CharLSTM(config), np.random.default_rng(0)
    with caplog.at_level(logging.DEBUG, logger=COMPILE_LOGGER):
        # No block, part of one, one whole block, two whole and one character.
        for length in (3, 1, PRIME_BLOCK + 1, 2 * PRIME_BLOCK + 2):
            prime = rng.integers(0, VOCAB.size, (2, length), dtype=np.int32)  # (B, P), "\n" (id 0) included
            state = start(config, params, prime)
            _, carry = forward(model, params, jnp.asarray(prime[:, :-1]), zero_carry(config, 2))
            for got, want in zip(state.carry, carry, strict=True):  # float32 rounding, carried up to 129 steps
                np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)
            np.testing.assert_array_equal(np.asarray(state.token), prime[:, -1])
        assert compilations(caplog.records, "_read") == 1
        start(config, params, np.zeros((1, 5), np.int32))  # one row
        assert compilations(caplog.records, "_read") == 2
        request = SampleConfig(3 * 7 + 2, prime="abc" * 30, seed=1, num_samples=3)
        state, _ = begin(config, params, VOCAB, request)
        assert all(np.array_equal(x[..., :1, :], x[..., 2:3, :]) for x in state.carry)
        pieces = list(stream_texts(config, params, VOCAB, request, chunk=7))
        assert len(pieces) == 4 and ["".join(p[i] for p in pieces) for i in range(3)] == sample_texts(
            config, params, VOCAB, request
        )
        assert compilations(caplog.records, "_read") == 2  # the prime was read for one row, not three
        assert compilations(caplog.records, "sample_chunk") == 1  # every chunk, and the whole text: one program


def test_empty_prime_starts_from_a_new_line():
    params = init_params(CFG, jax.random.PRNGKey(5))
    assert sample_text(CFG, params, VOCAB, SampleConfig(40, seed=3)) == sample_text(
        CFG, params, VOCAB, SampleConfig(40, seed=3, prime="\n")
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"length": 0}, "length must be >= 1"),
        ({"length": 5, "temperature": -1.0}, "temperature must be > 0"),
        ({"top_k": -1}, r"top_k must be >= 0, got -1"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0.0"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\], got 1.5"),
        ({"top_p": math.nan}, r"top_p must be in \(0, 1\]"),
        ({"num_samples": 0}, r"num_samples must be >= 1, got 0"),
    ],
)
def test_bad_requests(kwargs, message):
    with pytest.raises(CharlstmError, match=message):
        SampleConfig(**kwargs)


def test_prime_with_unseen_characters_names_them():
    params = init_params(CFG, jax.random.PRNGKey(0))
    with pytest.raises(CharlstmError, match=r"never saw: '!', 'z'"):
        sample_text(CFG, params, VOCAB, SampleConfig(5, prime="abz!"))


def test_a_prime_in_another_unicode_form_than_the_text_says_so():
    """'é' typed as one character, to a model whose text wrote it as e and
    a combining accent (they look the same): named, with the way out; the
    accent itself is named by its escape, not drawn over a quote."""
    from charlstm.core.generation import check_request

    decomposed = Vocab.from_text("cafe\u0301 au lait\n")
    with pytest.raises(CharlstmError) as refused:
        check_request(decomposed, SampleConfig(5, prime="caf\u00e9"))
    assert str(refused.value) == (
        "the prime contains characters the model never saw: '\u00e9'; the model knows them written in Unicode's NFD "
        "form (decomposed, letters and accents apart): write them so, or remove them"
    )
    with pytest.raises(
        CharlstmError, match=r"never saw: 'e', '\\u0301'; the model knows them written in Unicode's NFC"
    ):
        check_request(Vocab.from_text("caf\u00e9 au lait\n"), SampleConfig(5, prime="cafe\u0301"))
    with pytest.raises(CharlstmError, match="never saw: 'z'; remove them$"):
        check_request(decomposed, SampleConfig(5, prime="z"))
