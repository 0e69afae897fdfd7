"""Scoring text: every character once, with carried state, as validation does."""

import itertools
import json
import logging
import math

import jax
import numpy as np
import optax
import pytest

from charlstm import api
from charlstm.config import ModelConfig
from charlstm.core.model import CharLSTM, init_params, zero_carry
from charlstm.core.scorer import EVAL_WINDOW, MIN_STREAM_CHARS, make_scorer
from charlstm.errors import CorpusError
from charlstm.text.vocab import BOUNDARY, Vocab

from .helpers import COMPILE_LOGGER, compilations, new_tiny_run, train


def _direct_loss(cfg, params, ids):
    """Mean cross-entropy of ids[1:] given ids[:-1], one stream, one call."""
    logits, _ = CharLSTM(cfg).apply({"params": params}, ids[None, :-1], zero_carry(cfg, 1))
    return np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits[0], ids[1:]), np.float64)


@pytest.fixture(scope="module")
def model(tiny_text):
    vocab = Vocab.from_text(tiny_text)
    cfg = ModelConfig(vocab_size=vocab.size, embed_dim=8, hidden_size=16, num_layers=2)
    return cfg, init_params(cfg, jax.random.PRNGKey(1)), vocab


@pytest.mark.parametrize("n_chars", [2, 100, EVAL_WINDOW + 1, 3 * EVAL_WINDOW + 17])
def test_one_stream_scores_every_character_once_across_windows(model, tiny_text, n_chars):
    cfg, params, vocab = model
    ids = vocab.encode(tiny_text[:n_chars])
    score = make_scorer(cfg)(params, ids, 1)
    assert score.chars == n_chars - 1
    assert score.loss == pytest.approx(_direct_loss(cfg, params, ids).mean(), rel=1e-5)


def test_several_streams_each_start_fresh_and_cover_the_text(model, tiny_text):
    cfg, params, vocab = model
    ids = vocab.encode(tiny_text[: 3 * MIN_STREAM_CHARS + 2])
    score = make_scorer(cfg)(params, ids, 3)
    # 3 * MIN + 1 predictions: streams of MIN + 1, MIN, MIN predictions.
    cuts = [0, MIN_STREAM_CHARS + 1, 2 * MIN_STREAM_CHARS + 1, 3 * MIN_STREAM_CHARS + 1]
    parts = [_direct_loss(cfg, params, ids[a : b + 1]) for a, b in itertools.pairwise(cuts)]
    assert score.chars == sum(len(p) for p in parts) == len(ids) - 1
    assert score.loss == pytest.approx(np.concatenate(parts).mean(), rel=1e-5)
    # Streams never get shorter than MIN_STREAM_CHARS: asking for 64 gives 3 here.
    assert make_scorer(cfg)(params, ids, 64).loss == score.loss


def test_a_text_of_one_character_cannot_be_scored(model):
    cfg, params, vocab = model
    with pytest.raises(CorpusError, match="at least 2"):
        make_scorer(cfg)(params, vocab.encode("a"), 4)


def test_evaluate_reproduces_the_logged_validation_loss_and_skips_unknown_characters(trained_run, tiny_text):
    model = api.load(trained_run[0])
    assert trained_run[1].read_text(encoding="utf-8") == tiny_text
    val_text = tiny_text[len(tiny_text) - int(len(tiny_text) * model.train_config.val_fraction) :]
    logged = model.history[-1]["val_loss"]
    assert model.evaluate(val_text).loss == pytest.approx(logged, abs=1e-6)

    score = model.evaluate("€" + val_text[:500] + "€€ü")
    assert score.skipped == {"€": 3, "ü": 1} and score.skipped_share == pytest.approx(4 / (4 + score.chars))
    assert score.loss == pytest.approx(model.evaluate(val_text[:500]).loss, abs=1e-6)
    assert score.bits_per_char == pytest.approx(score.loss / math.log(2))
    assert score.perplexity == pytest.approx(math.exp(score.loss))


def test_a_text_the_model_cannot_read_says_so(trained_run):
    from charlstm.errors import CorpusError

    model = api.load(trained_run[0])
    with pytest.raises(CorpusError, match="nothing to score"):
        model.evaluate("€€€€ü")


def test_eval_says_when_most_of_a_text_was_left_out(trained_run, tmp_path):
    """A model that can read a tenth of a text scores that tenth: its loss
    is not a whole text's, and eval says so (a walkthrough found an English
    model's loss on Russian text below the fine-tuned model's)."""
    from typer.testing import CliRunner

    from charlstm.cli import app

    text = tmp_path / "mostly-unknown.txt"
    text.write_text(trained_run[1].read_text(encoding="utf-8")[:100] + "\u0436" * 900, encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", str(trained_run[0]), str(text)])
    assert result.exit_code == 0, result.output
    assert "90% of the text was left out: the loss is over the rest only" in " ".join(result.stdout.split())
    record = json.loads(CliRunner().invoke(app, ["eval", str(trained_run[0]), str(text), "--json"]).stdout)
    assert record["skipped_share"] == pytest.approx(0.9, abs=0.002)


def test_evaluating_again_compiles_nothing(trained_run, tiny_text, caplog):
    """A second `evaluate` (another text, the same shape of window) reuses
    the first one's program: scoring many short texts used to compile again
    for each, about a second apiece."""
    model = api.load(trained_run[0])
    with caplog.at_level(logging.DEBUG, logger=COMPILE_LOGGER):
        first = model.evaluate(tiny_text[:600])
        once = compilations(caplog.records, "window_loss")
        second = model.evaluate(tiny_text[600:1200])
    assert compilations(caplog.records, "window_loss") == once
    assert first.loss != second.loss


def test_a_users_text_holding_the_boundary_symbol_is_not_read_as_documents(tmp_path):
    """Training refuses a file holding U+FDD0, which marks where documents
    meet; a several-documents model's `eval` and `inspect` of a user's text
    leave it out like any character the model never saw, while the run's
    own validation text (held_out()) marks its documents with it."""
    from .test_corpus import write_folder

    write_folder(tmp_path / "poems", 3)
    run = new_tiny_run(tmp_path / "poems", steps=4, eval_every=4, checkpoint_every=4)
    train(run, tmp_path / "run")
    model = api.load(tmp_path / "run")
    held_out, _ = model.held_out()
    assert BOUNDARY in held_out
    assert model.evaluate(held_out, documents=True).loss == pytest.approx(model.history[-1]["val_loss"], abs=1e-6)
    plain = held_out.replace(BOUNDARY, "")
    score = model.evaluate(held_out)
    assert score.skipped == {BOUNDARY: held_out.count(BOUNDARY)}
    assert score.loss == pytest.approx(model.evaluate(plain).loss, abs=1e-6)
    assert model.inspect(held_out).skipped == {BOUNDARY: held_out[:2000].count(BOUNDARY)}
    # Given as a document, the text is read after the symbol (a document's
    # start), and only its own characters count as read (`inspect FILE`).
    seen = model.inspect([plain])
    assert seen.text[0] == BOUNDARY and seen.text_chars == len(plain) == seen.h.shape[1] - 1


def test_the_reader_says_how_far_it_is_and_scores_as_the_scorer(model, tiny_text, monkeypatch):
    """What eval's bar and a validation pass's progress show: the share of
    the windows the device has finished, never going back, ending with the
    score make_scorer gives."""
    from charlstm.core import scorer

    monkeypatch.setattr(scorer, "_FETCH_EVERY", 2)
    cfg, params, vocab = model
    ids = vocab.encode(tiny_text[: 5 * EVAL_WINDOW + 3])
    reading, shares = scorer.make_reader(cfg)(params, ids, 1), []
    while True:
        try:
            shares.append(next(reading))
        except StopIteration as end:
            score = end.value
            break
    assert shares[0] == 0 and shares == sorted(shares) and max(shares) < 1
    assert {i / 6 for i in (0, 2, 4)} <= set(shares)  # each fetch of 2 windows of the 6 is seen
    assert score == make_scorer(cfg)(params, ids, 1)


def test_a_text_in_another_unicode_form_is_said_to_be_one(tmp_path):
    """A text saved on macOS has its accents and Hangul apart (NFD), where the
    model's had them composed (NFC): they look the same, and eval left 77% of
    such a text out without a word (a walkthrough, 2026-12-06). It says so,
    and how to convert it; either way round; and not of characters the model
    simply never saw."""
    import unicodedata
    from collections import Counter

    from charlstm.core.generation import skipped_form

    words = "café naïve 한국어 왕 "
    composed = Vocab.from_text(unicodedata.normalize("NFC", words))
    apart = unicodedata.normalize("NFD", words)
    said = skipped_form(composed, Counter(c for c in apart if c not in composed.chars))
    assert said is not None and "this text has them in Unicode's NFD form" in said and "normalize('NFC'" in said
    decomposed = Vocab.from_text(apart)
    said = skipped_form(
        decomposed, Counter(c for c in unicodedata.normalize("NFC", words) if c not in decomposed.chars)
    )
    assert said is not None and "in Unicode's NFC form (composed), the model's text in NFD" in said
    assert skipped_form(composed, {"x": 5, "\u0301": 1}) is None and skipped_form(composed, {}) is None
    # Through Model.evaluate, as eval scores a text.
    corpus = tmp_path / "nfc.txt"
    corpus.write_text(unicodedata.normalize("NFC", words * 200), encoding="utf-8")
    train(new_tiny_run(corpus, steps=2, eval_every=2), tmp_path / "run")
    model = api.load(tmp_path / "run")
    assert "NFD form" in (model.evaluate(apart * 20).other_form or "")
    assert model.evaluate(unicodedata.normalize("NFC", words) * 20).other_form is None
