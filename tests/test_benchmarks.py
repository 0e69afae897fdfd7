"""benchmarks/step_profile.py's reading of JAX's profile, at a tiny size: a
change in how JAX or XLA names or places the step's operations must fail
here rather than silently empty or skew the profile's table. Its timings
are never checked."""

import importlib
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
    profile = step_profile._medians([profile_steps(steps), profile_steps(steps)])
    runs, parts = profile["operations_per_step"], profile["parts_ms"]
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
    for key in runs:
        assert parts[key] > 0, key
    assert profile["parts_total_ms"] >= profile["busy_ms"] > 0
