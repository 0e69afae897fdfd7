"""When a run's gradients or loss are worth a warning, and how it is shown."""

import io
import json
import types
from pathlib import Path

import pytest
from rich.console import Console

from charlstm.cli.display import NORMAL, TrainingDisplay
from charlstm.cli.format import loss_text
from charlstm.training import events
from charlstm.training.health import SUSTAINED, Health, best_pass, overfitting, worse_than_guessing
from charlstm.training.run import passes_since_best

# Every report of the default run on the shipped corpus and of the same run at
# --lr 1 (2026-12-01; tests/data/health-runs.json says how they were made).
RUNS = json.loads((Path(__file__).parent / "data" / "health-runs.json").read_text())
HEALTHY_LAYERS = {"embed": 0.1, "lstm_0": 0.2, "lstm_1": 0.3, "head": 0.4}


def _progress(step, loss=2.0, grad_norm=0.5, clipped=0.0, norms=None):
    return events.Progress(step, 2300, loss, grad_norm, 1e-3, 1000.0, 1.0, norms or HEALTHY_LAYERS, clipped)


def _warnings(health, reports):
    return [w for step, loss, norm, clipped in reports for w in health.observe(_progress(step, loss, norm, clipped))]


def _replayed(run):
    """The warnings a recorded run gets, its reports fed to Health in order."""
    health = Health(warmup_steps=RUNS["warmup_steps"])
    found = []
    for step, loss, norm, clipped, first, head in RUNS[run]:
        layers = {"embed": 0.1, "lstm_0": first, "lstm_1": 0.1, "head": head}
        found += health.observe(_progress(step, loss, norm, clipped, layers))
    return found


def test_the_whole_default_run_gives_no_warning_though_its_first_steps_clip():
    reports = RUNS["default"]
    assert len(reports) == 230 and reports[-1][0] == 2300 and reports[0][3] == 1.0  # step 10 clipped every step
    assert _replayed("default") == []


def test_a_run_at_lr_1_warns_that_its_loss_rises_then_that_gradients_explode_and_vanish():
    found = _replayed("lr_1")
    assert [(w.step, w.kind) for w in found] == [(160, "loss rising"), (250, "exploding"), (280, "vanishing")]
    assert "through the last 30 steps" in found[0].message and "learning_rate" in found[0].message
    assert "grad_clip on 90%" in found[1].message


@pytest.mark.parametrize(("run", "expected"), [("default", []), ("lr_1", [(160, "loss rising"), (250, "exploding"),
                                                                             (280, "vanishing")])])  # fmt: skip
def test_a_run_reported_every_step_warns_as_it_does_every_ten(run, expected):
    """At --log-every 1 each report is one step's loss, noisy: judged one
    at a time, a long tiny run warned 1,504 times against 22 (a walkthrough,
    2026-12-06). Each recorded 10-step report becomes 10 one-step reports
    whose losses swing 40% either way about its mean and whose first steps
    clip as its share says; judged 10 steps at a time, they warn as the
    recorded reports do, at the same steps."""
    health = Health(warmup_steps=RUNS["warmup_steps"])
    found = []
    for step, loss, norm, clipped, first, head in RUNS[run]:
        layers = {"embed": 0.1, "lstm_0": first, "lstm_1": 0.1, "head": head}
        for i in range(10):
            swing = 0.4 * loss * (1 if i % 2 else -1)
            one = _progress(step - 9 + i, loss + swing, norm, float(i < round(10 * clipped)), layers)
            found += health.observe(one)
    assert [(w.step, w.kind) for w in found] == expected
    # Said over the same span: 30 steps, not "3 reports", 3 steps at this interval.
    assert all("through the last 30 steps" in w.message for w in found if w.kind != "vanishing")
    alone = Health(warmup_steps=RUNS["warmup_steps"], start=RUNS["default"][-1][0])  # one step at a time: noise
    assert alone.observe(_progress(RUNS["default"][-1][0] + 1)) == []  # not judged before it covers 10 steps


def test_the_running_median_is_statistics_median():
    import random
    import statistics

    from charlstm.training.health import RunningMedian

    rng = random.Random(3)
    median, values = RunningMedian(), []
    for _ in range(300):
        value = rng.choice([rng.random(), 0.5, 1.0, rng.expovariate(1.0)])
        median.add(value)
        values.append(value)
        assert median.median() == statistics.median(values) and len(median) == len(values)


def test_clipping_during_warm_up_never_warns():
    health = Health(warmup_steps=100)
    assert _warnings(health, [(step, 3.0, 5.0, 1.0) for step in range(10, 101, 10)]) == []


def test_one_episode_warns_once_and_a_new_episode_again():
    health = Health(warmup_steps=0)
    assert _warnings(health, [(5, 1.8, 0.3, 0.0)]) == []  # its lowest loss: the clipped steps' 2.0 is above it
    clipping = [(step, 2.0, 3.0, 1.0) for step in range(10, 10 * (SUSTAINED + 3), 10)]
    assert len(_warnings(health, clipping)) == 1
    assert _warnings(health, [(1000, 2.0, 0.3, 0.0)]) == []  # cleared
    again = _warnings(health, [(1010 + 10 * i, 2.0, 3.0, 1.0) for i in range(SUSTAINED)])
    assert [w.kind for w in again] == ["exploding"]


def test_an_episode_that_keeps_coming_back_is_said_three_times_a_session():
    """A tiny model clipping on and off through 20,000 steps warned of
    exploding gradients 20 times (a walkthrough, 2026-12-06)."""
    from charlstm.training.health import EPISODES

    health, found, step = Health(warmup_steps=0), [], 0
    for _ in range(6):  # six episodes, each cleared by a calm report
        for _ in range(SUSTAINED):
            step += 10
            found += health.observe(_progress(step, 2.0, 3.0, 1.0))
        step += 10
        found += health.observe(_progress(step, 2.0, 0.3, 0.0))
    assert len(found) == EPISODES and len({w.kind for w in found}) == 1, [(w.step, w.kind) for w in found]
    assert f"(said {EPISODES} times now: not again this session)" in found[-1].message
    assert "said" not in found[0].message


def test_a_short_spike_is_not_a_warning():
    reports = [(step, 2.0, 0.2, 0.0) for step in range(10, 110, 10)]
    reports += [(110 + 10 * i, 2.0, 5.0, 1.0) for i in range(SUSTAINED - 1)] + [(200, 2.0, 0.2, 0.0)]
    assert _warnings(Health(), reports) == []


def test_a_blow_up_under_a_generous_clip_is_exploding_by_its_growth():
    calm = [(step, 2.0, 0.2, 0.0) for step in range(10, 110, 10)]
    grown = [(200 + 10 * i, 2.0, 5.0, 0.0) for i in range(SUSTAINED)]
    found = _warnings(Health(), calm + grown)
    assert [w.kind for w in found] == ["exploding"] and "25x its median" in found[0].message


def test_a_clip_below_a_healthy_runs_norm_is_named_as_such_not_exploding():
    """A teacher's --clip 0.01 on the tiny preset (2026-12-05): every step
    clipped at |g| about 0.18 while the loss fell as it does at 1.0. "Lower
    --lr" was the wrong advice; the clip is what is low."""
    falling = [(10 * i, 3.0 - 0.05 * i, 0.18 + 0.01 * (i % 2), 1.0) for i in range(1, 2 + SUSTAINED)]
    found = _warnings(Health(), falling)
    assert [w.kind for w in found] == ["clipping"], found
    assert "grad_clip is below that" in found[0].message and "--lr" not in found[0].message
    # The same clipping with the loss climbing from its lowest is an explosion again.
    rising = [(10, 2.0, 0.2, 0.0)] + [(10 * i, 2.0 + 0.15 * i, 0.5, 1.0) for i in range(2, 2 + SUSTAINED)]
    assert [w.kind for w in _warnings(Health(), rising)] == ["exploding"]
    # And so is a norm that grows far past its median, the loss still low.
    grown = [(10 * i, 2.0, 0.2, 1.0) for i in range(1, 6)] + [(10 * i, 2.0, 5.0, 1.0) for i in range(6, 6 + SUSTAINED)]
    assert "exploding" in [w.kind for w in _warnings(Health(), grown)]


def test_clipping_read_now_as_a_low_clip_now_as_an_explosion_is_one_episode_and_one_warning():
    """A 1x64 model late in a long run on 60 KB (a walkthrough, 2026-12-06):
    90% of its steps clipped at a steady |g| about 1.03 while its loss
    hovered about 5% above its lowest, so every few reports the reading
    flipped between a clip below the norm and an explosion: 62 warnings,
    each contradicting the last. One episode, one warning, until the
    clipping stops."""
    lowest = [(10, 1.0, 1.03, 1.0)]
    hovering = [(20 + 10 * i, 1.0 if (i // SUSTAINED) % 2 == 0 else 1.08, 1.03, 0.9) for i in range(SUSTAINED * 10)]
    found = _warnings(Health(), lowest + hovering)
    assert [w.kind for w in found] == ["clipping"], [(w.step, w.kind) for w in found]
    # Inside the episode one report whose norm jumped is no explosion; three in a row are, said by the growth.
    spike = [(400, 1.08, 15.0, 0.9), (410, 1.08, 1.03, 0.9)]
    assert _warnings(Health(), lowest + hovering + spike) == [found[0]]
    grown = [(400 + 10 * i, 1.08, 15.0, 0.9) for i in range(SUSTAINED)]
    last = _warnings(Health(), lowest + hovering + grown)[-1]
    assert last.kind == "exploding" and last.step == 400 + 10 * (SUSTAINED - 1) and "x its median" in last.message
    # Once most steps stop clipping the episode is over: the next one warns again.
    after = [(1000, 1.0, 0.5, 0.0)] + [(1010 + 10 * i, 1.1, 1.03, 0.9) for i in range(SUSTAINED)]
    assert [w.kind for w in _warnings(Health(), lowest + hovering + after)] == ["clipping", "exploding"]


def test_vanishing_gradients_at_a_learning_rate_far_too_high_say_so_in_words():
    """--lr 1e6 on the tiny preset (2026-12-05): the first layer's norm was 0
    and the warning read '8393653869628905196753841553408x below', advising
    fewer layers, while saturated units (the loss not falling) were the cause."""
    health = Health()
    assert _warnings(health, [(10, 3.0, 0.5, 0.0)]) == []
    zero = {"embed": 0.0, "lstm_0": 0.0, "lstm_1": 0.0, "head": 8.4}
    found = [w for step in (20, 30, 40) for w in health.observe(_progress(step, loss=9.0, norms=zero))]
    vanishing = [w.message for w in found if w.kind == "vanishing"]
    assert len(vanishing) == 1 and "layer's gradient norm is 0, against 8.4 at the output layer" in vanishing[0]
    assert "a lower learning_rate usually cures" in vanishing[0] and "--layers" not in vanishing[0]
    tiny = {"embed": 0.0, "lstm_0": 1e-12, "head": 3.0}
    health = Health()
    found = [w for step in (10, 20, 30) for w in health.observe(_progress(step, norms=tiny))]
    assert "is a millionth of the output layer's or less" in found[0].message and "x below" not in found[0].message


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_vanishing_gradients_are_named_when_sustained(cell):
    health = Health()
    vanishing = {"embed": 1e-9, f"{cell}_0": 1e-5, f"{cell}_1": 1e-3, "head": 0.5}
    found = [
        w for step in range(10, 10 * (SUSTAINED + 1), 10) for w in health.observe(_progress(step, norms=vanishing))
    ]
    assert [w.kind for w in found] == ["vanishing"]
    assert found[0].message.startswith(
        "gradients vanishing: the first recurrent layer's gradient norm (1e-05) is 50,000x below the output layer's"
    )
    assert "fewer num_layers can help" in found[0].message


def test_vanishing_gradients_in_a_model_of_one_layer_do_not_advise_fewer_layers():
    """A teacher's walkthrough (2026-12-06), --lr 50 on a 1x64 model: the
    warning advised fewer --layers to a model of one, and wrote '(0) is 0'."""
    health = Health()
    one_layer = {"embed": 0.0, "lstm_0": 1e-9, "head": 0.29}
    found = [w for step in (10, 20, 30) for w in health.observe(_progress(step, norms=one_layer))]
    assert [w.kind for w in found] == ["vanishing"]
    message = found[0].message
    assert message.startswith("gradients vanishing: the recurrent layer's gradient norm (1e-09) is")
    assert "it barely learns" in message and "a lower learning_rate usually cures" in message
    assert "num_layers" not in message and "first" not in message


def _passes(*losses: float) -> list[dict[str, float]]:
    return [{"step": 50 * (i + 1), "val_loss": v} for i, v in enumerate(losses)]


def test_a_validation_loss_rising_from_its_best_warns_once_of_overfitting():
    """The walkthrough's run on 19 KB of Python (2026-12-04): its best pass,
    then passes well above it while the training loss kept falling."""
    rising = _passes(2.156, 2.135, 2.532, 2.896, 3.113)
    said = [overfitting(rising[: i + 1], None) for i in range(len(rising))]
    assert [s is not None for s in said] == [False, False, False, True, False]  # once, at the second pass above
    assert said[3] is not None and said[3].startswith(
        "the validation loss has risen for 2 passes (2.532, 2.896; best 2.135 at step 100)"
    )
    assert "patience N" in said[3] and "(overfitting)" in said[3]
    assert overfitting(rising[:4], patience=5) is None  # the user chose when to stop
    # A run's ordinary wobble: two passes a little above its best (the defaults' runs rose at most 3.0%).
    assert overfitting(_passes(1.500, 1.530, 1.540), None) is None


def test_a_slow_rise_from_the_best_warns_of_overfitting_once_it_stands_5_percent_above():
    """A teacher's walkthrough (2026-12-06): 1x128 on 20 KB of Shakespeare
    with no weight decay or dropout, its best at step 200, then a rise of
    2.5%, 5.7%, 7.8%, 8.8% while the training loss fell to 1.02. The first
    pass above the best stood under 5%, and the warning, which looked only
    at the second pass after the best, never came."""
    rising = _passes(2.40, 1.95, 1.90, 1.865, 1.912, 1.971, 2.010, 2.030)
    said = [overfitting(rising[: i + 1], None) for i in range(len(rising))]
    assert [s is not None for s in said] == [False] * 6 + [True, False]  # once, when two stand 5% above
    assert said[6] is not None and said[6].startswith(
        "the validation loss has risen for 3 passes (1.912, 1.971, 2.010; best 1.865 at step 200)"
    )
    # A long wobble, then a rise: the passes shown are the latest few.
    wobble = _passes(1.500, 1.530, 1.540, 1.520, 1.530, 1.600, 1.610)
    said = [overfitting(wobble[: i + 1], None) for i in range(len(wobble))]
    assert [s is not None for s in said] == [False] * 6 + [True]
    assert "(..., 1.520, 1.530, 1.600, 1.610; best 1.500 at step 50)" in str(said[6])


def test_the_display_shows_a_warning_and_the_clipped_share(capsys):
    console = Console(stderr=True, force_terminal=False, width=200)
    display = TrainingDisplay(console, NORMAL, plain_interval=0.0)
    display.handle(_progress(10, clipped=0.9))
    display.handle(events.Warned(10, "exploding", "gradients exploding: it is what it is"))
    err = capsys.readouterr().err
    assert "step 10: warning: gradients exploding: it is what it is" in err
    assert "clip 90%" in err  # the share is on the progress line too


def test_a_runs_best_pass_is_its_lowest_and_the_first_of_equals():
    """One rule for every place that names a run's best pass: the warning,
    the passes since it (--patience), the last line's step and a
    checkpoint's description."""
    history = _passes(2.0, 1.6, 1.8, 1.6)
    assert best_pass(history) == 1 and passes_since_best(history) == 2
    assert best_pass([]) is None and passes_since_best([]) == 0


def test_overfitting_counts_from_the_historys_own_best_after_a_resume():
    """A hard kill can leave the best checkpoint (1.6 at step 150) newer than
    the history the latest one holds (2.0, 1.9); the resumed session redoes
    that pass, which is not a new best by its own count, and a review found
    the warning then never came (2026-12-06). The history's own lowest
    pass is the best."""
    resumed = _passes(2.0, 1.9, 1.6, 1.70, 1.72, 1.75)
    said = [overfitting(resumed[: i + 1], None) for i in range(len(resumed))]
    assert [s is not None for s in said] == [False] * 4 + [True, False]
    assert "(1.700, 1.720; best 1.600 at step 150)" in str(said[4])


def test_a_run_far_off_course_shows_its_losses_in_three_figures(capsys):
    """--lr 1e30 with no weight decay (a walkthrough, 2026-12-06): a loss of
    9e30 was written out in 34 digits, on the progress line and in every
    table that shows a loss."""
    display = TrainingDisplay(Console(stderr=True, force_terminal=False, width=200), NORMAL, plain_interval=0.0)
    display.handle(_progress(10, loss=9260307705179619902903048732672.0, grad_norm=3.1e12))
    display.handle(events.Finished(10, "done", 2.3e30, 1.0, 10))
    err = capsys.readouterr().err
    assert "loss 9.26e+30  val -  |g| 3.1e+12" in err
    assert "best validation loss 2.3e+30 (3.32e+30 bpc) at step 10" in err
    assert loss_text(1.5) == "1.500 (2.16 bpc)" and loss_text(123456.0, 4, "") == "1.23e+05 (1.78e+05)"


def test_a_sample_shows_control_characters_by_their_escapes_and_wraps_behind_its_margin():
    """A corpus of coloured logs (a walkthrough, 2026-12-06): its samples'
    escape sequences reached the terminal raw, ending the dim style halfway
    and landing in redirected logs; a long line wrapped at column 0."""
    text = "ctrl\x1b[0m bell\x07 del\x7f c1\x9b7 end\r\n花花 " + "word " * 12 + "\n\nlast\rover"
    log = Console(file=io.StringIO(), force_terminal=False, width=40, soft_wrap=True)
    TrainingDisplay(log, NORMAL).handle(events.Sampled(250, text))
    assert log.file.getvalue().splitlines() == [
        "step 250: sample",
        "  | ctrl\\x1b[0m bell\\x07 del\\x7f c1\\x9b7 end",  # a file gets each line whole
        "  | 花花 " + "word " * 12,
        "  | ",
        "  | last\\rover",
    ]
    terminal = Console(file=io.StringIO(), force_terminal=True, width=40, soft_wrap=True, color_system=None)
    TrainingDisplay(terminal, NORMAL).handle(events.Sampled(250, text))
    shown = terminal.file.getvalue().splitlines()
    assert "\x1b[0m" not in terminal.file.getvalue() and "\\x1b[0m" in shown[1]
    wrapped = [line for line in shown if "word" in line]
    assert len(wrapped) >= 2 and all(line.startswith("  | ") and len(line) <= 40 for line in wrapped)
    assert " ".join(line[4:] for line in wrapped).split() == ["花花", *["word"] * 12]
    # An ASCII terminal (LC_ALL=C without UTF-8 mode) writes 花 as \u82b1: wrapped at that width.
    ascii_file = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="backslashreplace")
    ascii_terminal = Console(file=ascii_file, force_terminal=True, width=40, soft_wrap=True, color_system=None)
    TrainingDisplay(ascii_terminal, NORMAL).handle(events.Sampled(250, "花" * 30))
    ascii_file.flush()
    shown = ascii_file.buffer.getvalue().decode("ascii").splitlines()
    assert len(shown) > 2 and all(len(line) <= 40 for line in shown), shown


def test_the_display_says_where_a_time_limit_moved_the_end(capsys):
    console = Console(stderr=True, force_terminal=False, width=200)
    TrainingDisplay(console, NORMAL).handle(events.Rescheduled(20, 1912, 2300, 600.0))
    err = capsys.readouterr().err
    assert "step 20: --max-time 10 ends the run near step 1,912 of 2,300" in err
    TrainingDisplay(console, NORMAL).handle(events.Rescheduled(20, 31_000, 2300, 600.0))
    err = capsys.readouterr().err
    assert "step 20: --max-time 10 holds about 31,000 steps, not 2,300: the run now fills it" in err


def test_the_last_line_of_a_resumed_run_gives_its_own_time_then_the_runs(capsys):
    console = Console(stderr=True, force_terminal=False, width=200)
    TrainingDisplay(console, NORMAL).handle(events.Finished(1000, "done", 1.5, 46.0, 900, earlier_seconds=41.0))
    TrainingDisplay(console, NORMAL).handle(events.Finished(900, "done", 1.5, 41.0, 900))
    # A session whose validation passes took most of it says so.
    TrainingDisplay(console, NORMAL).handle(events.Finished(4, "done", 3.5, 57.0, 4, step_seconds=1.2))
    # A time limit's run says what its passes and saves took, short as they are.
    TrainingDisplay(console, NORMAL).handle(events.Finished(72, "time limit", 3.5, 18.2, 72, step_seconds=14.9))
    TrainingDisplay(console, NORMAL).handle(events.Finished(72, "done", 3.5, 18.2, 72, step_seconds=14.9))
    err = capsys.readouterr().err
    assert "time limit at step 72 after 0:18 of training, 0:03 of it validation passes and saves; best" in err
    assert "done at step 72 after 0:18 of training; best" in err
    # Which step the best was, where it was not the last: the checkpoint kept as best.
    assert (
        "done at step 1000 after 0:05 of training (0:46 in all); best validation loss 1.500 (2.16 bpc) at step 900"
        in err
    )
    assert "done at step 900 after 0:41 of training; best validation loss 1.5" in err
    assert "done at step 4 after 0:57 of training, 0:55 of it validation passes and saves; best" in err


def test_a_validation_pass_cut_short_is_said_to_be(capsys):
    console = Console(stderr=True, force_terminal=False, width=200)
    cut = TrainingDisplay(console, NORMAL)
    cut.handle(events.Validating(8, 500_000, False))
    cut.handle(events.Finished(8, "interrupted", None, 5.0, None))
    whole = TrainingDisplay(console, NORMAL)
    whole.handle(events.Validating(8, 500_000, False))
    whole.handle(events.Evaluated(8, 2.5, True))
    whole.handle(events.Finished(9, "interrupted", 2.5, 6.0, 8))
    err = capsys.readouterr().err
    cut_line = "interrupted at step 8 after 0:05 of training; no validation pass yet (the pass at step 8 was cut short)"
    assert cut_line in err
    assert "interrupted at step 9 after 0:06 of training; best validation loss 2.500 (3.61 bpc) at step 8" in err
    assert err.count("cut") == 1


def test_resuming_a_run_that_patience_stopped_says_what_to_give(capsys):
    console = Console(stderr=True, force_terminal=False, width=300)
    display = TrainingDisplay(console, NORMAL)
    display.handle(events.Started(10, 20, "cpu", ["cpu:0"], 1000, 100, 4, trains=False))
    detail = "no new best validation loss in the last 3 validation passes (--patience 3)"
    display.handle(events.Finished(10, "patience", 2.0, 5.0, 4, detail=detail))
    err = capsys.readouterr().err
    assert (
        "nothing to train: the run had stopped early at step 10, no new best validation loss in the last 3 "
        "validation passes (--patience 3); give a larger --patience to train it further" in err
    )
    assert "training on" not in err  # not said of a run that trains no step


def test_resuming_a_run_stopped_during_its_last_pass_says_the_pass_is_now_made(capsys):
    console = Console(stderr=True, force_terminal=False, width=300)
    display = TrainingDisplay(console, NORMAL)
    display.handle(events.Started(10, 10, "cpu", ["cpu:0"], 1000, 100, 4))
    display.handle(events.Evaluated(10, 1.75, best=True))
    display.handle(events.Finished(10, "done", 1.75, 5.0, 10))
    err = capsys.readouterr().err
    assert "done at step 10: its last validation pass, stopped before, is complete; best validation loss 1.75" in err
    assert "nothing to train" not in err


def test_a_resumed_run_shows_its_last_validation_loss_before_its_first_pass(capsys):
    console = Console(stderr=True, force_terminal=False, width=300)
    display = TrainingDisplay(console, NORMAL, plain_interval=0.0)
    display.handle(events.Started(10, 20, "cpu", ["cpu:0"], 1000, 100, 4, val_loss=1.5234))
    display.handle(_timed(12, 20, 1.0, None))
    display.handle(events.Started(0, 20, "cpu", ["cpu:0"], 1000, 100, 4))  # a new run: no pass yet
    display.handle(_timed(2, 20, 1.0, None))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("step")]
    assert "val 1.523" in lines[0] and "val -" in lines[1]


def test_a_log_says_how_far_a_long_validation_pass_is(capsys):
    console = Console(stderr=True, force_terminal=False, width=300)
    display = TrainingDisplay(console, NORMAL, plain_interval=0.0)
    for done in (0.0, 0.25, 0.5):
        display.handle(events.Validating(500, 12_000_000, large=True, done=done))
    display.handle(events.Validating(1000, 9_000, large=False))  # a short pass: nothing to wait for
    display.handle(events.Validating(1000, 9_000, large=False, done=0.5))
    assert capsys.readouterr().err.splitlines() == [
        "step 500: validating on 12,000,000 characters (Ctrl-C stops it and saves)",
        "step 500: validating, 25% of 12,000,000 characters",
        "step 500: validating, 50% of 12,000,000 characters",
    ]


def _timed(step, total, elapsed, time_left):
    return events.Progress(step, total, 2.0, 0.5, 1e-3, 1000.0, elapsed, HEALTHY_LAYERS, 0.0, time_left)


def test_the_time_left_is_the_time_limits_when_it_ends_the_run_first(capsys):
    """A run of 100,000 steps with --max-time 0.2 ends in seconds, not hours;
    without a limit the estimate is the steps'."""
    console = Console(stderr=True, force_terminal=False, width=200)
    display = TrainingDisplay(console, NORMAL, plain_interval=0.0)
    display.handle(_timed(10, 100_000, 1.0, 11.0))
    display.handle(_timed(20, 100, 2.0, None))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("elapsed 0:01  eta ~0:11") and lines[1].endswith("elapsed 0:02  eta ~0:08")

    terminal = Console(file=io.StringIO(), force_terminal=True, width=200)
    with TrainingDisplay(terminal, NORMAL) as bar:
        bar.handle(events.Started(0, 100_000, "cpu", ["cpu:0"], 1000, 100, 10))
        bar.handle(_timed(10, 100_000, 1.0, 11.0))
        task = bar._progress.tasks[0]
        shown = str(bar._progress.columns[-1].render(task))
    # The limit's 11 s less however long rendering took: never rich's
    # estimate from 100,000 steps (hours), and no timing is asserted.
    minutes, seconds = shown.split(":")
    assert minutes == "0" and int(seconds) <= 11


@pytest.mark.parametrize(("width", "said"), [(40, "val..."), (60, "validating..."), (100, "validating on 5,999")])
def test_a_validation_pass_on_a_narrow_bar_leaves_the_step_count_and_the_time_left_in_view(width, said):
    """At 40 columns the pass's text took the whole line: the bar, the step
    count and the time left went (a walkthrough, 2026-12-06)."""
    terminal = Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)
    with TrainingDisplay(terminal, NORMAL) as bar:
        bar.handle(events.Started(0, 3000, "cpu", ["cpu:0"], 1000, 100, 4))
        bar.handle(_timed(110, 3000, 10.0, None))
        bar.handle(events.Validating(200, 5999, False))
        stats = bar._progress.tasks[0].fields["stats"]
        assert stats.startswith(said)
        assert len(stats) <= width - bar._fixed - bar._bar.bar_width


def test_a_signals_line_is_drawn_under_the_live_bar_not_written_past_it():
    """The signal's "stopping...", written straight to the terminal, left a stale copy of
    the bar above it (a walkthrough, 2026-12-06): the bar draws it, and
    without a bar (a log, or before the bar starts) it is the signal's to write."""
    from charlstm.cli.signals import StopFlag

    terminal = Console(file=io.StringIO(), force_terminal=True, width=100, color_system=None)
    stop = StopFlag()
    with TrainingDisplay(terminal, NORMAL) as bar:
        stop.shown_by = bar.notice
        assert not bar.notice("too early")  # no bar yet
        bar.handle(events.Started(0, 150, "cpu", ["cpu:0"], 1000, 100, 4))
        bar.handle(_timed(10, 150, 1.0, None))
        stop._say("stopping...", b"\n")
    shown = terminal.file.getvalue()
    assert shown.split("10/150")[-1].count("\nstopping...\n") == 1 and "too early" not in shown  # under the last bar
    log = Console(file=io.StringIO(), force_terminal=False, width=100)
    with TrainingDisplay(log, NORMAL) as plain:
        plain.handle(events.Started(0, 150, "cpu", ["cpu:0"], 1000, 100, 4))
        assert not plain.notice("stopping...")


def test_a_terminal_narrowed_mid_run_keeps_the_loss_beside_a_narrower_bar():
    """A bar sized at 120 columns, the terminal then narrowed to 50: every
    figure was gone for the rest of the run, and widened again, the bar
    stayed short (a walkthrough, 2026-12-06)."""
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)
    with TrainingDisplay(terminal, NORMAL) as bar:
        bar.handle(events.Started(0, 150, "cpu", ["cpu:0"], 1000, 100, 4))
        bar.handle(_timed(10, 150, 1.0, None))
        wide = bar._bar.bar_width
        terminal.width = 50
        bar.handle(_timed(20, 150, 2.0, None))
        assert bar._progress.tasks[0].fields["stats"].startswith("loss ") and bar._bar.bar_width < wide
        terminal.width = 120
        bar.handle(_timed(30, 150, 3.0, None))
        assert bar._bar.bar_width == wide


def test_evals_bar_shows_on_a_terminal_and_a_long_scoring_says_how_far_it_is_elsewhere(capsys, monkeypatch):
    from charlstm.cli import reading_display
    from charlstm.cli.reading_display import scoring_bar

    with scoring_bar(Console(stderr=True, force_terminal=False), "scoring") as progress:
        progress(0.5)
    assert capsys.readouterr().err == ""  # a log or a pipe gets the table alone, where the scoring is short
    # A long one says how far it is every so often (minutes of silence before, a walkthrough found).
    clock = iter([0.0, 4.0, 11.0, 12.0, 30.0])
    monkeypatch.setattr(reading_display, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))  # its own
    with scoring_bar(Console(stderr=True, force_terminal=False), "scoring") as progress:
        for share in (0.1, 0.3, 0.4, 1.0):
            progress(share)
    assert capsys.readouterr().err == "scoring: 30%\n"
    with scoring_bar(Console(stderr=True, force_terminal=False), "scoring", quiet=True) as progress:
        progress(0.5)
    terminal = Console(stderr=True, force_terminal=True, width=100)
    with scoring_bar(terminal, "scoring") as progress:
        progress(0.5)
    shown = capsys.readouterr().err
    assert "scoring" in shown and "50%" in shown


def test_a_validation_loss_worse_than_guessing_is_said_to_be():
    """--lr 5 on the tiny preset (2026-12-05) ended "done", status 0, at a
    best validation loss of 6.63 against ln 81 = 4.39, sampling noise, and
    nothing said so. An untrained model's loss (near ln V) says nothing."""
    said = worse_than_guessing(6.631, 81)
    assert said is not None and said.startswith("the validation loss 6.631 is worse than guessing every character")
    assert "(ln 81 = 4.394)" in said and "a lower one usually cures it" in said
    assert worse_than_guessing(4.45, 81) is None  # an untrained model's first pass
    assert worse_than_guessing(2.1, 81) is None


def test_the_first_line_says_how_many_of_the_cpus_devices_the_batch_uses(capsys):
    """JAX_NUM_CPU_DEVICES=3 and a batch of 8 trains on two of the three
    devices; the line said "the CPU split in 2" (a walkthrough, 2026-12-05)."""
    console = Console(stderr=True, force_terminal=False, width=300)
    display = TrainingDisplay(console, NORMAL, plain_interval=0.0)
    for devices, local in ((["cpu:0", "cpu:1"], 2), (["cpu:0", "cpu:1"], 3), (["cpu:0"], 3), (["cpu:0"], 0)):
        display.handle(events.Started(0, 20, "cpu", devices, 1000, 100, 4, local_devices=local))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("training on")]
    assert [line.split(", starting")[0] for line in lines] == [
        "training on cpu (cpu:0, cpu:1; the CPU split in 2, half of the streams on each)",
        "training on cpu (cpu:0, cpu:1; 2 of the CPU's 3 devices, half of the streams on each)",
        "training on cpu (cpu:0; 1 of the CPU's 3 devices)",
        "training on cpu (cpu:0)",
    ]
