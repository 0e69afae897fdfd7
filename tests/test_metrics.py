"""metrics.jsonl and samples.txt: what a run leaves for plots and people."""

import math

import pytest

from charlstm.training import events, session
from charlstm.training.loop import PROGRESS_SAMPLE
from charlstm.training.runlog import METRICS_FILE, SAMPLES_FILE, RunLog, read_metrics

from .helpers import new_tiny_run

KEYS = {"step", "time", "elapsed", "train_loss", "train_bpc", "lr", "grad_norm", "chars_per_sec"}


def test_a_run_logs_every_logged_step_with_validation_where_evaluated(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run = new_tiny_run(tiny_corpus, steps=8, eval_every=4, checkpoint_every=8, log_every=2)
    got = []
    session.train(run, run_dir, got.append)
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    for r in records:
        assert set(r) >= KEYS, r
        assert r["train_bpc"] == r["train_loss"] / math.log(2)
    evaluated = {e.step: e.val_loss for e in got if isinstance(e, events.Evaluated)}
    assert sorted(evaluated) == [4, 8]
    assert {r["step"]: r["val_loss"] for r in records if "val_loss" in r} == evaluated
    assert records[1]["val_bpc"] == records[1]["val_loss"] / math.log(2)

    samples = (run_dir / SAMPLES_FILE).read_text(encoding="utf-8")
    shown = [e for e in got if isinstance(e, events.Sampled)]
    assert [e.step for e in shown] == [4, 8]
    assert all(len(e.text) == PROGRESS_SAMPLE.length and e.text in samples for e in shown)
    assert "===== step 8 =====" in samples


def test_a_checkpoint_is_never_ahead_of_its_runs_log(tiny_corpus, tmp_path):
    """A step's line was held until the next report, after its save: a kill
    right after the save lost that line for good, as the resumed run starts
    past its step (a walkthrough, 2026-12-05)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run = new_tiny_run(tiny_corpus, steps=8, eval_every=100, checkpoint_every=3, log_every=1)
    logged_at_save = {}

    def on_event(event):
        if isinstance(event, events.Saved) and not event.best:  # the save is on disk now
            logged_at_save[event.step] = [r["step"] for r in read_metrics(run_dir)][-1]

    session.train(run, run_dir, on_event)
    assert logged_at_save == {3: 3, 6: 6, 8: 8}


def test_resuming_drops_lines_the_dead_session_wrote_after_the_checkpoint(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run = new_tiny_run(tiny_corpus, steps=6, eval_every=100, checkpoint_every=3, log_every=1)
    session.train(run, run_dir)
    # As if the process died after step 5, with a half-written line, and the
    # newest checkpoint was at step 3.
    lines = (run_dir / METRICS_FILE).read_text().splitlines(keepends=True)[:5]
    (run_dir / METRICS_FILE).write_text("".join(lines) + '{"step": 6, "tra')
    (run_dir / SAMPLES_FILE).write_text("===== step 2 =====\nabc\n\n===== step 5 =====\ndef\n\n")
    log = RunLog(run_dir)
    log.handle(events.Started(3, 6, "cpu", ["cpu"], 0, 0, 1))
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3]
    assert (run_dir / SAMPLES_FILE).read_text() == "===== step 2 =====\nabc\n\n"


def test_a_diverged_loss_is_logged_as_null(tmp_path):
    log = RunLog(tmp_path)
    log.handle(events.Progress(1, 5, math.nan, math.inf, 1e-3, 10.0, 1.0, {"head": math.nan}, 1.0))
    log.close()
    line = (tmp_path / METRICS_FILE).read_text()
    assert "NaN" not in line and "Infinity" not in line
    record = read_metrics(tmp_path)[0]
    assert record["train_loss"] is None and record["grad_norm"] is None and record["grad_norms"] == {"head": None}


def test_a_warning_before_the_first_report_joins_the_next_line(tmp_path):
    log = RunLog(tmp_path)
    log.handle(events.Started(0, 4, "cpu", ["cpu"], 0, 0, 1))
    log.handle(events.Warned(0, "validation", "each validation pass is long"))
    log.handle(events.Progress(1, 4, 3.0, 1.0, 1e-3, 10.0, 1.0))
    log.handle(events.Warned(1, "exploding", "gradients are large"))
    log.handle(events.Progress(2, 4, 2.5, 1.0, 1e-3, 10.0, 2.0))
    log.close()
    first, second = read_metrics(tmp_path)
    assert first["warnings"] == ["each validation pass is long", "gradients are large"]
    assert first["warning_kinds"] == ["validation", "exploding"]  # what `charlstm plot --gradients` marks
    assert "warnings" not in second and "warning_kinds" not in second


def test_unreadable_lines_are_skipped_and_a_missing_file_is_empty(tmp_path):
    assert read_metrics(tmp_path) == []
    (tmp_path / METRICS_FILE).write_text('{"step": 1, "train_loss": 2.0}\nnot json\n[1]\n{"step": 2, "train_loss": 1.5')
    assert read_metrics(tmp_path) == [{"step": 1, "train_loss": 2.0}]


def test_per_layer_gradient_norms_make_up_the_global_norm(trained_run):
    records = read_metrics(trained_run[0])
    assert records
    for r in records:
        assert set(r["grad_norms"]) == {"embed", "lstm_0", "lstm_1", "head"}
        assert math.sqrt(sum(v * v for v in r["grad_norms"].values())) == pytest.approx(r["grad_norm"], rel=1e-4)
        assert 0.0 <= r["clipped_fraction"] <= 1.0
