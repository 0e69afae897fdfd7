import dataclasses
import itertools
import math
import re
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import charlstm
from charlstm.core import scorer
from charlstm.core.model import zero_carry
from charlstm.core.scorer import Score, make_scorer
from charlstm.core.state import decay_mask, hyperparameters, learning_rate
from charlstm.core.step import make_train_step
from charlstm.errors import CharlstmError, ConfigError, CorpusError
from charlstm.text.streams import Streams
from charlstm.training import checkpoint, events, loop, session, setup_notes
from charlstm.training.runlog import read_metrics
from charlstm.training.timefit import TimeFit

from .helpers import assert_trees_equal, clock_per_step, losses, new_tiny_run, tiny_train_config, train
from .test_corpus import write_folder


def test_training_lowers_the_loss(tiny_corpus, tmp_path):
    run = new_tiny_run(tiny_corpus, steps=80, batch_size=8, eval_every=40, log_every=10, learning_rate=1e-2)
    evts = train(run, tmp_path / "run")
    curve = losses(evts)
    assert curve[-1][1] < curve[0][1] - 0.5, curve  # 3.75 to 2.84 (2026-12-06)
    vals = [e.val_loss for e in evts if isinstance(e, events.Evaluated)]
    assert vals[-1] < vals[0]
    assert isinstance(evts[-1], events.Finished) and evts[-1].reason == "done" and evts[-1].step == 80


@pytest.mark.parametrize(
    ("norm", "dropout", "folder"),
    [("none", 0.0, False), ("layer", 0.2, False), ("none", 0.0, True)],
)
def test_stop_and_resume_is_bitwise_identical_to_straight_training(tiny_corpus, tmp_path, norm, dropout, folder):
    """N steps, a stop, a checkpoint on disk, a resume and N more steps give
    the same parameters, optimizer state, carry and losses as 2N steps (with
    dropout too: its masks are a function of the run's key, the step and the
    stream); then the default cell and dropout; last, a folder of files, which
    then refuses to resume once one of them changed."""
    corpus = tiny_corpus
    if folder:
        corpus = tmp_path / "poems"
        files = write_folder(corpus, 4, lines=25)
    straight = new_tiny_run(corpus, {"norm": norm}, dropout=dropout)
    assert straight.tokens.boundary == folder
    straight_events = train(straight, tmp_path / "straight")

    first = new_tiny_run(corpus, {"norm": norm}, dropout=dropout)
    first_events = train(first, tmp_path / "split", stop_at=7)
    assert first_events[-1].reason == "interrupted" and first_events[-1].step == 7

    resumed = session.resumed_run(tmp_path / "split", {})
    assert int(resumed.state.step) == 7
    second_events = train(resumed, tmp_path / "split")

    assert_trees_equal(straight.state, resumed.state)
    assert losses(first_events) + losses(second_events) == losses(straight_events)
    straight_vals = [(e.step, e.val_loss) for e in straight_events if isinstance(e, events.Evaluated)]
    split_vals = [(e.step, e.val_loss) for e in first_events + second_events if isinstance(e, events.Evaluated)]
    assert split_vals == straight_vals
    if folder:
        files[1].write_text(files[1].read_text(encoding="utf-8") + "one more line\n", encoding="utf-8")
        changed = f"corpus changed since this run started: 1 file changed .*{files[1].name}"
        with pytest.raises(CorpusError, match=changed):
            session.resumed_run(tmp_path / "split", {"steps": 14})
        assert int(session.resumed_run(tmp_path / "split", {"steps": 14}, force=True).state.step) == 12


def test_patience_stops_a_run_that_stopped_improving_and_keeps_its_best(tiny_corpus, tmp_path, monkeypatch):
    """Validation losses scripted as 3.0, 2.0 (best), 2.5, 2.1, 2.2 stop a
    --patience 3 run at the fifth pass; its best checkpoint is the second's.
    Resumed, it counts on from its history: it stops again at once, unless
    given more patience."""
    scripted = iter([3.0, 2.0, 2.5, 2.1, 2.2, 2.4, 2.3])

    def read(params, ids, streams):
        yield 0.0
        return Score(next(scripted), 10)

    monkeypatch.setattr(loop, "make_reader", lambda config: read)
    run_dir = tmp_path / "run"
    evts = train(new_tiny_run(tiny_corpus, steps=20, eval_every=2, checkpoint_every=100, patience=3), run_dir)
    assert [e.step for e in evts if isinstance(e, events.Evaluated)] == [2, 4, 6, 8, 10]
    end = evts[-1]
    assert (end.reason, end.step, end.best_val_loss, end.best_step) == ("patience", 10, 2.0, 4)
    assert "no new best validation loss in the last 3 validation passes (patience 3)" in end.detail
    last = read_metrics(run_dir)[-1]
    assert last["stopped"] == "patience" and last["detail"] == end.detail and last["best_step"] == 4
    assert checkpoint.locate(run_dir)[1] == 4 and charlstm.load(run_dir).step == 4

    again = train(session.resumed_run(run_dir, {}), run_dir)
    assert again[-1].reason == "patience" and not any(isinstance(e, events.Progress) for e in again)
    # Nothing compiled or saved again (the display had said "saved checkpoint" of a save that wrote nothing).
    assert not any(isinstance(e, events.Compiled | events.Saved) for e in again)
    assert (again[-1].detail, again[-1].best_step) == (end.detail, 4)
    assert [e.trains for e in again if isinstance(e, events.Started)] == [False]  # no "training on" line
    more = train(session.resumed_run(run_dir, {"patience": 5}), run_dir)
    # The progress line shows the last pass's loss from the start, not `val -` until the next.
    assert [(e.trains, e.val_loss) for e in more if isinstance(e, events.Started)] == [(True, 2.2)]
    assert [e.step for e in more if isinstance(e, events.Evaluated)] == [12, 14]
    assert (more[-1].reason, more[-1].step, more[-1].best_step) == ("patience", 14, 4)


def test_resume_extends_a_finished_run(tiny_corpus, tmp_path):
    run = new_tiny_run(tiny_corpus, steps=6)
    train(run, tmp_path / "run")
    seen: list[events.Event] = []
    more = session.resumed_run(tmp_path / "run", {"steps": 10}, on_event=seen.append)
    evts = train(more, tmp_path / "run")
    assert evts[0].step == 6 and evts[-1].step == 10
    assert int(session.resumed_run(tmp_path / "run", {}).state.step) == 10
    # Its decay restarts over the new total, from near the peak: said.
    [warned] = [e for e in seen if isinstance(e, events.Warned)]
    old, new = (float(learning_rate(hyperparameters(run.train_config), 6)), more.train_config)
    now = float(learning_rate(hyperparameters(new), 6))
    assert warned.kind == "schedule" and now > 2 * old
    assert warned.message == (
        f"the schedule now spans 10 steps, so the learning rate jumps from {old:.2e} to {now:.2e} at the next "
        "step and decays from there: a warm restart, without a second warm-up; learning_rate sets the peak"
    )
    # The API says it after the run is opened, so that a run's first line names its directory.
    seen.clear()
    charlstm.resume(tmp_path / "run", steps=20, on_event=seen.append)
    kinds = [type(e).__name__ for e in seen if isinstance(e, events.Opened | events.Warned)]
    assert kinds[:2] == ["Opened", "Warned"]
    # Where the rate hardly moves, or the user gave the new peak, nothing is said.
    for overrides in ({"steps": 21}, {"learning_rate": 0.5}):
        seen.clear()
        session.resumed_run(tmp_path / "run", overrides, on_event=seen.append)
        assert not [e for e in seen if isinstance(e, events.Warned) and e.kind == "schedule"], overrides
    # A total long enough to take a warm-up (a tenth of it, 100 steps at most) past step 20, where the
    # run stands: the rate climbs again, and the warning says so (it had said "without a second warm-up").
    for overrides, goes in (({"steps": 1000}, "jumps"), ({"steps": 1000, "learning_rate": 1e-6}, "drops")):
        seen.clear()
        longer = session.resumed_run(tmp_path / "run", overrides, on_event=seen.append).train_config
        [warned] = [e for e in seen if isinstance(e, events.Warned) and e.kind == "schedule"]
        before = float(learning_rate(hyperparameters(dataclasses.replace(new, steps=20)), 20))  # as trained to 20
        now = float(learning_rate(hyperparameters(longer), 20))
        assert warned.message == (
            f"the schedule now spans 1,000 steps and warms up over its first 100, so the learning rate {goes} from "
            f"{before:.2e} to {now:.2e} at the next step, climbs to its peak of {longer.learning_rate:.2e} at step "
            "100 and decays from there; learning_rate sets the peak"
        )
    # A new peak that leaves the rate where it stands (a fifth of it, 20 steps into a warm-up of 100): nothing said.
    seen.clear()
    session.resumed_run(tmp_path / "run", {"steps": 1000, "learning_rate": 5 * before}, on_event=seen.append)
    assert not [e for e in seen if isinstance(e, events.Warned) and e.kind == "schedule"]


def test_a_forced_resume_on_other_validation_text_starts_the_validation_record_afresh(tiny_corpus, tmp_path):
    """Losses on another validation text do not compare with the best so far:
    a pass on it was called a new best, or --patience stopped a run that was
    learning (a walkthrough, 2026-12-06). Each checkpoint now records a digest
    of its validation text, so a forced resume can tell."""
    run_dir = tmp_path / "run"
    train(new_tiny_run(tiny_corpus, steps=8, eval_every=4), run_dir)
    best = checkpoint.describe(run_dir).best_val_loss
    text = tiny_corpus.read_text()

    def resumed(changed: str) -> tuple[session.Run, list[str]]:
        tiny_corpus.write_text(changed)
        seen: list[events.Event] = []
        again = session.resumed_run(run_dir, {"steps": 12}, force=True, on_event=seen.append)
        return again, [e.message for e in seen if isinstance(e, events.Warned) and e.kind == "corpus changed"]

    # Its head changed (two characters swapped), the tail that validates kept: the best still compares.
    again, [said] = resumed(text[1] + text[0] + text[2:])
    assert said == "the corpus changed since the run started, but not its validation text: later validation " + (
        f"losses compare with the best so far ({best:.4f})"
    )
    assert again.best_val_loss == best and [h["step"] for h in again.history] == [4, 8]
    # Cut short: its last tenth, which validates, is other text now.
    again, [said] = resumed(text[: len(text) * 3 // 4])
    assert said.startswith(
        f"the corpus changed since the run started, and its validation text with it: the best so far ({best:.4f}) "
        "and the passes up to step 8 were measured on the earlier text, so the run's validation record starts afresh"
    )
    assert again.best_val_loss is None and again.history == []
    train(again, run_dir)
    # The checkpoint it resumed from still names the text its weights were trained on (the pass the run
    # owed there, on the new text, had rewritten it as the new text's).
    assert checkpoint.describe(run_dir / "checkpoints" / "latest" / "8").corpus_sha256 != again.corpus.sha256
    # A pass on the new text at once (the run owes one where it stands), then on: the best is theirs.
    history = checkpoint.load(run_dir, prefer=checkpoint.LATEST).history
    assert [h["step"] for h in history] == [8, 12]
    assert checkpoint.describe(run_dir).best_val_loss == min(h["val_loss"] for h in history)
    # And a later resume, on the text as it is now, compares with that best, not the earlier text's.
    tiny_corpus.write_text(text[: len(text) * 3 // 4])
    later = session.resumed_run(run_dir, {"steps": 16})
    assert later.best_val_loss == checkpoint.describe(run_dir).best_val_loss


def test_a_resume_that_shortens_a_stopped_run_says_its_learning_rate_drops(tiny_corpus, tmp_path):
    run = new_tiny_run(tiny_corpus, steps=40)
    train(run, tmp_path / "run", stop_at=20)
    seen: list[events.Event] = []
    shorter = session.resumed_run(tmp_path / "run", {"steps": 22}, on_event=seen.append)
    [warned] = [e for e in seen if isinstance(e, events.Warned)]
    old = float(learning_rate(hyperparameters(run.train_config), 20))
    now = float(learning_rate(hyperparameters(shorter.train_config), 20))
    assert warned.kind == "schedule" and 2 * now < old
    assert warned.message == (
        f"the schedule now ends at step 22, so the learning rate drops from {old:.2e} to {now:.2e} at the next "
        "step and decays to its floor from there; steps 40 keeps the schedule the run had"
    )
    # A total a little shorter moves the rate a little: nothing is said.
    seen.clear()
    session.resumed_run(tmp_path / "run", {"steps": 38}, on_event=seen.append)
    assert not [e for e in seen if isinstance(e, events.Warned)]


def test_a_schedule_that_stands_at_zero_is_extended_quietly_or_warned_without_dividing_by_it(tiny_corpus, tmp_path):
    """Step 0 (a Ctrl-C while compiling) and a run that decayed to 0 (min_lr_ratio 0) stand at a rate of 0."""
    train(new_tiny_run(tiny_corpus, steps=4), tmp_path / "zero", stop_at=0)
    seen: list[events.Event] = []
    session.resumed_run(tmp_path / "zero", {"steps": 40}, on_event=seen.append)
    assert not [e for e in seen if isinstance(e, events.Warned)]
    train(new_tiny_run(tiny_corpus, steps=4, min_lr_ratio=0.0), tmp_path / "floor")
    session.resumed_run(tmp_path / "floor", {"steps": 40}, on_event=seen.append)
    assert [e.kind for e in seen if isinstance(e, events.Warned)] == ["schedule"]


def test_resume_refuses_to_change_the_data_layout_or_model(trained_run):
    """What the checkpoint's arrays or the stream's position depend on cannot
    change in a resume; the run is left as it was."""
    fixed = {"batch_size": 8, "seq_len": 8, "val_fraction": 0.2, "reset_chars": 100, "seed": 5}
    fixed |= {"hidden_size": 8, "num_layers": 3, "embed_dim": 4, "cell": "gru", "norm": "none", "dropout": 0.5}
    before = checkpoint.locate(trained_run[0], prefer=checkpoint.LATEST)
    for field, value in fixed.items():
        with pytest.raises(ConfigError, match=f"^cannot change {field} when resuming; start a new run instead$"):
            session.resumed_run(trained_run[0], {field: value})
    assert checkpoint.locate(trained_run[0], prefer=checkpoint.LATEST) == before


def test_resume_refuses_a_changed_corpus_unless_forced(tiny_corpus, tmp_path):
    train(new_tiny_run(tiny_corpus, steps=2), tmp_path / "run")
    tiny_corpus.write_text(tiny_corpus.read_text() + "the king speaks\n", encoding="utf-8")
    with pytest.raises(Exception, match="changed since this run started"):
        session.resumed_run(tmp_path / "run", {})
    seen = []
    forced = session.resumed_run(tmp_path / "run", {}, force=True, on_event=seen.append)
    assert int(forced.state.step) == 2
    # Its held-out text, the last tenth, changed with it: said, and its validation record starts afresh.
    assert forced.best_val_loss is None and forced.history == []
    assert [e.kind for e in seen if type(e).__name__ == "Warned"] == ["corpus changed"]


def test_schedule_warms_up_then_decays():
    cfg = tiny_train_config(steps=1000, warmup_steps=100, learning_rate=1e-3, min_lr_ratio=0.1)
    h = hyperparameters(cfg)
    lr = jax.jit(learning_rate)
    assert float(lr(h, 0)) == 0.0
    assert float(lr(h, 100)) == pytest.approx(1e-3)
    assert float(lr(h, 1000)) == pytest.approx(1e-4)
    assert float(lr(h, 50)) < float(lr(h, 100)) and float(lr(h, 500)) < float(lr(h, 100))


@pytest.mark.parametrize(
    "steps, peak, min_lr_ratio, warmup",
    [
        (2300, 1e-2, 0.05, 100),
        (120, 3.7e-3, 0.33, 7),
        (7, 3e-3, 0.1, 5),
        (1000, 0.1, 0.0, 0),
        (12345, 7.7e-3, 0.01, 333),
    ],
)
def test_schedule_is_optaxs_bit_for_bit(steps, peak, min_lr_ratio, warmup):
    """The schedule's numbers are traced arguments of the step (so runs that
    differ in them share one compiled program), yet give at every step the
    bits optax's schedule gave compiled with them as constants, as the step
    did before: old runs resume and fixed seeds reproduce exactly. Each
    count is computed alone (`lax.map`), as in the step: XLA folds scalar
    constants there that it leaves apart in a vectorised schedule. Should
    a JAX or XLA upgrade fold differently, this fails every time, not now
    and then: re-derive the folded fields of Hyperparameters. They were
    derived on JAX 0.10, which pip installs on Python 3.11 (CI's); the JAX
    of newer Pythons (0.12.1, 2026-12-06) folds differently, and there the
    two stay within float32 rounding of the peak (1.7e-7 of it at most)."""
    cfg = tiny_train_config(steps=steps, learning_rate=peak, min_lr_ratio=min_lr_ratio, warmup_steps=warmup)
    counts = jnp.arange(steps + 10, dtype=jnp.int32)
    reference = optax.warmup_cosine_decay_schedule(0.0, peak, min(warmup, steps // 10), steps, peak * min_lr_ratio)
    expected = np.asarray(jax.jit(lambda c: jax.lax.map(reference, c))(counts))
    got = np.asarray(jax.jit(lambda h, c: jax.lax.map(lambda x: learning_rate(h, x), c))(hyperparameters(cfg), counts))
    if jax.__version__.startswith(SCHEDULE_DERIVED_ON):
        assert np.array_equal(got.view(np.int32), expected.view(np.int32))
    else:
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * peak)


SCHEDULE_DERIVED_ON = "0.10."  # the JAX whose folding Hyperparameters' fields reproduce bit for bit


def test_a_time_limit_fits_the_schedule_to_end_with_it(tiny_corpus, tmp_path, monkeypatch):
    """A run its time limit would cut off long before its last step: after
    timing steps 10 to 20 the schedule is fitted to end near the limit (an
    argument of the compiled step: nothing compiles again), planned again
    after validation passes, only ever shortened; the checkpoint records it.
    The loop's clock is a fake that moves only by a set cost per step."""
    steps, limit, step_cost = 10**6, 2.0, 1 / 64  # 128 steps fit, less the validation passes' time
    clock = clock_per_step(monkeypatch, step_cost)
    clock.costs(monkeypatch, loop.TrainingLoop, "_validate", 1 / 8)
    run = new_tiny_run(
        tiny_corpus, steps=steps, warmup_steps=1, max_seconds=limit, eval_every=50, checkpoint_every=10**6, log_every=5
    )
    evts = train(run, tmp_path / "run")
    plans = [e for e in evts if isinstance(e, events.Rescheduled)]
    assert plans and plans[0].step == 20 and plans[0].was == steps and plans[0].max_seconds == limit
    assert all(later.steps < earlier.steps == later.was for earlier, later in itertools.pairwise(plans))
    finished = evts[-1]
    assert isinstance(finished, events.Finished) and finished.reason == "done"
    assert finished.step == plans[-1].steps <= limit / step_cost and len(plans) == 3, plans
    # Every report after a plan shows its end.
    plan = None
    for e in evts:
        if isinstance(e, events.Rescheduled):
            plan = e.steps
        elif isinstance(e, events.Progress) and plan is not None:
            assert e.total_steps == plan
    reports = [e for e in evts if isinstance(e, events.Progress)]
    assert checkpoint.load(tmp_path / "run", checkpoint.LATEST).train_config.steps == plans[-1].steps
    logged = [r["rescheduled_to"] for r in read_metrics(tmp_path / "run") if "rescheduled_to" in r]
    assert logged == [plan.steps for plan in plans]
    # The last step ran at the fitted schedule's last learning rate.
    fitted = hyperparameters(dataclasses.replace(run.train_config, steps=plans[-1].steps))
    assert reports[-1].lr == float(jax.jit(learning_rate)(fitted, plans[-1].steps - 1))


def test_saves_the_first_plan_did_not_count_shorten_the_schedule_between_passes(tiny_corpus, tmp_path, monkeypatch):
    """No validation pass before the limit (--eval-every past it), and saves
    that make the run too long for its limit after the first plan found it
    fitted: the schedule is still ended where the limit stops the run, so its
    learning rate decays (it stopped undecayed, 2026-12-06's walkthrough)."""
    steps, limit, step_cost = 100, 2.0, 1 / 64  # 128 steps would fit, without the saves
    clock = clock_per_step(monkeypatch, step_cost)
    clock.costs(monkeypatch, loop.TrainingLoop, "_checkpoint", 1 / 4)
    run = new_tiny_run(
        tiny_corpus, steps=steps, warmup_steps=1, max_seconds=limit, eval_every=10**6, checkpoint_every=30, log_every=5
    )
    evts = train(run, tmp_path / "run")
    plans = [e for e in evts if isinstance(e, events.Rescheduled)]
    finished = evts[-1]
    assert plans and all(p.step > 20 and p.steps < p.was for p in plans), plans
    assert isinstance(finished, events.Finished) and finished.reason == "done" and finished.step == plans[-1].steps


def test_a_first_save_slower_than_the_rest_does_not_shorten_the_schedule(tiny_corpus, tmp_path, monkeypatch):
    """A session's first save is slower than its later ones (Orbax starting
    up): counted as the steps' own pace, it cut a 18-second run's plan by
    two fifths, and the run ended with 28% of its time unused (a
    walkthrough, 2026-12-06). It is spent time, not a pace."""
    limit, step_cost = 4.0, 1 / 64  # 256 steps fit, less the first save's half second
    clock = clock_per_step(monkeypatch, step_cost)
    clock.costs(monkeypatch, loop.TrainingLoop, "_checkpoint", [0.5, 0.0])
    run = new_tiny_run(
        tiny_corpus, steps=10**4, warmup_steps=1, max_seconds=limit, eval_every=10**6, checkpoint_every=30, log_every=5
    )
    evts = train(run, tmp_path / "run")
    finished = evts[-1]
    assert isinstance(finished, events.Finished) and finished.reason == "done", finished
    assert clock.now >= 0.9 * limit, (clock.now, [e for e in evts if isinstance(e, events.Rescheduled)])


def test_the_time_to_the_end_counts_the_steps_and_the_passes_to_come_not_the_first_passs_compilation(
    tiny_corpus, tmp_path, monkeypatch
):
    """A tiny model's first validation pass took 9 of its 10 seconds
    compiling, and the time left, taken over the run's whole time, read 4:39
    where about a minute was left (a walkthrough, 2026-12-06). It is now the
    steps left at the session's pace, plus the passes to come at the latest
    pass's cost once a pass after the first has been timed."""
    step_cost = 1 / 64
    clock = clock_per_step(monkeypatch, step_cost)
    clock.costs(monkeypatch, loop.TrainingLoop, "_validate", [4.0, 0.5])
    run = new_tiny_run(tiny_corpus, steps=100, eval_every=20, checkpoint_every=10**6, log_every=5)
    reports = {e.step: e.time_to_end for e in train(run, tmp_path / "run") if isinstance(e, events.Progress)}
    assert reports[10] == pytest.approx(90 * step_cost)  # no pass timed yet but the first
    assert reports[25] == pytest.approx(75 * step_cost)
    # From the second pass on: 55 steps, and the passes at steps 60, 80 and 100.
    assert reports[45] == pytest.approx(55 * step_cost + 3 * 0.5)
    # A pass step's report comes just before its own pass.
    assert reports[60] == pytest.approx(40 * step_cost + 3 * 0.5)
    assert reports[100] == pytest.approx(0.5)


@pytest.mark.parametrize(("val_fraction", "warned"), [(0.05, True), (0.3, False)])
def test_a_validation_text_too_short_to_pick_the_best_by_is_warned_of(tiny_corpus, tmp_path, val_fraction, warned):
    """The tiny text's 5% is 266 characters, under the 1,000 below which a
    validation loss moves by chance as much as by learning; its 30% is not."""
    run = new_tiny_run(tiny_corpus, steps=2, val_fraction=val_fraction)
    found = [e for e in train(run, tmp_path / "run", stop_at=1) if isinstance(e, events.Warned)]
    small = [e for e in found if e.kind == "small validation"]
    held_out = round(len(tiny_corpus.read_text(encoding="utf-8")) * val_fraction)
    assert held_out < setup_notes.SMALL_VALIDATION if warned else held_out > setup_notes.SMALL_VALIDATION
    if warned:
        [message] = [e.message for e in small]
        assert re.fullmatch(
            r"validation scores only \d{3} characters: a loss over so few moves by chance as much as by learning, "
            r"and the best checkpoint is picked by it; a larger val_fraction gives a steadier measure",
            message,
        )
    else:
        assert not small
    if warned:  # said once, to the new run: a resumed one keeps its split, and resume cannot change it
        again = train(session.resumed_run(tmp_path / "run", {}), tmp_path / "run")
        assert not [e for e in again if isinstance(e, events.Warned) and e.kind == "small validation"]


def test_a_run_asked_to_fill_its_time_is_lengthened_to_it(tiny_corpus, tmp_path, monkeypatch):
    """--fill-time: a run whose steps would end long before its time limit
    is lengthened at its first plan to fill it, later plans only shorten it
    (a lengthening then would raise a decaying learning rate again), and it
    ends near the limit with its schedule decayed; the checkpoint records
    the steps and the warm-up it was fitted to. Timing decides nothing: the
    loop's clock is a fake that moves only by a set cost per step."""
    steps, limit, step_cost = 100, 4.0, 1 / 64  # 256 steps fit; binary fractions add exactly
    clock_per_step(monkeypatch, step_cost)
    # A warm-up of 50 asked, 10 used at first (a tenth of 100 steps); 50 once the run is longer.
    run = new_tiny_run(
        tiny_corpus, steps=steps, warmup_steps=50, max_seconds=limit, eval_every=200, checkpoint_every=10**5
    )
    judged: list[tuple[int, int]] = []  # (step, warm-up) at each report the health warnings see
    observe = loop.Health.observe
    monkeypatch.setattr(loop.Health, "observe", lambda h, e: judged.append((e.step, h.warmup_steps)) or observe(h, e))
    evts = train(run, tmp_path / "run", time_use="fill")
    plans = [e for e in evts if isinstance(e, events.Rescheduled)]
    assert plans and plans[0].step == 20 and plans[0].was == steps < plans[0].steps <= limit / step_cost
    # Lengthened again only in its first quarter, where the learning rate is near its peak.
    assert all(later.steps < later.was or later.step < later.was / 4 for later in plans[1:])
    finished = evts[-1]
    assert isinstance(finished, events.Finished) and finished.reason == "done"
    assert steps < finished.step == plans[-1].steps
    # Most of its time trained, where its 100 steps would have taken 1.6 s of the 4.
    assert limit * 3 / 4 < finished.step_seconds <= limit
    saved = checkpoint.load(tmp_path / "run", checkpoint.LATEST).train_config
    assert saved.steps == plans[-1].steps
    assert saved.warmup_steps == saved.warmup_used == min(50, plans[0].steps // 10)
    # Nothing is judged in the lengthened warm-up either (health.py).
    assert all(warmup == saved.warmup_used for step, warmup in judged if step > plans[0].step)
    # The last step ran at the fitted schedule's last learning rate.
    reports = [e for e in evts if isinstance(e, events.Progress)]
    assert reports[-1].lr == float(jax.jit(learning_rate)(hyperparameters(saved), saved.steps - 1))


def test_a_filled_run_resumed_trains_on_to_its_fitted_steps(tiny_corpus, tmp_path):
    """Stopped after its first plans, a --fill-time run resumes as any run
    does: to the steps it was last fitted to, its limit only ever shortening.
    (Steps that speed up early lengthen the plan again: on a loaded machine
    a second plan came before step 30, CI 2026-12-06, so the last counts.)"""
    run = new_tiny_run(tiny_corpus, steps=100, max_seconds=2.0, eval_every=10**5, checkpoint_every=10**5)
    first = train(run, tmp_path / "run", stop_at=30, time_use="fill")
    plans = [e for e in first if isinstance(e, events.Rescheduled)]
    assert plans and first[-1].reason == "interrupted" and plans[0].steps > 100
    plan = plans[-1]
    again = train(session.resumed_run(tmp_path / "run", {}), tmp_path / "run")
    assert all(e.steps < e.was for e in again if isinstance(e, events.Rescheduled))
    assert again[-1].step <= plan.steps


def test_a_filled_run_is_lengthened_only_near_its_peak_and_never_at_its_end():
    """TimeFit alone, on a made-up clock: the first plan lengthens; steps
    that then run twice as fast lengthen it again in its first quarter, not
    after (a warm restart); at its last step nothing is planned."""
    config = tiny_train_config(steps=100, warmup_steps=1, max_seconds=100.0, log_every=10)
    fit = TimeFit(config, 0, "fill")
    assert fit.plan(config, 10, False, 1.0, 1.0) is None  # the timing starts
    first = fit.plan(config, 20, False, 2.0, 2.0)  # 0.1 s a step: some 900 more fit
    assert first is not None and first > 100
    config = dataclasses.replace(config, steps=first)
    second = fit.plan(config, 40, True, 2.5, 2.5)  # 0.05 s a step since: some 1,800 more
    assert second is not None and second > first
    config = dataclasses.replace(config, steps=second)
    assert second / 4 < 600 and fit.plan(config, 600, True, 20.0, 20.0) is None  # faster still: not taken
    assert fit.plan(config, second, True, 95.0, 95.0) is None


def test_a_later_plan_held_at_the_floor_is_said_once():
    """TimeFit alone: a first plan past the floor (ten times the warm-up),
    then validation passes so slow that the limit will cut the run short of
    it: the plan stays at the floor and the loop is told where the run will
    stop, once (a walkthrough's run stopped at step 260 of 1,000, undecayed,
    without a word, 2026-12-05)."""
    config = tiny_train_config(steps=2300, warmup_steps=10, max_seconds=100.0, log_every=10)
    fit = TimeFit(config, 0)
    assert fit.plan(config, 10, False, 1.0, 1.0) is None  # the timing starts
    first = fit.plan(config, 20, False, 1.1, 1.1)  # 0.01 s a step: more than 2,300 fit; nothing to shorten
    assert first is None and fit.declined is None
    fit.validated(30.0, first_pass=False)  # a pass takes 30 s
    second = fit.plan(config, 40, True, 60.0, 60.0)  # 1.5 s a step since: some 30 more fit, under the floor
    assert second == 100 and fit.declined is not None and 40 < fit.declined < 100
    config, fit.declined = dataclasses.replace(config, steps=second), None
    assert fit.plan(config, 50, True, 70.0, 70.0) is None and fit.declined is None  # said once
    # A plan held just under the floor is the timing's noise, not a run cut short: nothing said.
    near = TimeFit(tiny_train_config(steps=2300, warmup_steps=10, max_seconds=100.0, log_every=10), 0)
    near.planned = True
    assert near._floored(config, 95) == 100 and near.declined is None


def test_filling_the_time_needs_a_time_limit_and_no_step_count(tiny_corpus, tmp_path):
    with pytest.raises(charlstm.ConfigError, match="fill_time=True trains for all of a time limit: give max_seconds"):
        charlstm.train(tiny_corpus, tmp_path / "a", fill_time=True)
    with pytest.raises(charlstm.ConfigError, match="give steps or fill_time=True, not both"):
        charlstm.train(tiny_corpus, tmp_path / "b", fill_time=True, max_seconds=60, steps=10)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_run_too_short_to_keep_its_warm_up_is_not_refitted(tiny_corpus, tmp_path):
    """A fitted schedule keeps its warm-up whole (ten times the warm-up at
    least); a limit shorter than that stops the run as it always did."""
    run = new_tiny_run(tiny_corpus, steps=10**6, warmup_steps=10**5, max_seconds=1.5, eval_every=10**5, log_every=5)
    evts = train(run, tmp_path / "run")
    assert not any(isinstance(e, events.Rescheduled) for e in evts)
    assert evts[-1].reason == "time limit" and evts[-1].step < 10**6
    # ... and says so, once: the user asked for a run whose learning rate decays by its time limit.
    [note] = [e for e in evts if isinstance(e, events.Warned) and e.kind == "schedule"]
    assert note.step == 20 and "max_seconds 1.5 ends the run near step" in note.message
    assert "too soon to end its schedule there (that takes 1,000,000 steps" in note.message


def test_carry_is_reset_when_a_pass_wraps_around(tiny_corpus):
    """At the first window of a pass the step must start from a zero state,
    whatever state the previous window left behind."""
    run = new_tiny_run(tiny_corpus)
    streams = Streams(run.vocab.encode(tiny_corpus.read_text()), batch=4, seq_len=16)
    compiled, hyper = make_train_step(run.model_config, run.train_config), hyperparameters(run.train_config)

    def step(state, batch):
        return compiled(state, batch, hyper)

    def state_with(carry):  # a fresh copy each time: the step donates its input state
        return jax.tree_util.tree_map(jnp.copy, dataclasses.replace(run.state, carry=carry))

    junk = jax.tree_util.tree_map(lambda x: x + 0.7, run.state.carry)
    zero = zero_carry(run.model_config, 4)
    _, from_junk = step(state_with(junk), streams.window(len(streams)))
    _, from_zero = step(state_with(zero), streams.window(0))
    assert float(from_junk["loss"]) == float(from_zero["loss"])
    # Mid-pass, the carried state is used (and changes the loss).
    _, mid_junk = step(state_with(junk), streams.window(1))
    _, mid_zero = step(state_with(zero), streams.window(1))
    assert float(mid_junk["loss"]) != float(mid_zero["loss"])


def test_interrupt_before_the_first_step_still_leaves_a_resumable_run(tiny_corpus, tmp_path):
    run = new_tiny_run(tiny_corpus)
    evts = train(run, tmp_path / "run", stop_at=0)
    assert evts[-1].reason == "interrupted" and evts[-1].step == 0
    assert int(session.resumed_run(tmp_path / "run", {}).state.step) == 0


def test_resume_after_a_hard_kill_with_a_newer_best_checkpoint(tiny_corpus, tmp_path):
    """A kill between a best save and the next latest save leaves best newer
    than latest; resuming must neither crash nor forget the best loss."""
    run = new_tiny_run(tiny_corpus, steps=12, eval_every=3, checkpoint_every=5)
    train(run, tmp_path / "run")
    latest = tmp_path / "run" / "checkpoints" / "latest"
    shutil.rmtree(latest / "12")  # as if killed after step 11: latest is 10, best may be 12
    resumed = session.resumed_run(tmp_path / "run", {})
    assert int(resumed.state.step) == 10
    assert resumed.best_val_loss == pytest.approx(run.best_val_loss)
    evts = train(resumed, tmp_path / "run")
    assert evts[-1].reason == "done" and evts[-1].step == 12
    assert_trees_equal(resumed.state.params, run.state.params)


def test_resume_takes_a_run_directory_and_a_larger_step_total(tiny_corpus, tmp_path):
    train(new_tiny_run(tiny_corpus, steps=4), tmp_path / "run")
    with pytest.raises(CharlstmError, match="not a run directory"):
        session.resumed_run(tmp_path / "run" / "checkpoints" / "latest" / "4", {})
    with pytest.raises(CharlstmError, match="steps 4 is not beyond step 4"):
        session.resumed_run(tmp_path / "run", {"steps": 4})


def test_dropout_acts_in_training_only_with_a_mask_per_step(tiny_corpus):
    plain, dropped = new_tiny_run(tiny_corpus, dropout=0.0), new_tiny_run(tiny_corpus, dropout=0.5)
    streams = Streams(plain.vocab.encode(tiny_corpus.read_text()), batch=4, seq_len=16)
    batch = streams.window(1)

    def loss(run, step=0):  # a fresh copy each time: the step donates its input state
        state = jax.tree_util.tree_map(jnp.copy, dataclasses.replace(run.state, step=jnp.int32(step)))
        train_step = make_train_step(run.model_config, run.train_config)
        return float(train_step(state, batch, hyperparameters(run.train_config))[1]["loss"])

    assert loss(dropped) == loss(dropped)  # the same key and step: the same mask
    assert loss(dropped) != loss(dropped, step=1)  # the next step draws another
    assert loss(dropped) != loss(plain)
    # Evaluation and sampling never drop: the same parameters score the same.
    score = make_scorer(plain.model_config)
    ids = plain.vocab.encode(tiny_corpus.read_text()[:2000])
    assert score(dropped.state.params, ids, 4).loss == score(plain.state.params, ids, 4).loss


def test_weight_decay_applies_to_weight_matrices_only(tiny_corpus):
    mask = decay_mask(new_tiny_run(tiny_corpus).state.params)
    assert mask["embed"]["embedding"] is False
    assert mask["lstm_0"]["w_x"] and mask["lstm_0"]["w_h"] and mask["head"]["kernel"]
    assert not mask["lstm_0"]["b"] and not mask["head"]["bias"]


def test_non_finite_parameters_stop_training_even_with_a_finite_loss(tiny_corpus, tmp_path):
    """'~' occurs only in the validation tail, so training never reads its
    embedding row: an inf there leaves every training loss and gradient
    finite, and only the parameter check can see it."""
    tiny_corpus.write_text(tiny_corpus.read_text() + "~\n", encoding="utf-8")
    run = new_tiny_run(tiny_corpus, steps=6, checkpoint_every=2, eval_every=100)
    tilde = run.vocab.chars.index("~")
    embedding = run.state.params["embed"]["embedding"]
    params = {**run.state.params, "embed": {"embedding": embedding.at[tilde].set(jnp.inf)}}
    run.state = dataclasses.replace(run.state, params=params)
    evts = train(run, tmp_path / "run")
    progress = [e for e in evts if isinstance(e, events.Progress)]
    assert progress and all(math.isfinite(p.loss) and math.isfinite(p.grad_norm) for p in progress)
    assert evts[-1].reason == "diverged" and evts[-1].step == 1
    assert not any(isinstance(e, events.Saved) for e in evts)  # nothing was written from it


def test_a_token_file_damaged_under_a_run_stops_it_with_its_steps_kept(tiny_corpus, tmp_path, monkeypatch):
    """The corpus cache's token file is trusted by its size; bytes that went
    bad after it was written are refused where a window reads them (here
    stream 0's fourth window, read by step 3), with a checkpoint of the
    steps before, not trained on as garbage or ended as "diverged"."""
    monkeypatch.setenv("CHARLSTM_CORPUS_CACHE", str(tmp_path / "cache"))  # not the suite's: other tests read this text
    run = new_tiny_run(tiny_corpus, steps=12, checkpoint_every=100, eval_every=100)
    with run.tokens.path.open("r+b") as f:  # a single document: stream 0 starts the file
        f.seek(3 * 16 + 5)
        f.write(bytes([255]))
    got: list[events.Event] = []
    with pytest.raises(CorpusError, match=f"token file {run.tokens.path} is damaged: it holds id 255"):
        session.train(run, tmp_path / "run", got.append, lambda: False)
    assert [(e.step, e.best) for e in got if isinstance(e, events.Saved)] == [(3, False)]
    assert checkpoint.latest_step(tmp_path / "run" / "checkpoints" / "latest") == 3
    # As the message says: delete it, and the run goes on from a token file encoded anew.
    run.tokens.path.unlink()
    resumed = session.resumed_run(tmp_path / "run", {})
    assert int(resumed.state.step) == 3 and np.all(np.asarray(resumed.tokens.ids) < resumed.vocab.size)


def test_a_long_validation_pass_says_how_far_it_is(tiny_corpus, tmp_path, monkeypatch):
    """A pass over a large held-out text takes minutes on a CPU: the live bar
    and a log say how much of it is scored, about every second."""
    monkeypatch.setattr(scorer, "_FETCH_EVERY", 1)  # every window's result fetched: the share moves each window
    monkeypatch.setattr(events, "PASS_PROGRESS_SECONDS", 0.0)
    run = new_tiny_run(tiny_corpus, steps=2, eval_every=2)
    got: list[events.Event] = []
    session.train(run, tmp_path / "run", got.append, lambda: False)
    passes = [e for e in got if isinstance(e, events.Validating)]
    windows = -(-(len(run.layout().val) - 1) // scorer.EVAL_WINDOW)  # one stream: the text is short
    shares = [e.done for e in passes]  # as the device finishes windows: repeated while it catches up
    assert shares[0] == 0 and shares == sorted(shares) and windows >= 2
    assert sorted(set(shares)) == [i / windows for i in range(windows)]
    assert {(e.step, e.chars) for e in passes} == {(2, len(run.layout().val) - 1)}


def test_a_long_validation_pass_is_announced_by_the_models_work_not_its_characters_alone(monkeypatch):
    """A 3x1024 model's 1M validation characters took minutes a pass,
    unannounced; the tiny preset's 6M were announced at twice their length."""
    from types import SimpleNamespace

    from charlstm.config import ModelConfig

    monkeypatch.setattr(setup_notes, "_scores_slowly", lambda: True)  # as on a CPU

    def held_out(chars):  # a setup as long_passes reads one: its validation ids, one more than it scores
        return SimpleNamespace(val_ids=range(chars + 1))

    default, big = ModelConfig(vocab_size=81), ModelConfig(vocab_size=81, hidden_size=1024, num_layers=3, embed_dim=256)
    assert setup_notes.relative_cost(default) == 1.0 and setup_notes.relative_cost(big) > 20
    assert setup_notes.long_passes(held_out(1_000_000), big) and not setup_notes.long_passes(
        held_out(1_000_000), default
    )
    tiny = ModelConfig(vocab_size=81, hidden_size=128, embed_dim=32, norm="none")
    assert setup_notes.relative_cost(tiny) == 0.5  # at least half: small models are bound by more than products
    assert not setup_notes.long_passes(held_out(3_000_000), tiny) and setup_notes.long_passes(held_out(6_000_000), tiny)
    # A vocabulary of thousands makes the head the larger part of the work: the default model's too.
    assert setup_notes.relative_cost(ModelConfig(vocab_size=50_000)) > 10


@pytest.mark.parametrize("steps", [8, 4])  # a pass part-way through the run, and the last step's
def test_a_stop_during_a_validation_pass_cuts_it_short_and_saves(tiny_corpus, tmp_path, monkeypatch, steps):
    """A pass over a large held-out text takes minutes on a CPU; a Ctrl-C
    during it waited for its end, silent, and an impatient third one aborted
    without the save (a new user's walkthrough on a 300 MB text, 2026-12-03).
    The stop comes when the scorer asks for it, at its first window; at the
    last step too, where the run must not read as finished."""
    monkeypatch.setattr(setup_notes, "LARGE_VALIDATION", 0)  # the tiny text's held-out share warns as a large one would
    monkeypatch.setattr(setup_notes, "_scores_slowly", lambda: True)  # as on a CPU, whatever this machine has
    make_reader = loop.make_reader

    def slow_reader(config):
        read = make_reader(config)

        def reading(*args):
            time.sleep(0.5)  # a pass that takes a while before the Ctrl-C
            return (yield from read(*args))

        return reading

    monkeypatch.setattr(loop, "make_reader", slow_reader)
    run = new_tiny_run(tiny_corpus, steps=steps, eval_every=4, checkpoint_every=8)
    asked = []

    def should_stop() -> bool:
        asked.append(int(run.state.step))
        return len(asked) > 4  # the four steps' questions, then the pass's first

    got: list[events.Event] = []
    session.train(run, tmp_path / "run", got.append, should_stop)
    [warned] = [e for e in got if isinstance(e, events.Warned) and e.kind == "validation"]
    assert "a smaller val_fraction or a val_file" in warned.message
    when = "(every eval_every 4 steps and at the end)" if steps > 4 else "(at the end)"
    assert when in warned.message and "seconds a pass on a 2-core CPU" in warned.message, warned.message
    assert not [e for e in got if isinstance(e, events.Evaluated)]
    [validating] = [e for e in got if isinstance(e, events.Validating)]  # what a log shows while it waits
    assert validating.step == 4 and validating.large and validating.chars > 10
    finished = got[-1]
    assert isinstance(finished, events.Finished) and (finished.reason, finished.step) == ("interrupted", 4)
    assert checkpoint.latest_step(tmp_path / "run" / "checkpoints" / "latest") == 4
    # The pass's time is not training time: the last line can say where the time went.
    assert finished.train_seconds - finished.step_seconds >= 0.5
    if steps == 8:
        # Resumed, it first makes the pass the stop cut short, then trains on: the history,
        # the best checkpoint and --patience's count are the uninterrupted run's (a walkthrough).
        again: list[events.Event] = []
        session.train(session.resumed_run(tmp_path / "run", {}), tmp_path / "run", again.append, lambda: False)
        assert [e.step for e in again if isinstance(e, events.Evaluated)] == [4, 8], again
        assert [h["step"] for h in session.resumed_run(tmp_path / "run", {"steps": 9}).history] == [4, 8]
    if steps == 4:
        # Resumed, the run owes the last step's pass: it makes it, and only then is done.
        resumed = session.resumed_run(tmp_path / "run", {})
        again: list[events.Event] = []
        session.train(resumed, tmp_path / "run", again.append, lambda: False)
        assert [e.step for e in again if isinstance(e, events.Evaluated)] == [4], again
        assert [e.step for e in again if isinstance(e, events.Saved) and e.best] == [4]
        assert (again[-1].reason, again[-1].step, again[-1].best_step) == ("done", 4, 4)
        # And a second resume has nothing left to do.
        done: list[events.Event] = []
        session.train(session.resumed_run(tmp_path / "run", {}), tmp_path / "run", done.append, lambda: False)
        assert not [e for e in done if isinstance(e, events.Evaluated)] and done[-1].reason == "done"


def test_a_model_too_large_for_the_memory_here_is_refused_before_anything_is_built(monkeypatch):
    """`--hidden 100000000` sat idle, deaf to Ctrl-C, while XLA waited on
    160 GB (a walkthrough, 2026-12-05): a new run's size is checked against
    the memory free, by a low estimate that never refuses what would fit."""
    from charlstm.config import ModelConfig, TrainConfig
    from charlstm.errors import ConfigError
    from charlstm.runtime import memory
    from charlstm.training.run import refuse_too_large

    huge = ModelConfig(vocab_size=65, hidden_size=100_000, num_layers=1)  # 8e10 parameters in W_h alone
    message = (
        r"has over 40,0\d\d,\d{3},\d{3} parameters: training it takes at least 6\d\d\.\d GB .* than the 20.0 GB free"
    )
    with pytest.raises(ConfigError, match=message + " here; give a smaller hidden_size, num_layers or embed_dim$"):
        refuse_too_large(huge, TrainConfig(), free=20 * 10**9)
    refuse_too_large(ModelConfig(vocab_size=65), TrainConfig(), free=10**9)  # the default model fits in 1 GB
    free = memory.free_bytes()
    assert free is None or free > 10**8  # this machine's, read from /proc/meminfo
    monkeypatch.setattr(memory, "free_bytes", lambda: None)
    refuse_too_large(huge, TrainConfig())  # nothing known, nothing refused
    # A batch of a huge vocabulary's logits is the larger part: the batch is named too.
    wide = ModelConfig(vocab_size=2_000_000, hidden_size=8, embed_dim=8, num_layers=1)
    with pytest.raises(ConfigError, match=r"or a smaller batch_size or seq_len$"):
        refuse_too_large(wide, TrainConfig(batch_size=256, seq_len=256), free=20 * 10**9)


def test_a_run_worse_than_guessing_is_told_so_again_as_it_ends(tiny_corpus, tmp_path):
    """--lr 50 on a small model (a teacher's walkthrough, 2026-12-06):
    "worse than guessing" was said at the first pass only, and the run ended
    on a plain "done", status 0, where a user who scrolled past it saw
    nothing wrong. The last warning before the end says it of the run's best."""
    run = new_tiny_run(tiny_corpus, learning_rate=5.0, weight_decay=0.0, grad_clip=math.inf, warmup_steps=1)
    got = train(run, tmp_path / "run")
    guessing = [e for e in got if isinstance(e, events.Warned) and e.kind == "worse than guessing"]
    assert len(guessing) == 2 and guessing[0].message.startswith("the validation loss ")
    assert guessing[1].message.startswith(f"the run's best validation loss {run.best_val_loss:.3f} is worse than")
    assert got.index(guessing[1]) == len(got) - 2 and isinstance(got[-1], events.Finished)
