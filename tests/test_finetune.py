"""Fine-tuning (`--init-from`): a trained model's weights, a grown
vocabulary, a fresh optimizer and schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import charlstm
from charlstm.config import FINE_TUNE_LEARNING_RATE
from charlstm.core.model import CharLSTM, forward, zero_carry
from charlstm.training import checkpoint

NEW_TEXT = "王后说：你好，哈姆雷特。\nThe queen speaks to Hamlet.\n" * 60
SMALL = {"batch_size": 4, "seq_len": 16, "eval_every": 100, "checkpoint_every": 100}


def test_fine_tuning_keeps_old_rows_bit_for_bit_and_trains(trained_run, tmp_path):
    """From a model trained on English, on text with Chinese characters: the
    old characters keep their ids and every old value until the first
    update; the new ones start as designed; then it trains."""
    base_dir, _ = trained_run
    base = charlstm.load(base_dir)
    corpus = tmp_path / "new.txt"
    corpus.write_text(NEW_TEXT, encoding="utf-8")
    seen = []
    start = charlstm.train(  # the model in hand, as its checkpoint
        corpus, tmp_path / "tuned", init_from=base, should_stop=lambda: True, steps=3, on_event=seen.append, **SMALL
    )
    opened = next(e for e in seen if type(e).__name__ == "Opened")
    assert opened.init_from["checkpoint"] == str(base.path) and opened.init_from["vocab_size"] == base.vocab.size
    assert not [e for e in seen if type(e).__name__ == "Warned" and e.kind != "small validation"]
    # A preset's size does not apply: said, where it was silently ignored (a walkthrough, 2026-12-03).
    seen.clear()
    charlstm.train(
        corpus,
        tmp_path / "preset",
        init_from=base_dir,
        preset="tiny",
        should_stop=lambda: True,
        steps=3,
        on_event=seen.append,
        **SMALL,
    )
    [warned] = [e for e in seen if type(e).__name__ == "Warned" and e.kind != "small validation"]
    # Only the sizes that differ from the base model's (2 layers, no norm, as tiny's), and the
    # learning rate a fine-tune puts in the place of the preset's (a walkthrough, 2026-12-04).
    assert warned.message == (
        "preset tiny: its model size (hidden_size 128, embed_dim 32) does not apply, as init_from keeps the base "
        "run's model; its learning rate gives way to the fine-tuning one (0.01; learning_rate sets another)"
    )
    # "small" sets no size of its own: it stands for the defaults', which do not apply either.
    seen.clear()
    charlstm.train(
        corpus, tmp_path / "small", init_from=base_dir, preset="small", should_stop=lambda: True, steps=3,
        on_event=seen.append, **SMALL,
    )  # fmt: skip
    [warned] = [e for e in seen if type(e).__name__ == "Warned" and e.kind != "small validation"]
    assert warned.message == (
        "preset small: its model size (hidden_size 256, embed_dim 64) does not apply, as init_from keeps the base "
        "run's model"
    )
    seen.clear()
    given_lr = charlstm.train(
        corpus,
        tmp_path / "preset-lr",
        init_from=base_dir,
        preset="tiny",
        hidden_size=24,
        embed_dim=8,
        learning_rate=5e-3,
        should_stop=lambda: True,
        steps=3,
        on_event=seen.append,
        **SMALL,
    )
    assert not [
        e for e in seen if type(e).__name__ == "Warned" and e.kind != "small validation"
    ]  # nothing of the preset left out
    assert given_lr.train_config.learning_rate == 5e-3
    assert start.step == 0 and start.train_config.learning_rate == FINE_TUNE_LEARNING_RATE
    old_v = base.vocab.size
    assert start.vocab.chars[:old_v] == base.vocab.chars
    assert set(start.vocab.chars[old_v:]) == set(NEW_TEXT) - set(base.vocab.chars)
    assert start.model_config.vocab_size == start.vocab.size
    embed, old_embed = np.asarray(start.params["embed"]["embedding"]), np.asarray(base.params["embed"]["embedding"])
    kernel, old_kernel = np.asarray(start.params["head"]["kernel"]), np.asarray(base.params["head"]["kernel"])
    bias, old_bias = np.asarray(start.params["head"]["bias"]), np.asarray(base.params["head"]["bias"])
    np.testing.assert_array_equal(embed[:old_v], old_embed)
    np.testing.assert_array_equal(kernel[:, :old_v], old_kernel)
    np.testing.assert_array_equal(bias[:old_v], old_bias)
    for name in ("lstm_0", "lstm_1"):
        for key, value in base.params[name].items():
            np.testing.assert_array_equal(np.asarray(start.params[name][key]), np.asarray(value))
    np.testing.assert_allclose(embed[old_v:], np.broadcast_to(old_embed.mean(axis=0), embed[old_v:].shape), atol=1e-6)
    mean_column = np.broadcast_to(old_kernel.mean(axis=1, keepdims=True), kernel[:, old_v:].shape)
    np.testing.assert_allclose(kernel[:, old_v:], mean_column, atol=1e-6)
    assert (bias[old_v:] == old_bias.min()).all()
    # On English, the new model's scores for the old characters are the old
    # model's (to float32 rounding: the head's product has more columns now).
    tokens = jnp.asarray(base.vocab.encode("The queen speaks to Hamlet.\n" * 3))[None]  # (1, T)
    logits = [
        forward(CharLSTM(m.model_config), m.params, tokens, zero_carry(m.model_config, 1))[0] for m in (base, start)
    ]
    np.testing.assert_allclose(np.asarray(logits[1])[..., :old_v], np.asarray(logits[0]), rtol=0, atol=1e-6)
    meta = checkpoint.describe(tmp_path / "tuned", prefer=checkpoint.LATEST)
    assert meta.init_from["checkpoint"] == str(base.path) and meta.init_from["vocab_size"] == old_v

    trained = []
    tuned = charlstm.resume(tmp_path / "tuned", on_event=trained.append)
    assert trained[-1].reason == "done" and trained[-1].step == 3
    assert all(np.isfinite(e.loss) for e in trained if type(e).__name__ == "Progress")
    # It trains: every parameter moved, the new characters' rows and columns too.
    for moved, was in zip(jax.tree.leaves(tuned.params), jax.tree.leaves(start.params), strict=True):
        assert not np.array_equal(np.asarray(moved), np.asarray(was))
    assert not np.array_equal(np.asarray(tuned.params["head"]["kernel"])[:, old_v:], kernel[:, old_v:])


def test_a_base_saved_before_it_trained_is_said_to_be_untrained(trained_run, tmp_path):
    """A run stopped before its first step keeps a checkpoint at step 0
    (resumable); fine-tuning from it is training from scratch: said. Not of
    a fine-tune stopped so: its step 0 holds its own base's trained weights."""
    base_dir, corpus = trained_run
    charlstm.train(corpus, tmp_path / "child", init_from=base_dir, should_stop=lambda: True, steps=3, **SMALL)
    seen: list = []
    charlstm.train(
        corpus, tmp_path / "grandchild", init_from=tmp_path / "child", should_stop=lambda: True, steps=3,
        on_event=seen.append, **SMALL,
    )  # fmt: skip
    assert not [e for e in seen if type(e).__name__ == "Warned" and "untrained" in e.message]
    unborn = charlstm.train(corpus, tmp_path / "unborn", should_stop=lambda: True, steps=3, **SMALL)
    assert unborn.step == 0
    seen.clear()
    charlstm.train(
        corpus, tmp_path / "tuned", init_from=tmp_path / "unborn", should_stop=lambda: True, steps=3,
        on_event=seen.append, **SMALL,
    )  # fmt: skip
    [warned] = [e for e in seen if type(e).__name__ == "Warned" and e.kind == "fine-tune"]
    assert warned.message == (
        f"init_from {unborn.path} was saved at step 0, before its run trained: this run starts from untrained "
        "weights, as a new one would (with its vocabulary)"
    )
    # Its own step 0 holds those untrained weights still: said again a generation on.
    seen.clear()
    charlstm.train(
        corpus, tmp_path / "again", init_from=tmp_path / "tuned", should_stop=lambda: True, steps=3,
        on_event=seen.append, **SMALL,
    )  # fmt: skip
    assert [e for e in seen if type(e).__name__ == "Warned" and "untrained" in e.message]


def test_fine_tuning_keeps_the_models_shape(trained_run, tmp_path):
    base_dir, corpus = trained_run
    with pytest.raises(charlstm.CharlstmError, match=r"is a 2x24 LSTM \(embedding 8\), but hidden_size 32 .*shape"):
        charlstm.train(corpus, tmp_path / "a", init_from=base_dir, hidden_size=32, **SMALL)
    with pytest.raises(charlstm.CharlstmError, match="but cell gru asks for another shape"):
        charlstm.train(corpus, tmp_path / "b", init_from=base_dir, cell="gru", **SMALL)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_another_cell_is_named_as_the_shape_it_asks_for(tmp_path):
    """A base with the default layer-normalised LSTM, asked for a GRU: the
    message names --cell, not --norm, which the user never gave."""
    import types

    from charlstm.config import ModelConfig, TrainConfig
    from charlstm.training import session

    base = types.SimpleNamespace(model_config=ModelConfig(vocab_size=10, norm="layer"), path=tmp_path / "base")
    with pytest.raises(charlstm.CharlstmError, match=r"but cell gru asks for another shape") as raised:
        session.fine_tune_run(None, base, {"cell": "gru"}, TrainConfig(), lambda *a: None)  # type: ignore[arg-type]
    assert "--norm" not in str(raised.value)


def test_resuming_on_text_with_new_characters_says_to_fine_tune_instead(tiny_corpus, tmp_path):
    from charlstm.errors import CorpusError
    from charlstm.training import session

    from .helpers import new_tiny_run, train

    train(new_tiny_run(tiny_corpus, steps=2), tmp_path / "run")
    with tiny_corpus.open("a", encoding="utf-8") as f:
        f.write("Ωmega €\n")
    with pytest.raises(CorpusError) as refused:
        session.resumed_run(tmp_path / "run", {"steps": 4}, force=True)
    assert str(refused.value) == (
        f"corpus {tiny_corpus} now has characters the model has no place for: 'Ω', '€'; to train on it, start a new "
        f"run from this one's weights: charlstm train {tiny_corpus} --init-from {tmp_path / 'run'}"
    )


def test_a_fine_tune_says_where_its_regularisation_differs_from_the_base_runs(tiny_corpus, tmp_path):
    """A base trained without dropout or weight decay, fine-tuned with a new
    run's (0.2 and 0.1) unless told otherwise: said, not silently switched
    on (a walkthrough, 2026-12-04)."""
    from .helpers import new_tiny_run, train

    train(new_tiny_run(tiny_corpus, steps=2, dropout=0.0, weight_decay=0.0), tmp_path / "base")

    def warnings(**options):
        seen = []
        out = tmp_path / f"tuned-{len(list(tmp_path.iterdir()))}"
        charlstm.train(
            tiny_corpus,
            out,
            init_from=tmp_path / "base",
            should_stop=lambda: True,
            steps=3,
            on_event=seen.append,
            **SMALL,
            **options,
        )
        return [e.message for e in seen if type(e).__name__ == "Warned" and e.kind != "small validation"]

    assert warnings() == [
        "fine-tuning with dropout 0.2 and weight_decay 0.1, a new run's, where the base run trained with 0 and "
        "0: give dropout and weight_decay to choose"
    ]
    assert warnings(dropout=0.0) == [
        "fine-tuning with weight_decay 0.1, a new run's, where the base run trained with 0: give weight_decay to choose"
    ]
    assert warnings(dropout=0.0, weight_decay=0.0) == []


def test_info_counts_a_base_models_characters_as_it_counts_its_own(tmp_path):
    """The document boundary of a model of several files is a symbol of its
    vocabulary, not a character: info named a base of 63 characters and the
    boundary "64 characters" (a walkthrough, 2026-12-05)."""
    from typer.testing import CliRunner

    from charlstm.cli import app

    texts = tmp_path / "texts"
    texts.mkdir()
    for name in ("a", "b"):
        (texts / f"{name}.txt").write_text("The queen speaks to Hamlet.\n" * 40, encoding="utf-8")
    tiny = {**SMALL, "hidden_size": 16, "embed_dim": 8, "num_layers": 1, "steps": 1}
    base = charlstm.train(texts, tmp_path / "base", **tiny)
    chars = base.vocab.size - 1  # and the boundary
    (tmp_path / "new.txt").write_text(NEW_TEXT, encoding="utf-8")
    charlstm.train(tmp_path / "new.txt", tmp_path / "tuned", init_from=tmp_path / "base", **tiny)
    shown = CliRunner().invoke(app, ["info", str(tmp_path / "tuned")], terminal_width=300)
    assert shown.exit_code == 0, shown.output
    assert f"(step 1, {chars} characters, trained on {texts})" in shown.stdout, shown.stdout
