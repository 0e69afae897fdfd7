"""When a run's gradients or loss are worth a warning, and how it is shown."""

import pytest
from rich.console import Console

from charlstm.cli.display import NORMAL, TrainingDisplay
from charlstm.training import events
from charlstm.training.health import SUSTAINED, Health

# The first 200 steps of the default run on the shipped corpus, every 10th
# report (2026-12-01, 2-core CPU): step, loss, global norm, clipped share.
DEFAULT_RUN = [
    (10, 4.202, 1.056, 1.0), (30, 3.293, 0.93, 0.0), (50, 2.506, 0.282, 0.0), (70, 2.115, 0.393, 0.0),
    (90, 1.958, 0.268, 0.0), (110, 1.83, 0.229, 0.0), (130, 1.76, 0.263, 0.0), (150, 1.725, 0.229, 0.0),
    (170, 1.701, 0.211, 0.0), (190, 1.627, 0.213, 0.0), (210, 1.604, 0.19, 0.0), (230, 1.619, 0.212, 0.0),
]  # fmt: skip
# The same run at --lr 1.
LR_1_RUN = [
    (10, 3.731, 0.457, 0.4), (20, 3.305, 0.231, 0.0), (40, 2.741, 0.17, 0.0), (80, 2.422, 0.154, 0.0),
    (100, 2.652, 0.088, 0.0), (110, 2.523, 0.069, 0.0), (120, 2.468, 0.096, 0.0), (130, 2.515, 0.092, 0.0),
    (140, 3.561, 0.993, 0.2), (150, 5.886, 0.643, 0.5), (160, 4.104, 0.283, 0.0), (170, 3.487, 0.166, 0.0),
    (180, 3.402, 0.283, 0.0), (190, 3.334, 0.076, 0.0), (200, 3.111, 0.049, 0.0), (230, 8.562, 1.809, 0.9),
    (240, 9.493, 1.047, 0.7), (250, 8.469, 1.899, 0.9),
]  # fmt: skip
HEALTHY_LAYERS = {"embed": 0.1, "lstm_0": 0.2, "lstm_1": 0.3, "head": 0.4}


def _progress(step, loss=2.0, grad_norm=0.5, clipped=0.0, norms=None):
    return events.Progress(step, 2300, loss, grad_norm, 1e-3, 1000.0, 1.0, norms or HEALTHY_LAYERS, clipped)


def _warnings(health, reports):
    return [w for step, loss, norm, clipped in reports for w in health.observe(_progress(step, loss, norm, clipped))]


def test_the_default_run_gives_no_warning_though_its_first_steps_clip():
    assert _warnings(Health(warmup_steps=100), DEFAULT_RUN) == []
    # Without the warm-up rule its first report alone would count: only one, so still no warning.
    assert _warnings(Health(warmup_steps=0), DEFAULT_RUN) == []


def test_a_run_at_lr_1_warns_that_its_loss_rises_then_that_gradients_explode():
    found = _warnings(Health(warmup_steps=100), LR_1_RUN)
    assert [(w.step, w.kind) for w in found] == [(160, "loss rising"), (250, "exploding")]
    assert "3 reports in a row" in found[0].message and "--lr" in found[0].message
    assert "--clip on 90%" in found[1].message


def test_clipping_during_warm_up_never_warns():
    health = Health(warmup_steps=100)
    assert _warnings(health, [(step, 3.0, 5.0, 1.0) for step in range(10, 101, 10)]) == []


def test_one_episode_warns_once_and_a_new_episode_again():
    health = Health(warmup_steps=0)
    clipping = [(step, 2.0, 3.0, 1.0) for step in range(10, 10 * (SUSTAINED + 3), 10)]
    assert len(_warnings(health, clipping)) == 1
    assert _warnings(health, [(1000, 2.0, 0.3, 0.0)]) == []  # cleared
    again = _warnings(health, [(1010 + 10 * i, 2.0, 3.0, 1.0) for i in range(SUSTAINED)])
    assert [w.kind for w in again] == ["exploding"]


def test_a_short_spike_is_not_a_warning():
    reports = [(step, 2.0, 0.2, 0.0) for step in range(10, 110, 10)]
    reports += [(110 + 10 * i, 2.0, 5.0, 1.0) for i in range(SUSTAINED - 1)] + [(200, 2.0, 0.2, 0.0)]
    assert _warnings(Health(), reports) == []


def test_a_blow_up_under_a_generous_clip_is_exploding_by_its_growth():
    calm = [(step, 2.0, 0.2, 0.0) for step in range(10, 110, 10)]
    grown = [(200 + 10 * i, 2.0, 5.0, 0.0) for i in range(SUSTAINED)]
    found = _warnings(Health(), calm + grown)
    assert [w.kind for w in found] == ["exploding"] and "25x its median" in found[0].message


@pytest.mark.parametrize("first", ["lstm_0", "gru_0"])
def test_vanishing_gradients_are_named_when_sustained(first):
    health = Health()
    vanishing = {"embed": 1e-9, first: 1e-7, "head": 0.5}
    found = [
        w for step in range(10, 10 * (SUSTAINED + 1), 10) for w in health.observe(_progress(step, norms=vanishing))
    ]
    assert [w.kind for w in found] == ["vanishing"] and "--layers" in found[0].message


def test_the_display_shows_a_warning_and_the_clipped_share(capsys):
    console = Console(stderr=True, force_terminal=False, width=200)
    display = TrainingDisplay(console, NORMAL, plain_interval=0.0)
    display.handle(_progress(10, clipped=0.9))
    display.handle(events.Warned(10, "exploding", "gradients exploding: it is what it is"))
    err = capsys.readouterr().err
    assert "step 10: warning: gradients exploding: it is what it is" in err
    assert "clip 90%" in err  # the share is on the progress line too
