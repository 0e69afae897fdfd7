import math

import numpy as np
import pytest

from charlstm import data, events, runs
from charlstm.train import learning_rate_schedule, make_evaluator

from .helpers import assert_trees_equal, losses, new_tiny_run, tiny_train_config, train


def test_training_lowers_the_loss(tiny_corpus, tmp_path):
    run = new_tiny_run(tiny_corpus, steps=150, batch_size=8, eval_every=50, log_every=10, learning_rate=1e-2)
    evts = train(run, tmp_path / "run")
    curve = losses(evts)
    assert curve[-1][1] < curve[0][1] - 0.5
    vals = [e.val_loss for e in evts if isinstance(e, events.Evaluated)]
    assert vals[-1] < vals[0]
    assert isinstance(evts[-1], events.Finished) and evts[-1].reason == "done" and evts[-1].step == 150


def test_stop_and_resume_is_bitwise_identical_to_straight_training(tiny_corpus, tmp_path):
    """N steps, a stop, a checkpoint on disk, a resume and N more steps give
    the same parameters, optimizer state, carry and losses as 2N steps."""
    straight = new_tiny_run(tiny_corpus)
    straight_events = train(straight, tmp_path / "straight")

    first = new_tiny_run(tiny_corpus)
    first_events = train(first, tmp_path / "split", stop_at=7)
    assert first_events[-1].reason == "interrupted" and first_events[-1].step == 7

    resumed = runs.resume_run(tmp_path / "split", {})
    assert int(resumed.state.step) == 7
    second_events = train(resumed, tmp_path / "split")

    assert_trees_equal(straight.state, resumed.state)
    assert losses(first_events) + losses(second_events) == losses(straight_events)
    straight_vals = [(e.step, e.val_loss) for e in straight_events if isinstance(e, events.Evaluated)]
    split_vals = [(e.step, e.val_loss) for e in first_events + second_events if isinstance(e, events.Evaluated)]
    assert split_vals == straight_vals


def test_resume_extends_a_finished_run(tiny_corpus, tmp_path):
    run = new_tiny_run(tiny_corpus, steps=6)
    train(run, tmp_path / "run")
    more = runs.resume_run(tmp_path / "run", {"steps": 10})
    evts = train(more, tmp_path / "run")
    assert evts[0].step == 6 and evts[-1].step == 10
    assert int(runs.resume_run(tmp_path / "run", {}).state.step) == 10


def test_resume_refuses_to_change_the_data_layout_or_model(tiny_corpus, tmp_path):
    train(new_tiny_run(tiny_corpus, steps=2), tmp_path / "run")
    with pytest.raises(Exception, match="cannot change batch_size"):
        runs.resume_run(tmp_path / "run", {"batch_size": 8})


def test_resume_refuses_a_changed_corpus_unless_forced(tiny_corpus, tmp_path):
    train(new_tiny_run(tiny_corpus, steps=2), tmp_path / "run")
    tiny_corpus.write_text(tiny_corpus.read_text() + "the king speaks\n", encoding="utf-8")
    with pytest.raises(Exception, match="changed since this run started"):
        runs.resume_run(tmp_path / "run", {})
    assert int(runs.resume_run(tmp_path / "run", {}, force=True).state.step) == 2


def test_evaluator_is_the_mean_per_character_loss(tiny_corpus, tiny_text):
    """On the training streams, the evaluator agrees with a direct
    computation of the mean cross-entropy with carried state."""
    import optax

    from charlstm.model import CharLSTM, zero_carry

    run = new_tiny_run(tiny_corpus)
    streams = data.Streams(run.vocab.encode(tiny_text), batch=3, seq_len=8)
    model = CharLSTM(run.model_config)
    carry = zero_carry(run.model_config, 3)
    per_char = []
    for w in range(len(streams)):
        batch = streams[w]
        logits, carry = model.apply({"params": run.state.params}, batch.inputs, carry)
        per_char.append(np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, batch.targets)))
    expected = float(np.mean(np.concatenate(per_char)))
    assert make_evaluator(run.model_config)(run.state.params, streams) == pytest.approx(expected, rel=1e-5)
    # An untrained model is close to uniform over the vocabulary.
    assert expected == pytest.approx(math.log(run.vocab.size), rel=0.1)


def test_schedule_warms_up_then_decays():
    cfg = tiny_train_config(steps=1000, warmup_steps=100, learning_rate=1e-3, min_lr_ratio=0.1)
    lr = learning_rate_schedule(cfg)
    assert float(lr(0)) == 0.0
    assert float(lr(100)) == pytest.approx(1e-3)
    assert float(lr(1000)) == pytest.approx(1e-4)
    assert float(lr(50)) < float(lr(100)) and float(lr(500)) < float(lr(100))
