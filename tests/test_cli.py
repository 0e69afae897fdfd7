"""The command line, driven the way a user drives it."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charlstm.cli import app

TINY = ["--hidden", "24", "--layers", "2", "--embed", "8", "--batch-size", "4", "--seq-len", "16"]


@pytest.fixture()
def runner():
    return CliRunner()


def _train(runner, corpus, out, *extra):
    return runner.invoke(app, ["train", str(corpus), "--out", str(out), *TINY, "--eval-every", "5", *extra])


def test_train_sample_resume(runner, tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _train(runner, tiny_corpus, "runs/first", "--steps", "10")
    assert result.exit_code == 0, result.output
    assert "validation loss" in result.stderr
    assert "done at step 10" in result.stderr
    assert "charlstm sample --checkpoint runs/first" in result.stderr
    assert result.stdout == ""  # training talks on stderr only

    # No --checkpoint: the most recent run under runs/ is used.
    result = runner.invoke(app, ["sample", "--temp", "0.8", "--length", "80", "--prime", "HAMLET."])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("HAMLET.")
    body = result.stdout[len("HAMLET.") :]  # 80 new characters, then a newline unless the text ended in one
    assert len(body) == 80 or (len(body) == 81 and body.endswith("\n"))
    assert "sampling from runs/first/checkpoints/best/" in result.stderr

    again = runner.invoke(app, ["sample", "--temp", "0.8", "--length", "80", "--prime", "HAMLET."])
    assert again.stdout == result.stdout  # same seed, same text

    result = runner.invoke(app, ["resume", "runs/first", "--steps", "15"])
    assert result.exit_code == 0, result.output
    assert "resuming at step 10 of 15" in result.stderr
    assert "done at step 15" in result.stderr
    meta = json.loads(Path("runs/first/checkpoints/latest/15/meta/metadata").read_text())
    assert meta["step"] == 15 and meta["train"]["steps"] == 15


def test_refuses_to_overwrite_a_run(runner, tiny_corpus, tmp_path):
    run_dir = tmp_path / "[bold]run"  # brackets in paths are printed as they are, not read as markup
    first = _train(runner, tiny_corpus, run_dir, "--steps", "2")
    assert first.exit_code == 0, first.output
    assert f"run directory: {run_dir}" in first.stderr
    result = _train(runner, tiny_corpus, run_dir, "--steps", "2")
    assert result.exit_code == 2
    assert f"run directory {run_dir} already exists" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "missing.txt"], "corpus file not found: missing.txt"),
        (["train", "{tmp}"], "is a directory"),
        (["train", "{corpus}", "--hidden", "0"], "--hidden must be >= 1"),
        (["train", "{corpus}", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["train", "{corpus}", "--val-fraction", "1.5"], "--val-fraction must be strictly between 0 and 1"),
        (["sample", "--checkpoint", "{tmp}/nope"], "checkpoint not found"),
        (["sample", "--checkpoint", "{tmp}"], "not a charlstm run"),
        (["sample", "--length", "0"], "--length must be >= 1"),
        (["sample", "--temp", "-1"], "--temp must be > 0"),
        (["resume", "{tmp}/nope"], "not a run directory"),
        (["resume", "{tmp}"], "not a run directory"),
        (["train", "{corpus}", "--out", "{corpus}"], "is a file, not a directory"),
        (["train", "{corpus}", "--max-time", "-1"], "--max-time must be > 0 minutes, got -1"),
        (["train", "{corpus}", "--seq-len", "100000"], "too short"),
    ],
)
def test_bad_input_is_one_clear_line_and_status_2(runner, tiny_corpus, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, corpus=tiny_corpus) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.stderr.count("\n") == 1


def test_every_command_has_useful_help(runner):
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for command in ("train", "sample", "resume"):
        assert command in top.stdout
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0
        assert "Usage:" in result.stdout
    assert "--temp" in runner.invoke(app, ["sample", "--help"]).stdout
    assert "--steps" in runner.invoke(app, ["resume", "--help"]).stdout


def test_console_script_and_shipped_corpus_from_an_empty_directory(tmp_path):
    """`charlstm train shakespeare.txt` in a directory without that file
    trains on the shipped corpus (a couple of steps, tiny model)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [*_charlstm_command(), "train", "shakespeare.txt", "--steps", "2", "--eval-every", "2", *TINY],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "using the shipped corpus" in result.stderr
    assert "done at step 2" in result.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("shakespeare-")


def _charlstm_command() -> list[str]:
    exe = Path(sys.executable).parent / "charlstm"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "charlstm"]


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_saves_a_checkpoint_and_says_how_to_resume(tiny_corpus, tmp_path, signum, status):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [*_charlstm_command(), "train", str(tiny_corpus), "--out", str(run_dir), "--steps", "100000", *TINY],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    for line in process.stderr:  # wait until it is really training
        if line.startswith("compiled"):
            break
    time.sleep(1.0)
    process.send_signal(signum)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == status
    assert f"charlstm resume {run_dir}" in rest
    stopped = re.search(r"interrupted at step (\d+)", rest)
    assert stopped is not None, rest
    latest = [int(p.name) for p in (run_dir / "checkpoints" / "latest").iterdir() if p.name.isdigit()]
    assert max(latest) == int(stopped.group(1)) > 0
    result = CliRunner().invoke(app, ["sample", "-c", str(run_dir), "--length", "20"])
    assert result.exit_code == 0


def _tree_digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_divergence_stops_training_and_keeps_the_last_good_checkpoint(runner, tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    assert _train(runner, tiny_corpus, run_dir, "--steps", "4", "--checkpoint-every", "2").exit_code == 0
    good = run_dir / "checkpoints" / "latest" / "4"
    before = _tree_digest(run_dir / "checkpoints")

    # An absurd learning rate overflows the parameters within a step or two.
    result = runner.invoke(app, ["resume", str(run_dir), "--steps", "40", "--lr", "1e38", "--eval-every", "1"])
    assert result.exit_code == 1, result.output
    assert "error: training diverged at step" in result.stderr
    assert f"The last good checkpoint is {good} (step 4)" in result.stderr
    assert "Traceback" not in result.output
    assert _tree_digest(run_dir / "checkpoints") == before  # nothing written, nothing replaced

    again = runner.invoke(app, ["resume", str(run_dir), "--steps", "8"])
    assert again.exit_code == 0, again.output
    assert "done at step 8" in again.stderr
