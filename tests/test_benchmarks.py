"""benchmarks/step_profile.py's reading of JAX's profile, at a tiny size: a
change in how JAX or XLA names the step's operations must fail here rather
than silently empty the profile's table. Its timings are never checked."""

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def step_profile(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("step_profile")


def test_the_step_profile_finds_each_part_of_the_step(step_profile):
    seq_len = 8
    shape = {"hidden": 16, "layers": 2, "batch": 4, "seq_len": seq_len, "embed": 8}
    profile = step_profile.jax_profiler(shape, "none")(2)
    parts = profile["parts_ms"]
    for direction in ("forward", "backward"):
        for kind in ("scan products", "scan other", "window products"):
            assert parts.get(f"{direction}/{kind}", 0) > 0, (direction, kind, parts)
    assert parts.get("rest/window products", 0) > 0, parts  # the head
    # Each scan runs its body once per character: 2 layers, forward and back.
    assert profile["operations_per_step"] > 2 * 2 * seq_len
    assert profile["step_ms"] > 0 and profile["traced_step_ms"] > 0
