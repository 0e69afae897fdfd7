"""charlstm computes as with JAX's defaults, whatever the caller's shell or
notebook set for its own code (runtime/jax_settings.py). A walkthrough
(2026-12-07) found `JAX_ENABLE_X64=1` making every checkpoint read back as
"damaged" and the default cell fail in its scan, and rank promotion, dtype
promotion, the transfer guard and debug-NaNs each ending a command in a
traceback."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator

import jax
import pytest

import charlstm
from charlstm.config import SampleConfig

# What a strict notebook or a scientist's shell may set, all at once.
STRICT = {
    "jax_enable_x64": True,
    "jax_numpy_rank_promotion": "raise",
    "jax_numpy_dtype_promotion": "strict",
    "jax_transfer_guard": "disallow",
    "jax_debug_nans": True,
    "jax_default_prng_impl": "rbg",  # another generator: other masks, other samples, keys of another shape
    "jax_threefry_partitionable": False,
}
STRICT_ENVIRONMENT = {
    "JAX_ENABLE_X64": "1",
    "JAX_NUMPY_RANK_PROMOTION": "raise",
    "JAX_NUMPY_DTYPE_PROMOTION": "strict",
    "JAX_TRANSFER_GUARD": "disallow",
    "JAX_DEBUG_NANS": "1",
    "JAX_DISABLE_JIT": "1",
    "JAX_DEFAULT_PRNG_IMPL": "rbg",
    "JAX_THREEFRY_PARTITIONABLE": "0",
}
# The default cell (layer-normalised, dropout): the one whose scan failed under x64.
SMALL = {"hidden_size": 24, "num_layers": 2, "embed_dim": 8, "batch_size": 4, "seq_len": 16, "eval_every": 4}


@contextlib.contextmanager
def callers_settings() -> Iterator[None]:
    before = {name: getattr(jax.config, name) for name in STRICT}
    try:
        for name, value in STRICT.items():
            jax.config.update(name, value)
        yield
    finally:
        for name, value in before.items():
            jax.config.update(name, value)


def test_the_api_trains_loads_and_samples_as_under_jaxs_defaults(tiny_corpus, tmp_path):
    plain = charlstm.train(tiny_corpus, out=tmp_path / "plain", steps=4, seed=5, **SMALL)
    request = SampleConfig(length=80, temperature=0.8, seed=3, num_samples=2)
    with callers_settings():
        strict = charlstm.train(tiny_corpus, out=tmp_path / "strict", steps=4, seed=5, **SMALL)
        loaded = charlstm.load(tmp_path / "plain")  # saved without x64: once read back as "damaged"
        texts = loaded.generate(request)
        streamed = ["".join(parts) for parts in zip(*loaded.stream(request, chunk=16), strict=True)]
        score = loaded.evaluate("To be, or not to be")
        resumed = charlstm.resume(tmp_path / "strict", steps=6)
        charlstm.app(loaded)  # its batch is built here, in the caller's thread (a review, 2026-12-07)
        assert jax.config.jax_enable_x64 and jax.config.jax_numpy_rank_promotion == "raise"  # the caller's, kept
    assert strict.best_val_loss == plain.best_val_loss
    assert {str(a.dtype) for a in jax.tree_util.tree_leaves(strict.params)} == {"float32"}
    assert texts == streamed == plain.generate(request)
    assert score == plain.evaluate("To be, or not to be")
    assert resumed.step == 6


def _charlstm(*args: str, cwd, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "charlstm", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_commands_ignore_a_shells_jax_settings(trained_run, tmp_path):
    """Even JAX_DISABLE_JIT=1, with which training waited minutes for a
    compilation it could then not call."""
    run_dir, _ = trained_run
    expected = charlstm.load(run_dir).sample(60, temperature=0.8, seed=3)
    done = _charlstm(
        "sample", str(run_dir), "-n", "60", "--seed", "3", "-t", "0.8", cwd=tmp_path, env=STRICT_ENVIRONMENT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected + "\n"


@pytest.mark.skipif(
    importlib.util.find_spec("jax_cuda12_plugin") is not None, reason="this JAX has a CUDA plugin: cuda may start"
)
def test_a_backend_jax_cannot_start_is_one_line_not_a_traceback(trained_run, tmp_path):
    done = _charlstm("sample", str(trained_run[0]), "-n", "5", cwd=tmp_path, env={"JAX_PLATFORMS": "cuda"})
    assert done.returncode == 2
    assert done.stderr.startswith("error: JAX cannot start the backend that JAX_PLATFORMS=cuda asks for")
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [("JAX_NUM_CPU_DEVICES", ""), ("JAX_DEFAULT_MATMUL_PRECISION", "bogus"), ("JAX_LOG_COMPILES", "maybe")],
)
def test_a_value_jax_refuses_at_start_is_one_line_naming_the_variable(trained_run, tmp_path, variable, value):
    """JAX reads these as it is imported, and a value it cannot parse was a
    traceback from `import jax` in whatever command came first."""
    done = _charlstm("sample", str(trained_run[0]), "-n", "5", cwd=tmp_path, env={variable: value})
    assert done.returncode == 2
    said = f"{variable}={value!r} in the environment is not a value it takes; correct it, or unset it"
    assert done.stderr == f"error: JAX cannot start: {said}\n"
