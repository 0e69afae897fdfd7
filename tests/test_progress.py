"""The training display: what it shows, and when it warns."""

from rich.console import Console

from charlstm import events
from charlstm.progress import NORMAL, TrainingDisplay, gradient_warning


def _progress(step, clipped=0.0, norms=None, grad_norm=0.5):
    norms = norms or {"embed": 0.1, "lstm_0": 0.2, "lstm_1": 0.3, "head": 0.4}
    return events.Progress(step, 100, 2.0, grad_norm, 1e-3, 1000.0, 1.0, norms, clipped)


def test_healthy_gradients_give_no_warning():
    assert gradient_warning(_progress(10)) is None
    assert gradient_warning(_progress(10, clipped=0.4)) is None


def test_exploding_and_vanishing_gradients_are_named():
    assert gradient_warning(_progress(10, clipped=0.8, grad_norm=37.0)).startswith("gradients exploding")
    vanishing = {"embed": 1e-9, "lstm_0": 1e-7, "lstm_1": 1e-3, "head": 0.5}
    assert gradient_warning(_progress(10, norms=vanishing)).startswith("gradients vanishing")


def test_a_warning_is_shown_once_per_episode(capsys):
    console = Console(stderr=True, force_terminal=False, width=200)
    display = TrainingDisplay(console, NORMAL, plain_interval=0.0)
    for step, clipped in [(10, 0.9), (20, 1.0), (30, 0.0), (40, 0.7)]:
        display.handle(_progress(step, clipped=clipped))
    err = capsys.readouterr().err
    assert err.count("warning: gradients exploding") == 2
    assert "step 10: warning" in err and "step 40: warning" in err
    assert "clip 90%" in err  # the share is on the progress line too
