"""A new run on a short text validates every two passes over it and stops
once it has memorised it (training/cadence.py), unless the user chose."""

from __future__ import annotations

import pytest

import charlstm
from charlstm.config import TrainConfig
from charlstm.training import cadence, checkpoint, events

# 512 characters a step: the tiny text's ~4,800 training characters are a
# pass of 9 steps, so the defaults' 250 steps between passes would be 27
# passes over it.
SHORT = {"hidden_size": 16, "embed_dim": 8, "batch_size": 16, "seq_len": 32, "log_every": 2}


@pytest.mark.parametrize(
    ("steps_per_pass", "given", "every", "patience"),
    [
        (6, set(), 12, cadence.PATIENCE),  # two passes of a 30 KB text under the defaults
        (2, set(), cadence.FEWEST_STEPS, cadence.PATIENCE),  # never more often than that
        (124, set(), 248, cadence.PATIENCE),  # about 500 KB: still two passes under 250
        (125, set(), 250, None),  # from there on the defaults' cadence is the sooner
        (270, set(), 250, None),  # the shipped corpus: unchanged
        (6, {"eval_every"}, 250, None),  # a cadence the user chose is kept, and so is the run's length
        (6, {"patience"}, 12, None),  # a patience the user chose is theirs
    ],
)
def test_the_cadence_follows_passes_over_a_short_text(steps_per_pass, given, every, patience):
    config = TrainConfig()
    fitted, short = cadence.fitted(config, steps_per_pass, given)
    assert fitted.eval_every == every
    assert fitted.patience == patience
    assert (short is None) == (every == config.eval_every)
    if short is not None:
        assert (short.eval_every, short.chosen_every, short.patience, short.steps_per_pass) == (
            every,
            250,
            patience,
            steps_per_pass,
        )
    # Nothing else moves.
    assert {k: v for k, v in vars(fitted).items() if k not in ("eval_every", "patience")} == {
        k: v for k, v in vars(config).items() if k not in ("eval_every", "patience")
    }


def test_a_preset_cadence_is_fitted_too():
    """A preset's cadence is a default like the others: the tiny one's 150
    steps on a text of 12 steps a pass are 12 passes between validations."""
    fitted, short = cadence.fitted(TrainConfig(eval_every=150, patience=None), 12, set())
    assert (fitted.eval_every, fitted.patience) == (24, cadence.PATIENCE) and short is not None


def _train(corpus, out, **options):
    seen: list[events.Event] = []
    charlstm.train(corpus, out, steps=40, on_event=seen.append, **SHORT, **options)
    [started] = [e for e in seen if isinstance(e, events.Started)]
    notes = [e for e in seen if isinstance(e, events.Warned) and e.kind == "short text"]
    return checkpoint.describe(out, prefer=checkpoint.LATEST), started.windows_per_pass, notes


@pytest.mark.slow
def test_a_short_text_is_validated_every_two_passes_and_said_so(tiny_corpus, tmp_path):
    meta, steps_per_pass, [note] = _train(tiny_corpus, tmp_path / "run")
    every = max(cadence.FEWEST_STEPS, 2 * steps_per_pass)
    assert every < 40 and meta.train_config.eval_every == every  # kept in the run: a resume validates alike
    assert meta.train_config.patience == cadence.PATIENCE
    assert [h["step"] for h in meta.history][:2] == [every, 2 * every]
    assert note.step == 0
    assert f"validates every {every} steps (2 passes over the text) instead of every 250" in note.message
    assert f"stops after {cadence.PATIENCE} passes without a new best (patience sets it)" in note.message
    assert note.message.startswith(f"a short text: a pass over it is {steps_per_pass} steps, so 40 steps would read it")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "every", "patience", "noted"),
    [({"eval_every": 5}, 5, None, False), ({"patience": 3}, None, 3, True)],
)
def test_what_the_user_chose_is_kept(tiny_corpus, tmp_path, options, every, patience, noted):
    meta, _, notes = _train(tiny_corpus, tmp_path / "run", **options)
    if every is not None:
        assert meta.train_config.eval_every == every
    assert meta.train_config.patience == patience
    assert bool(notes) == noted
    if noted:
        [note] = notes
        assert "stops after" not in note.message  # the user's patience is not announced as the run's
