"""A new run on a short text validates every two passes over it and stops
once it has memorised it (training/cadence.py), unless the user chose."""

from __future__ import annotations

import pytest

import charlstm
from charlstm.config import TrainConfig
from charlstm.core.scorer import Score
from charlstm.training import cadence, checkpoint, events, loop

from .helpers import new_tiny_run, train

# 512 characters a step: the tiny text's ~4,800 training characters are a
# pass of 9 steps, so the defaults' 250 steps between passes would be 27
# passes over it.
SHORT = {"hidden_size": 16, "embed_dim": 8, "batch_size": 16, "seq_len": 32, "log_every": 2}
STEPS = 200  # 22 passes over it: enough to fit the cadence to


@pytest.mark.parametrize(
    ("steps_per_pass", "given", "every", "patience"),
    [
        (6, set(), 12, cadence.PATIENCE),  # two passes of a 30 KB text under the defaults
        (2, set(), cadence.FEWEST_STEPS, cadence.PATIENCE),  # never more often than that
        (115, set(), 230, cadence.PATIENCE),  # about 470 KB: 2,300 steps read it 20 times
        (125, set(), 250, None),  # two passes are 250 steps: the defaults' cadence is as soon
        (270, set(), 250, None),  # the shipped corpus: unchanged
        (6, {"eval_every"}, 250, None),  # a cadence the user chose is kept, and so is the run's length
        (6, {"patience"}, 12, None),  # a patience the user chose is theirs
        (116, set(), 250, None),  # 2,300 steps read it under 20 times: too few for any of it to matter
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
    # Nothing else moves but the dropout, where it is raised (below).
    assert fitted.dropout == (config.dropout if short is None else (short.dropout or config.dropout))
    assert {k: v for k, v in vars(fitted).items() if k not in ("eval_every", "patience", "dropout")} == {
        k: v for k, v in vars(config).items() if k not in ("eval_every", "patience", "dropout")
    }


def test_a_run_too_short_to_memorise_its_text_is_left_as_it_is():
    """100 steps on a text of 6 steps a pass read it 16 times: the run ends
    before the patience could end it, and the note would contradict itself."""
    assert cadence.fitted(TrainConfig(steps=100), 6, set()) == (TrainConfig(steps=100), None)
    assert cadence.fitted(TrainConfig(steps=120), 6, set())[1] is not None


def test_a_run_filling_its_time_is_fitted_its_cadence_but_no_patience():
    """--fill-time asks for all of the time, and plans its steps later: the
    cadence follows the text, the run is not stopped early."""
    fitted, short = cadence.fitted(TrainConfig(steps=100, max_seconds=600), 6, set(), fills_time=True)
    assert (fitted.eval_every, fitted.patience) == (12, None)
    assert short is not None and short.fills_time and short.patience is None


def test_a_warm_up_longer_than_the_patience_is_left_as_it_is():
    """The large preset on the shipped corpus: 16 steps a pass, so ten
    passes every 32 steps would be over before its 2,000-step warm-up."""
    large = TrainConfig(steps=200_000, warmup_steps=2000, eval_every=2500, batch_size=256, seq_len=256)
    assert cadence.fitted(large, 16, set()) == (large, None)
    medium = TrainConfig(steps=40_000, warmup_steps=500, eval_every=1000, batch_size=128, seq_len=128)
    assert cadence.fitted(medium, 67, set())[0].eval_every == 134


def test_a_preset_cadence_is_fitted_too():
    """A preset's cadence is a default like the others: the tiny one's 150
    steps on a text of 12 steps a pass are 12 passes between validations."""
    fitted, short = cadence.fitted(TrainConfig(eval_every=150, patience=None), 12, set())
    assert (fitted.eval_every, fitted.patience) == (24, cadence.PATIENCE) and short is not None


@pytest.mark.parametrize(
    ("reads", "dropout"),
    [(20, 0.2), (21, 0.22), (26, 0.32), (27.5, 0.35), (35, 0.5), (383, 0.5)],
)
def test_dropout_grows_with_the_times_a_run_reads_its_text(reads, dropout):
    """Measured at 21 reads (0.2 better) and from 35 (0.5 better); between,
    in a straight line, so that no length of text is a cliff."""
    assert cadence.short_text_dropout(reads) == dropout


def test_the_defaults_dropout_is_raised_on_a_text_read_often_where_nobody_chose_one():
    config = TrainConfig()  # 2,300 steps
    fitted, short = cadence.fitted(config, 65, set())  # 300 KB: read about 35 times
    assert fitted.dropout == 0.5 and short is not None and short.dropout == 0.5
    near = cadence.fitted(config, 114, set())  # about 20 reads: the defaults'
    assert near[0].dropout == config.dropout and near[1] is not None and near[1].dropout is None
    for left, why in [
        (cadence.fitted(config, 65, {"dropout"}), "the user's"),
        (cadence.fitted(TrainConfig(dropout=0.0, eval_every=150), 65, set()), "a preset's (tiny, medium)"),
        (cadence.fitted(config, 65, set(), new_model=False), "a fine-tune's: not measured"),
        (cadence.fitted(TrainConfig(max_seconds=600), 65, set(), fills_time=True), "reads not known yet"),
        (cadence.fitted(TrainConfig(max_seconds=180), 65, set()), "a limit may end it after fewer reads"),
    ]:
        assert left[1] is not None and left[1].dropout is None, why
        assert left[0].dropout == (0.0 if "preset" in why else config.dropout), why
    # A cadence the user chose leaves the run as it is, its dropout too.
    assert cadence.fitted(config, 65, {"eval_every"}) == (config, None)


def _train(corpus, out, **options):
    seen: list[events.Event] = []
    charlstm.train(corpus, out, steps=STEPS, on_event=seen.append, **SHORT, **options)
    [started] = [e for e in seen if isinstance(e, events.Started)]
    notes = [e for e in seen if isinstance(e, events.Warned) and e.kind == "short text"]
    return checkpoint.describe(out, prefer=checkpoint.LATEST), started.windows_per_pass, notes


@pytest.mark.slow
def test_a_short_text_is_validated_every_two_passes_and_said_so(tiny_corpus, tmp_path):
    meta, steps_per_pass, [note] = _train(tiny_corpus, tmp_path / "run")
    every = max(cadence.FEWEST_STEPS, 2 * steps_per_pass)
    assert every < STEPS and meta.train_config.eval_every == every  # kept in the run: a resume validates alike
    assert meta.train_config.patience == cadence.PATIENCE
    assert [h["step"] for h in meta.history][:2] == [every, 2 * every]
    assert note.step == 0
    passes = every / steps_per_pass
    assert f"validates every {every} steps ({passes:.2g} passes over the text) instead of every 250" in note.message
    assert (
        f"stops after {cadence.PATIENCE} validation passes ({cadence.PATIENCE * passes:.0f} passes over the text) "
        "without a new best"
    ) in note.message
    reads = round(STEPS / steps_per_pass)
    assert note.message.startswith(f"this run would read its text about {reads} times ({STEPS} steps; a pass over it")
    dropout = cadence.short_text_dropout(STEPS / steps_per_pass)
    assert dropout > 0.2 and meta.train_config.dropout == dropout  # kept in the run, as the cadence is
    assert f"It trains with dropout {dropout:g} instead of 0.2, which learns more from a text read this often" in (
        note.message
    )


@pytest.mark.slow
def test_a_fine_tune_on_a_short_text_keeps_the_defaults_dropout(tiny_corpus, tmp_path):
    """Dropout for a short text was measured on new models only."""
    charlstm.train(tiny_corpus, tmp_path / "base", steps=2, **SHORT)
    meta, _, [note] = _train(tiny_corpus, tmp_path / "tuned", init_from=tmp_path / "base")
    assert meta.train_config.dropout == 0.2 and meta.train_config.patience == cadence.PATIENCE
    assert "dropout" not in note.message


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "every", "patience", "noted"),
    [({"eval_every": 50}, 50, None, False), ({"patience": 3}, None, 3, True)],
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


@pytest.mark.slow
def test_patience_0_on_the_command_line_trains_all_the_steps(tiny_corpus, tmp_path):
    """A short text's patience is its own unless the user says: 0 says none."""
    from typer.testing import CliRunner

    from charlstm.cli import app

    small = ["--hidden", "16", "--embed", "8", "-b", "16", "--seq-len", "32", "--steps", str(STEPS)]
    done = CliRunner().invoke(app, ["train", str(tiny_corpus), "-o", str(tmp_path / "run"), *small, "--patience", "0"])
    assert done.exit_code == 0, done.output
    meta = checkpoint.describe(tmp_path / "run", prefer=checkpoint.LATEST)
    assert meta.train_config.patience is None and meta.step == STEPS
    assert meta.train_config.eval_every < 250  # the cadence is still fitted
    assert "without a new best" not in done.output


def test_a_pass_worse_than_guessing_after_a_sound_best_is_not_called_noise(tiny_corpus, tmp_path, monkeypatch):
    """A model memorising a short text scored worse than guessing on later
    passes, and was told its samples would be noise and its --lr too high,
    while its best checkpoint, the one sample uses, stood far below guessing
    (a walkthrough, 2026-12-06). Said of the run's best, it is not."""
    scripted = iter([3.0, 2.0, 9.0, 9.5])

    def read(params, ids, streams):
        yield 0.0
        return Score(next(scripted), 10)

    monkeypatch.setattr(loop, "make_reader", lambda config: read)
    got = train(new_tiny_run(tiny_corpus, steps=8, eval_every=2, checkpoint_every=100), tmp_path / "run")
    assert not [e for e in got if isinstance(e, events.Warned) and e.kind == "worse than guessing"]


def test_a_run_the_short_text_s_patience_ended_says_whose_patience_it_was(tiny_corpus, tmp_path, monkeypatch):
    """The end line named "--patience 10", which the user never gave."""
    scripted = iter([3.0, 2.0] + [2.5] * 40)

    def read(params, ids, streams):
        yield 0.0
        return Score(next(scripted), 10)

    monkeypatch.setattr(loop, "make_reader", lambda config: read)
    seen: list[events.Event] = []
    charlstm.train(tiny_corpus, tmp_path / "run", steps=2 * STEPS, on_event=seen.append, **SHORT)
    end = seen[-1]
    assert isinstance(end, events.Finished) and end.reason == "patience" and end.best_step is not None
    assert end.detail == (
        f"no new best validation loss in the last {cadence.PATIENCE} validation passes "
        f"(a short text's patience, {cadence.PATIENCE}; patience sets it)"
    )
