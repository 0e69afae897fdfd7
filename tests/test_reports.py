"""`charlstm runs`, `info`, `eval` and `plot` on real runs."""

import contextlib
import io
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charlstm import api
from charlstm.cli import app
from charlstm.config import TrainConfig
from charlstm.core.model import count_params_of_shape
from charlstm.training import catalog, checkpoint, run_lock

from .helpers import png_size

WIDE = {"COLUMNS": "200"}


@pytest.fixture()
def runner():
    return CliRunner()


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.stdout


def test_runs_lists_each_run_with_its_best_loss(runner, trained_run, tmp_path):
    run_dir, _ = trained_run
    runs_dir = tmp_path / "runs"
    shutil.copytree(run_dir, runs_dir / "alpha")
    (runs_dir / "not-a-run").mkdir()
    (runs_dir / "broken" / "checkpoints").mkdir(parents=True)
    # Its checkpoints deleted, its log kept: named, not left out (a walkthrough, 2026-12-05).
    shutil.copytree(run_dir, runs_dir / "emptied")
    shutil.rmtree(runs_dir / "emptied" / "checkpoints")
    best = checkpoint.best_val_loss(run_dir)
    assert best is not None

    records = {r["run"]: r for r in json.loads(_ok(runner.invoke(app, ["runs", str(runs_dir), "--json"])))}
    assert set(records) == {str(runs_dir / name) for name in ("alpha", "broken", "emptied")}
    assert "has its metrics but no checkpoints folder" in records[str(runs_dir / "emptied")]["problem"]
    alpha = records[str(runs_dir / "alpha")]
    assert alpha["best_val_loss"] == best and alpha["step"] == alpha["total_steps"] == 4
    assert alpha["model"] == "2x24 LSTM" and alpha["corpus"].endswith("tiny.txt")
    assert alpha["state"] == "done"
    assert records[str(runs_dir / "broken")]["problem"] and records[str(runs_dir / "broken")]["state"] is None

    result = runner.invoke(app, ["runs", str(runs_dir)])
    row = next(line for line in _ok(result).splitlines() if "alpha" in line)  # one line, however long
    assert f"{best:.4f}" in row and "4/4" in row and "tiny.txt" in row and "2x24" in row and " done " in row

    def alpha_row() -> str:
        return next(line for line in _ok(runner.invoke(app, ["runs", str(runs_dir)])).splitlines() if "alpha" in line)

    with run_lock.held(runs_dir / "alpha"):  # as a training process holds it
        row = alpha_row()
        assert " training " in row and "4/4" in row
    # A resume to a new total, before its first save: the session's total, not the checkpoint's.
    with run_lock.held(runs_dir / "alpha", (4, 10)):
        row = alpha_row()
        assert " training " in row and "4/10" in row
    # Once it has saved past its starting step, the checkpoint's total is the newer (a time limit may have moved it).
    with run_lock.held(runs_dir / "alpha", (2, 10)):
        assert "4/4" in alpha_row()
    row = alpha_row()
    assert " done " in row and "4/4" in row  # the lock's last words count only while it is held
    assert "broken" not in result.stdout
    assert f"note: {runs_dir / 'broken'} could not be read: no complete checkpoint" in result.stderr
    with run_lock.held(runs_dir / "broken"):  # a run training now, before its first save, is no broken run
        result = runner.invoke(app, ["runs", str(runs_dir)])
        assert f"note: {runs_dir / 'broken'} is training, before its first checkpoint\n" in result.stderr
        quiet = runner.invoke(app, ["runs", str(runs_dir), "-q"])  # the table alone, its notes left out
        assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == result.stdout
        # In the table too, as training, with what it already says of itself (a walkthrough found no row).
        row = next(line for line in result.stdout.splitlines() if "broken" in line)
        assert " training " in row and " - " in row, row
        listed = json.loads(_ok(runner.invoke(app, ["runs", str(runs_dir), "--json"])))
        broken = {r["run"]: r for r in listed}[str(runs_dir / "broken")]
        assert broken["state"] == "training" and "has not saved its first checkpoint yet" in broken["problem"]

    # A search's trials, a level deeper, are listed too; one run named is its own row; a file is refused.
    shutil.copytree(run_dir, runs_dir / "tune-tiny" / "trial-00")
    listed = [r["run"] for r in json.loads(_ok(runner.invoke(app, ["runs", str(runs_dir), "--json"])))]
    assert str(runs_dir / "tune-tiny" / "trial-00") in listed and len(listed) == 4
    one = json.loads(_ok(runner.invoke(app, ["runs", str(runs_dir / "alpha"), "--json"])))
    assert [r["run"] for r in one] == [str(runs_dir / "alpha")]
    refused = runner.invoke(app, ["runs", str(run_dir / "metrics.jsonl")])
    assert refused.exit_code == 2 and "is a file; name the folder that holds runs" in refused.stderr


@pytest.mark.parametrize(("damaged", "whole"), [("best", "latest"), ("latest", "best")])
def test_runs_lists_a_run_one_of_whose_checkpoints_cannot_be_read(runner, trained_run, tmp_path, damaged, whole):
    """From the other, with a note of how to go on: a damaged newest latest
    checkpoint once dropped its run out of the table, with only the raw error."""
    run_dir, _ = trained_run
    copy = tmp_path / "runs" / "a"
    shutil.copytree(run_dir, copy)
    bad = copy / "checkpoints" / damaged / "4"
    (bad / "meta" / "metadata").write_text("garbage")  # the other, at the same step, is whole
    result = runner.invoke(app, ["runs", str(copy.parent)])
    assert " done " in next(line for line in _ok(result).splitlines() if line.lstrip().startswith("a "))
    note = next(line for line in result.stderr.splitlines() if line.startswith("note: "))
    assert f"cannot read checkpoint {bad}" in note and f"every command goes on from {whole}/4" in note
    listed = json.loads(_ok(runner.invoke(app, ["runs", str(copy.parent), "--json"])))
    assert f"cannot read checkpoint {bad}" in listed[0][f"damaged_{damaged}"] and listed[0][f"damaged_{whole}"] is None
    assert listed[0]["problem"] is None and listed[0]["step"] == 4
    assert json.loads(_ok(runner.invoke(app, ["runs", str(run_dir.parent), "--json"])))[0][f"damaged_{damaged}"] is None
    # With both damaged, nothing is left to read: a row that says so.
    (copy / "checkpoints" / whole / "4" / "meta" / "metadata").write_text("garbage")
    result = runner.invoke(app, ["runs", str(copy.parent)])
    assert f"note: {copy} could not be read: cannot read checkpoint" in _ok(result) + result.stderr


def test_force_color_colours_a_log_but_neither_animates_nor_fits_it(runner, trained_run, tmp_path, monkeypatch):
    """FORCE_COLOR (common in CI) makes Rich call any output a terminal: the
    live bar was redrawn into a log 8 times a second and the runs table cut
    to 80 columns (a walkthrough, 2026-12-06)."""
    from rich.console import Console

    from charlstm.cli.outputs import animates, on_a_terminal

    monkeypatch.setenv("FORCE_COLOR", "1")
    with open(tmp_path / "log", "w") as log:
        console = Console(file=log)
        assert console.is_terminal and not on_a_terminal(console) and not animates(console)
    assert animates(Console(file=io.StringIO(), force_terminal=True))  # the tests' stand-in terminals: at their word
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich's way to say it is a terminal: at its word too
    with open(tmp_path / "log", "w") as log:
        assert on_a_terminal(Console(file=log))
    monkeypatch.delenv("TTY_COMPATIBLE")
    run_dir, _ = trained_run
    shutil.copytree(run_dir, tmp_path / "runs" / ("a-run-with-a-long-name-" * 4))
    listed = _ok(runner.invoke(app, ["runs", str(tmp_path / "runs")]))
    assert "a-run-with-a-long-name-" * 4 in listed and "left out" not in listed


def test_tables_escape_what_stdout_cannot_encode(trained_run, tmp_path):
    """A run named 诗 on an ASCII stdout (PYTHONIOENCODING=ascii, LC_ALL=C
    without UTF-8 mode): an escape, as `sample` writes it, not a traceback
    (`eval` lost its score to one after scoring the whole text)."""
    run_dir, _ = trained_run
    shutil.copytree(run_dir, tmp_path / "runs" / "诗")
    result = CliRunner(charset="ascii").invoke(app, ["runs", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "\\u8bd7" in result.stdout
    # LC_ALL=C without UTF-8 mode: Python's stdout is ASCII with errors="surrogateescape" there.
    from charlstm.cli.fitting import print_table
    from charlstm.cli.tables import runs_table

    c_locale = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="surrogateescape")
    with contextlib.redirect_stdout(c_locale):
        print_table(runs_table(catalog.list_runs(tmp_path / "runs"), tmp_path / "runs"))
        c_locale.flush()
    assert "\\u8bd7" in c_locale.buffer.getvalue().decode("ascii")


def test_a_runs_state_is_what_a_resume_would_do(tmp_path):
    """`charlstm runs`'s state column: a resume of a "done" or "stopped early"
    run trains nothing; a "resumable" one trains on."""
    tc = TrainConfig(steps=100, patience=2)
    passes = [{"step": s, "val_loss": v} for s, v in ((10, 2.0), (20, 1.5), (30, 1.6))]
    assert catalog.state(tmp_path, 100, tc, [*passes, {"step": 100, "val_loss": 1.4}]) == "done"
    # At its last step, stopped during that step's pass: a resume makes the pass it owes.
    assert catalog.state(tmp_path, 100, tc, passes) == "resumable"
    assert catalog.state(tmp_path, 30, tc, passes) == "resumable"  # one pass since the best
    worse = [*passes, {"step": 40, "val_loss": 1.7}]
    assert catalog.state(tmp_path, 40, tc, worse) == "stopped early"
    assert catalog.state(tmp_path, 40, TrainConfig(steps=100), worse) == "resumable"  # no --patience
    # Stopped during the pass at step 50, its patience spent before it: the pass it owes may be a new best.
    every_10 = TrainConfig(steps=100, patience=2, eval_every=10)
    assert catalog.state(tmp_path, 40, every_10, worse) == "stopped early"
    assert catalog.state(tmp_path, 50, every_10, worse) == "resumable"
    assert catalog.state(tmp_path, 0, tc, []) == "resumable"


def test_info_describes_the_checkpoint(runner, trained_run):
    run_dir, _ = trained_run
    model = api.load(run_dir)
    out = _ok(runner.invoke(app, ["info", str(run_dir)], env=WIDE))
    assert str(model.path) in out
    assert "4 of 4" in out and "2x24 LSTM, embedding 8" in out
    assert f"{model.num_params:,}" in out and f"{model.vocab.size} characters" in out
    assert f"{model.best_val_loss:.4f}" in out
    assert "validation text" in out and "the last 10% of the corpus" in out
    record = json.loads(_ok(runner.invoke(app, ["info", str(run_dir), "--json"])))
    assert record["params"] == model.num_params == count_params_of_shape(model.model_config)
    assert record["vocab"] == model.vocab.chars and record["step"] == 4
    # --warmup is at most a tenth of the steps: info says what the schedule used.
    train = model.train_config
    assert record["warmup_steps_used"] == min(train.warmup_steps, train.steps // 10)
    if train.warmup_steps > train.steps // 10:
        assert f"warmup={train.warmup_steps} ({train.steps // 10} used)" in out


def _strict(text: str):
    """JSON as strict readers (JSON.parse, jq) take it: no Infinity, no NaN."""

    def refuse(constant: str):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_records_are_strict_json_with_a_run_that_clips_nothing(runner, tiny_corpus, tmp_path):
    """`--clip inf` (the README's "none") was written as Infinity, which
    JSON.parse refuses and jq reads as 1.8e308 (a walkthrough, 2026-12-06):
    every record on stdout is strict JSON, infinities as null, as in metrics.jsonl."""
    tiny = ["--hidden", "16", "--layers", "1", "--embed", "8", "--batch-size", "4", "--seq-len", "16"]
    run_dir = tmp_path / "run"
    _ok(runner.invoke(app, ["train", str(tiny_corpus), "-o", str(run_dir), *tiny, "--steps", "2", "--clip", "inf"]))
    record = _strict(_ok(runner.invoke(app, ["info", str(run_dir), "--json"])))
    assert record["train"]["grad_clip"] is None
    assert _strict(_ok(runner.invoke(app, ["runs", str(tmp_path), "--json"])))[0]["run"]
    assert api.load(run_dir).train_config.grad_clip == float("inf")  # the checkpoint keeps it


def test_a_run_saved_before_a_check_was_added_still_reads_and_resumes_once_fixed(runner, trained_run, tmp_path):
    """A check added to the options (an --lr that is 0 in float32, lr x
    weight-decay from 1; 2026-12-06) must not make runs saved before it
    unreadable: info, sample and runs read them; a resume, which would train
    with them, says what to change, and goes on once it is."""
    run_dir = tmp_path / "old"
    shutil.copytree(trained_run[0], run_dir)
    for meta in run_dir.glob("checkpoints/*/*/meta/metadata"):
        saved = json.loads(meta.read_text())
        meta.write_text(json.dumps({**saved, "train": {**saved["train"], "learning_rate": 1e-50}}))
    assert "lr=1e-50" in _ok(runner.invoke(app, ["info", str(run_dir)], env=WIDE))
    assert _ok(runner.invoke(app, ["sample", "-c", str(run_dir), "-n", "5", "-q"]))
    assert json.loads(_ok(runner.invoke(app, ["runs", str(tmp_path), "--json"])))[0]["run"] == str(run_dir)
    refused = runner.invoke(app, ["resume", str(run_dir), "--steps", "5"])
    assert refused.exit_code == 2 and "--lr must be at least 1.2e-38, got 1e-50" in refused.stderr
    _ok(runner.invoke(app, ["resume", str(run_dir), "--steps", "5", "--lr", "0.01"]))


def test_info_says_where_a_run_was_resumed_and_what_each_resume_changed(runner, trained_run, tmp_path):
    """The training row shows the described checkpoint's options, as if for
    the whole run: a run trained at one --lr and resumed at another, or on
    other text, said nothing of it (a walkthrough, 2026-12-06)."""
    from charlstm.training import runlog

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    [first] = runlog.sessions(runlog.read_metrics(run_dir))
    assert first["from_step"] == 0 and first["steps"] == 4 and len(first["corpus_sha256"]) == 64
    _ok(runner.invoke(app, ["resume", str(run_dir), "--steps", "6", "--lr", "0.005"]))
    _ok(runner.invoke(app, ["resume", str(run_dir), "--steps", "8"]))
    sessions = runlog.sessions(runlog.read_metrics(run_dir))
    assert [(s["from_step"], s["steps"], s["learning_rate"]) for s in sessions] == [
        (0, 4, first["learning_rate"]),
        (4, 6, 0.005),
        (6, 8, 0.005),
    ]
    out = _ok(runner.invoke(app, ["info", str(run_dir)], env=WIDE))
    assert re.search(
        rf"resumed\s+at step 4: steps=6 \(was 4\), lr=0\.005 \(was {first['learning_rate']}\)\n\s+"
        r"at step 6: steps=8 \(was 6\)\n",
        out,
    ), out
    assert json.loads(_ok(runner.invoke(app, ["info", str(run_dir), "--json"])))["sessions"] == sessions
    # A run that began before sessions were logged: its resumes are still listed (each names what it changed).
    log = run_dir / runlog.METRICS_FILE
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for record in records:
        if record.get("session", {}).get("from_step") == 0:
            del record["session"]
    log.write_text("".join(json.dumps(record) + "\n" for record in records))
    assert [s["from_step"] for s in runlog.read_sessions(run_dir)] == [4, 6]
    assert _ok(runner.invoke(app, ["info", str(run_dir)], env=WIDE)).count("at step ") == 2


def test_info_names_the_latest_checkpoint_where_it_is_not_the_best(runner, trained_run, tmp_path):
    """A run stopped past its best checkpoint: info describes the best, and
    says where the run stands, as `runs` does (info said step 60 where
    runs said 79; a walkthrough, 2026-12-04)."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    assert "latest checkpoint" not in _ok(runner.invoke(app, ["info", str(run_dir)], env=WIDE))
    # Saved later, by a resume that extended the run to 8 steps, with a worse pass at 7.
    later = run_dir / "checkpoints" / "latest" / "7"
    shutil.copytree(run_dir / "checkpoints" / "latest" / "4", later)
    stored = json.loads((later / "meta" / "metadata").read_text())
    stored["step"], stored["train"]["steps"] = 7, 8
    stored["history"].append({"step": 7, "val_loss": 9.8765, "train_seconds": 1.0})
    (later / "meta" / "metadata").write_text(json.dumps(stored))
    out = _ok(runner.invoke(app, ["info", str(run_dir)], env=WIDE))
    assert re.search(r"latest checkpoint\s+step 7 of 8: resume goes on from there", out), out
    assert "step 7: 9.8765 (latest passes)" in out  # the run's newest passes, not the best's
    assert json.loads(_ok(runner.invoke(app, ["info", str(run_dir), "--json"])))["latest_step"] == 7
    stored["train"]["steps"] = 7  # at its total, that step's pass made: nothing for a resume to do
    (later / "meta" / "metadata").write_text(json.dumps(stored))
    out = _ok(runner.invoke(app, ["info", str(run_dir)], env=WIDE))
    assert re.search(r"latest checkpoint\s+step 7 of 7: the run is done", out), out


def test_eval_matches_the_logged_validation_loss(runner, trained_run, tmp_path):
    run_dir, corpus = trained_run
    text = corpus.read_text(encoding="utf-8")
    val = tmp_path / "val.txt"
    val.write_text(text[len(text) - int(len(text) * 0.1) :], encoding="utf-8")
    logged = api.load(run_dir).history[-1]["val_loss"]
    record = json.loads(_ok(runner.invoke(app, ["eval", str(run_dir), str(val), "--json"])))
    assert record["loss"] == pytest.approx(logged, abs=1e-4)
    assert record["chars"] == len(val.read_text(encoding="utf-8")) - 1 and record["skipped"] == 0
    # With no text it scores the run's own validation text: the same number.
    result = runner.invoke(app, ["eval", str(run_dir), "--json"])
    assert json.loads(_ok(result)) == {**record, "text": f"{corpus} (validation text)"}
    assert "no text given: reading the run's validation text" in result.stderr

    odd = tmp_path / "odd.txt"
    odd.write_text("KING. Wherefore art thou \u00e9\u00e9 #\n" * 40, encoding="utf-8")
    out = _ok(runner.invoke(app, ["eval", str(run_dir), str(odd)], env=WIDE))
    assert "bits per char" in out and "perplexity" in out
    assert "skipped (not in vocabulary)" in out and "'\u00e9' x80" in out


def test_plot_writes_a_png_of_the_requested_size(runner, trained_run, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "curves" / "loss.png"
    args = ["plot", str(run_dir), str(run_dir), "-o", str(out), "--width", "900", "--height", "360"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stderr
    assert png_size(out) == (900, 360)
    # The gradient norms: a panel a run, 330 pixels a row of them, the run's --clip read from its checkpoint.
    result = runner.invoke(app, ["plot", str(run_dir), "--gradients", "-o", str(tmp_path / "gradients.png")])
    assert result.exit_code == 0, result.output
    assert png_size(tmp_path / "gradients.png") == (1200, 330)
    quiet = runner.invoke(app, ["plot", str(run_dir), "-o", str(tmp_path / "quiet.png"), "-q"])
    assert quiet.exit_code == 0 and quiet.output == "" and png_size(tmp_path / "quiet.png") == (1200, 450)
    assert api.runs._clip(run_dir) == 1.0  # what the panel's title and line show
    # A place it cannot write: one line and status 2, as export and inspect say it, not a traceback.
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    for bad in (tmp_path / "a-file" / "loss.png", Path("/proc/loss.png")):
        refused = runner.invoke(app, ["plot", str(run_dir), "-o", str(bad)])
        assert refused.exit_code == 2, refused.output
        assert refused.stderr.startswith(f"error: cannot write {bad}: ") and "Traceback" not in refused.output


def test_colour_only_on_a_terminal_and_never_with_no_color(runner, tiny_corpus, tmp_path):
    """FORCE_COLOR makes rich treat the output as a terminal: the live
    progress bar is coloured, unless NO_COLOR is set."""
    colour = re.compile(r"\x1b\[[0-9;]*(?:3[0-9]|9[0-7])m")  # SGR foreground colours
    tiny = ["--hidden", "8", "--layers", "1", "--embed", "4", "--batch-size", "2", "--seq-len", "8", "--steps", "3"]

    def train(name, env):
        result = runner.invoke(app, ["train", str(tiny_corpus), "--out", str(tmp_path / name), *tiny], env=env)
        assert result.exit_code == 0, result.output
        return result.stderr

    assert "\x1b[" not in train("plain", {})  # not a terminal: plain lines
    assert colour.search(train("terminal", {"FORCE_COLOR": "1", "TERM": "xterm"}))
    assert not colour.search(train("no-color", {"FORCE_COLOR": "1", "TERM": "xterm", "NO_COLOR": "1"}))


def test_the_runs_table_names_a_runs_first_file_and_counts_the_others():
    from rich.console import Console

    from charlstm.cli.tables import runs_table
    from charlstm.training.catalog import RunSummary

    def row(sources: int) -> str:
        given = ("/data/a.txt", *(f"/data/more-{n}" for n in range(sources - 1)))
        summary = RunSummary(Path("runs/r"), "/data/a.txt", "2x256 LSTM", 10**6, 5, 10, 1.5, 3.0, 0.0, None, given)
        console = Console(width=200, file=io.StringIO())
        console.print(runs_table([summary]))
        return console.file.getvalue()

    assert " a.txt +2 " in row(3) and " a.txt " in row(1) and "+" not in row(1)


def test_a_tiny_models_parameters_are_counted_not_rounded_to_nothing():
    from charlstm.cli.format import param_count

    assert [param_count(n) for n in (810, 3_360, 230_000, 1_050_000)] == ["810", "3.36k", "0.23M", "1.05M"]


def test_the_runs_table_shows_the_escapes_of_names_that_would_break_a_row():
    """A name holding U+2028 split its row, and U+202E turned the rest of it
    around (a walkthrough, 2026-12-06); a name that is not UTF-8 could not
    be written at all."""
    from rich.console import Console

    from charlstm.cli.tables import runs_table
    from charlstm.training.catalog import RunSummary

    name, corpus = "r\u2028\u202eun\udcff", "/data/a\u2029.txt"
    summary = RunSummary(Path("runs") / name, corpus, "2x256 LSTM", 10**6, 5, 10, 1.5, 3.0, 0.0, None, (corpus,))
    console = Console(width=200, file=io.StringIO())
    console.print(runs_table([summary]))
    shown = console.file.getvalue()
    assert "r\\u2028\\u202eun\\udcff" in shown and "a\\u2029.txt" in shown, shown
    assert not any(c in shown for c in "\u2028\u2029\u202e\udcff")


def test_the_runs_table_tells_two_searches_trials_apart():
    from rich.console import Console

    from charlstm.cli.tables import runs_table
    from charlstm.training.catalog import RunSummary

    runs = [
        RunSummary(Path(f"runs/{search}/trial-01"), "a.txt", "1x32 LSTM", 10**4, 5, 5, 3.0, 1.0, 0.0)
        for search in ("tune1", "tune2")
    ]
    console = Console(width=200, file=io.StringIO())
    console.print(runs_table(runs, Path("runs")))
    shown = console.file.getvalue()
    assert f" {Path('tune1/trial-01')} " in shown and f" {Path('tune2/trial-01')} " in shown


@pytest.mark.parametrize("width", [80, 100])
def test_tables_on_a_narrow_terminal_leave_columns_out_instead_of_cutting_names_and_figures(width):
    """An 80-column terminal: the runs table keeps each run's whole name,
    steps and loss (the spare columns go first), a search's table each
    trial's point and loss, inspect's tables the strongest unit and the means."""
    import numpy as np
    from rich.console import Console

    from charlstm.cli.fitting import fitted
    from charlstm.cli.inspect_tables import saturation_table
    from charlstm.cli.tables import runs_table, trials_table
    from charlstm.training.catalog import RunSummary
    from charlstm.training.events import TrialResult

    def shown(table) -> str:
        console = Console(width=width, file=io.StringIO())
        console.print(fitted(table, width))
        return console.file.getvalue()

    long = "tune-shakespeare-20261204-115543/trial-00"
    runs = [
        RunSummary(
            Path("runs") / name, "shakespeare.txt", "2x256 LSTM with layer norm", 890_000, 969, 2300, 1.39, 247.0, 0
        )
        for name in (long, "default2")
    ]
    table = shown(runs_table(runs, Path("runs")))
    # Whole, or at 80 columns folded onto two lines (the state keeps its place), never cut short.
    folded = [line.split()[0] for line in table.splitlines() if line.split()][2:4]  # below the header and rule
    assert long in table if width > 80 else "".join(folded) == long
    assert "969/2300" in table and "1.3900 (2.005)" in table and "…" not in table
    assert "updated" not in table.split("left out")[0]  # the first to go, and said to be gone
    said = " ".join(table.split())  # the caption folds to the table's width
    assert f"left out to fit {width} columns: updated" in said and "(a wider window or --json shows them)" in said
    assert "resumable" in table and "resumable" in shown(runs_table(runs[1:], Path("runs")))
    # Narrower, a run's state stays beside its steps and loss: the name folds first.
    narrow = Console(width=60, file=io.StringIO())
    narrow.print(fitted(runs_table(runs, Path("runs")), 60))
    assert all(t in narrow.file.getvalue() for t in ("resumable", "969/2300", "1.3900 (2.005)", "default2"))
    point = {"learning_rate": 0.0123, "hidden_size": 256, "num_layers": 2, "dropout": 0.1, "weight_decay": 0.05}
    trials = [TrialResult(i, f"s/trial-0{i}", point, {}, 734, 734, 1.57, 9.9, 10**5, "done") for i in range(2)]
    table = shown(trials_table(trials))
    assert "trial-01" in table and "0.0123" in table and "1.5700 (2.265)" in table and "…" not in table
    from rich.text import Text

    from charlstm.cli.fitting import SpareTable

    styled = SpareTable(spare=("b",))  # a header given as rich Text is spared by its plain text
    styled.add_column("a", no_wrap=True)
    styled.add_column(Text("b", style="bold"), no_wrap=True)
    styled.add_row("x" * (width - 10), "y" * 30)
    assert "y" not in shown(styled) and "x" * (width - 10) in shown(styled)
    gates = {gate: (np.full((2, 8), 0.25), np.full((2, 8), 0.5)) for gate in "ifo"}
    table = shown(saturation_table(gates))
    assert "forget gate" in table and "25.0%" in table and "50.0%" in table and "…" not in table


@pytest.mark.parametrize("width", [40, 60])
def test_a_table_too_wide_without_its_spare_columns_is_shown_a_record_a_block(width):
    """A search's table below 77 columns read "trial…  0.00…  hid…", and
    the runs table at 40 cropped "best val" to "be" (a walkthrough,
    2026-12-06): a field a line instead, every field whole, none left out."""
    from rich.console import Console

    from charlstm.cli.fitting import fitted
    from charlstm.cli.tables import runs_table, trials_table
    from charlstm.training.catalog import RunSummary
    from charlstm.training.events import TrialResult

    point = {"learning_rate": 0.0123, "hidden_size": 256, "num_layers": 2, "dropout": 0.1, "weight_decay": 0.05}
    trials = [TrialResult(i, f"s/trial-0{i}", point, {}, 734, 734, 1.57, 9.9, 10**5, "done") for i in range(2)]
    tables = [trials_table(trials)]
    if width == 40:
        tables.append(runs_table([RunSummary(Path("runs/a"), "a.txt", "2x256 LSTM", 10**6, 9, 20, 1.39, 247.0, 0)]))
    for table in tables:
        console = Console(width=width, file=io.StringIO(), color_system=None)
        console.print(fitted(table, width))
        shown = console.file.getvalue()
        assert "…" not in shown and "left out" not in shown and max(map(len, shown.splitlines())) <= width
        lines = [" ".join(line.split()) for line in shown.splitlines()]
        if "trial" in shown:
            assert {"trial trial-01", "val (bpc) 1.5700 (2.265)", "dropout 0.1", "ended done"} <= set(lines)
        else:
            updated = "updated " + time.strftime("%m-%d %H:%M", time.localtime(0))
            assert {"best val (bpc) 1.3900 (2.005)", "steps 9/20", "state resumable", updated} <= set(lines)
    # A title stays (saturation's says what left and right mean); a table of no rows keeps its header.
    import numpy as np

    from charlstm.cli.inspect_tables import saturation_table

    gates = {gate: (np.full((2, 8), 0.25), np.full((2, 8), 0.5)) for gate in "ifo"}
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(fitted(saturation_table(gates), width))
    assert " ".join(console.file.getvalue().split()).startswith("Gate saturation: share of steps below")
    assert fitted(runs_table([]), width).row_count == 0 and fitted(runs_table([]), width).show_header


def test_the_vocabulary_shows_characters_that_would_merge_on_screen_by_their_escapes():
    """Regional indicators J and P drew the flag of Japan, a vowel sign sat
    on the space before it, and a joiner did not show at all (a walkthrough
    of other scripts, 2026-12-06); the rest is quoted as Python quotes it."""
    from charlstm.cli.tables import _vocab_preview
    from charlstm.text.vocab import Vocab

    shown = _vocab_preview(Vocab.from_text("\n 'k\u093e\u200d\U0001f1ef\U0001f1f5\u00a0\t"))
    assert shown == "'\\t\\n \\'k\\xa0\\u093e\\u200d\\U0001f1ef\\U0001f1f5'", shown


def test_skipped_characters_past_the_shown_ones_are_counted():
    from charlstm.cli.format import skipped_text

    skipped = {chr(0x3B1 + i): 100 - i for i in range(12)}  # 12 unknown characters, most frequent first
    text = skipped_text(skipped)
    assert text.startswith("'α' x100, 'β' x99") and text.count(" x") == 10
    assert text.endswith("and 2 more (179 occurrences)")
    assert skipped_text({"é": 3}) == "'é' x3"
