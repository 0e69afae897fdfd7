"""The benchmark scripts' own logic, at tiny sizes. step_profile.py's reading
of JAX's profile: a change in how JAX or XLA names or places the step's
operations must fail here rather than silently empty or skew the profile's
table. cells_ab.py's revisions. gpu_check.py's time limits and its reading
of its sections' results, which must hold the first time a GPU runs it.
No timing is ever checked."""

import importlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def step_profile(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("step_profile")


def test_the_step_profile_finds_each_part_of_the_step(step_profile):
    layers, seq_len, steps = 2, 8, 2
    shape = {"hidden": 16, "layers": layers, "batch": 4, "seq_len": seq_len, "embed": 8}
    profile_steps = step_profile.jax_profiler(shape, "none")
    rounds = [profile_steps(steps), profile_steps(steps)]
    profile = step_profile._medians(rounds)
    runs = profile["operations_per_step"]
    # Each layer's scan, forward and backward, runs one recurrent product per character.
    assert runs["forward/scan products"] == layers * seq_len
    assert runs["backward/scan products"] == layers * seq_len
    # Whatever else runs in a scan belongs to a layer's forward or backward pass.
    assert not [k for k in runs if k.startswith("rest/scan")], runs
    # Over the window: each layer's input product forward; its two weight
    # gradients and its input's gradient backward; the head's product and
    # its two gradients.
    assert runs["forward/window products"] == layers
    assert runs["backward/window products"] == 3 * layers
    assert runs["rest/window products"] == 3
    # Timed in every round. Read before _medians rounds to 0.01 ms: at this
    # size one product takes a few microseconds, which rounds to 0 (CI, 2026-12-03).
    for key in runs:
        assert all(r["parts_ms"][key] > 0 for r in rounds), key
    assert profile["parts_total_ms"] >= profile["busy_ms"] > 0


def _a_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _a_git_checkout(), reason="benchmarks/cells_ab.py reads a git revision: no git checkout here")
def test_cells_ab_times_a_revisions_cells_against_the_working_trees(monkeypatch):
    """At a tiny size: both steps compile, alternate and give a ratio per
    pair; the model is left with the working tree's cells."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    cells_ab = importlib.import_module("cells_ab")
    import charlstm.core.model as model

    for name in cells_ab.SWAPPED:  # put back whatever happens below
        monkeypatch.setattr(model, name, getattr(model, name))
    old, cells = cells_ab.cells_at("HEAD"), cells_ab.working_cells()
    for name in cells_ab.SWAPPED:
        assert getattr(old, name) is not getattr(cells, name) and callable(getattr(old, name))
    a = cells_ab.compiled_with(old, [8, 1, 2, 4], "none", 0.0)
    b = cells_ab.compiled_with(cells, [8, 1, 2, 4], "none", 0.0)
    result = cells_ab.paired(a, b, pairs=2)
    assert len(result["ratios"]) == 2 and all(r > 0 for r in result["ratios"])
    # Unless the core was edited since HEAD (then it may differ), HEAD's cells
    # are the working tree's: the same steps, bit for bit.
    edited = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "charlstm/core"]).returncode
    if edited == 0:
        assert result["bit_identical_after_3_steps"] is True
    else:
        assert isinstance(result["bit_identical_after_3_steps"], bool)
    assert model.lstm_layer is cells.lstm_layer


# Revisions whose cells lived elsewhere: all three in cells.py, then the plain LSTM there.
EARLIER_LAYOUTS = ("3ef80bc", "fa4b5e0")


def _has_commit(revision: str) -> bool:
    found = ["git", "-C", str(ROOT), "cat-file", "-e", f"{revision}^{{commit}}"]
    return _a_git_checkout() and subprocess.run(found, capture_output=True).returncode == 0


@pytest.mark.parametrize("revision", EARLIER_LAYOUTS)
def test_cells_ab_reads_revisions_whose_cells_lived_elsewhere(revision, monkeypatch):
    if not _has_commit(revision):
        pytest.skip(f"benchmarks/cells_ab.py reads a git revision: {revision} is not in this checkout")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    cells_ab = importlib.import_module("cells_ab")
    import charlstm.core.model as model

    for name in cells_ab.SWAPPED:
        monkeypatch.setattr(model, name, getattr(model, name))
    old, cells = cells_ab.cells_at(revision), cells_ab.working_cells()
    for name in cells_ab.SWAPPED:
        assert getattr(old, name) is not getattr(cells, name) and callable(getattr(old, name))
    for norm in ("layer", "none"):  # the cells that moved: the same steps, bit for bit
        a = cells_ab.compiled_with(old, [8, 1, 2, 4], norm, 0.0)
        b = cells_ab.compiled_with(cells, [8, 1, 2, 4], norm, 0.0)
        assert cells_ab.paired(a, b, pairs=2)["bit_identical_after_3_steps"], norm


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("gpu_check")


def test_the_gpu_check_stops_a_command_with_its_children_and_goes_on(gpu_check, monkeypatch, tmp_path):
    """A section past its time limit must not leave workers running on the
    GPU for the sections after it: its whole process group is stopped."""
    monkeypatch.setattr(gpu_check, "SMOKE_LIMIT_S", 2)
    monkeypatch.setattr(gpu_check, "MIN_START_S", 1)
    check = gpu_check.Check(tmp_path, smoke=True)
    status, stdout, _ = check.run("speed", ["sh", "-c", "sleep 60 & echo $!; wait"])
    assert status == 124
    child = int(stdout.split()[0])
    for _ in range(50):  # the kernel reaps it a moment after the kill
        try:
            if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
                break
        except FileNotFoundError:  # reaped already
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the command's child {child} outlived the time limit")
    # The section's time is spent: its next command is skipped, not started with a second.
    assert check.run("speed", ["true"])[0] == "skipped: no time left"
    shutil.rmtree(check.scratch)


def test_the_gpu_check_reads_every_run_of_a_time_to_quality_file(gpu_check, monkeypatch, tmp_path):
    """The quality section's reading of time_to_quality.py's JSON, with the
    PyTorch recipe's sweep in it (the H200's second check failed on the sweep's
    chosen rate, then stored among the runs), and without training anything."""
    ttq = importlib.import_module("time_to_quality")

    def runs(*args, **kwargs):
        return {
            "records": [{"step": 10, "elapsed": 30.0, "val_loss": 1.5}, {"step": 11, "elapsed": 31.0}],
            "steps": 20,
            "device": "cpu",
        }

    monkeypatch.setattr(ttq, "run_charlstm", runs)
    monkeypatch.setattr(ttq, "run_torch", runs)
    found = tmp_path / "ttq.json"
    argv = ["time_to_quality.py", "--minutes", "1", "--marks", "0.5", "1", "--json", str(found)]
    argv += ["--runs", "charlstm-max-time", "torch-recipe", "--recipe-lrs", "3e-3", "1e-2", "--seeds", "0", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    ttq.main()
    written = json.loads(found.read_text())
    assert written["best_lr"] == {"torch-recipe": 0.003}  # the sweep ties; the first rate stands
    passes = gpu_check._validation_passes(written)
    assert sorted(passes) == [
        "charlstm-max-time seed 0",
        "charlstm-max-time seed 1",
        "torch-recipe lr 0.003 seed 0",
        "torch-recipe lr 0.003 seed 1",
        "torch-recipe lr 0.01 seed 0",
    ]
    assert all(p == [[30.0, 10, 1.5]] for p in passes.values())
    assert gpu_check._validation_passes(None) == {}  # no file: a run stopped before its first save


def test_the_gpu_check_reads_each_tests_outcome_as_pytest_prints_it(gpu_check):
    """With workers or without, parameters with spaces, and a call stopped part-way (no summary)."""
    output = (
        "[gw1] [  8%] PASSED tests/test_vocab.py::test_round_trip[To be, or not] \n"
        "[gw0] [ 16%] FAILED tests/test_vocab.py::test_round_trip[To be, or else] \n"
        "tests/test_model.py::test_shapes PASSED                     [ 50%]\n"
        "tests/test_model.py::test_grads[a b] SKIPPED (no GPU)       [ 75%]\n"
        "collecting ... collected 4 items\n"
    )
    assert gpu_check._test_outcomes(output) == {
        "tests/test_vocab.py::test_round_trip[To be, or not]": "PASSED",
        "tests/test_vocab.py::test_round_trip[To be, or else]": "FAILED",
        "tests/test_model.py::test_shapes": "PASSED",
        "tests/test_model.py::test_grads[a b]": "SKIPPED",
    }


def test_the_gpu_check_reads_json_past_warnings_and_tells_failures_from_skips(gpu_check):
    warned = '{"backend": "gpu"}\nW1203 some warning on stderr\n'
    assert gpu_check._last_json(warned) == {"backend": "gpu"}
    assert gpu_check._last_json("no json at all\n{not json") is None
    section = {"vs_pytorch": {"status": 0}, "step_speed_bf16": {"status": 124}}
    assert gpu_check._failed(section) and not gpu_check._skipped(section)
    section = {"vs_pytorch": {"status": "skipped: PyTorch is not installed"}, "step_speed_fp32": {"status": 0}}
    assert not gpu_check._failed(section) and gpu_check._skipped(section)
    assert gpu_check._failed({"status": "error: RuntimeError('x')"})
    assert gpu_check._skipped({"skipped": "pytest not installed"})


def test_every_result_file_can_say_what_made_it(monkeypatch):
    """A result file that does not say the machine, versions, commit and
    command cannot be read against another (a walkthrough found step_speed,
    devices and startup recording none of them, 2026-12-06)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    made = importlib.import_module("machine").provenance()
    assert set(made) == {"date", "machine", "python", "versions", "commit", "command"}
    assert made["versions"]["jax"] and " cores" in made["machine"]
    assert made["commit"] is None or len(made["commit"].split("+")[0]) == 40


def test_vs_pytorch_refuses_a_row_it_does_not_have_before_it_measures_anything():
    """`--rows smal` printed an empty table and wrote a JSON without rows."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "vs_pytorch.py"), "--rows", "smal"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "no training row 'smal': the rows are 'small', 'large'" in done.stderr
    assert "measuring" not in done.stderr
