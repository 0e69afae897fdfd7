"""benchmarks/step_profile.py's reading of JAX's profile, at a tiny size: a
change in how JAX or XLA names or places the step's operations must fail
here rather than silently empty or skew the profile's table. Its timings
are never checked."""

import importlib
import shutil
import subprocess
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
