import atexit
import functools
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import typer.main
import typer.testing

# A suite started as a script's background job has SIGINT ignored, and under
# nohup SIGHUP too; the workers and every process they start would inherit
# that, and the tests of Ctrl-C and SIGHUP would fail for it (6 of them did,
# 2026-12-06). The tests of an ignored signal ignore it on purpose, in the
# process they start.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)

# The suite compiles hundreds of small programs, and LLVM's optimisation of
# each costs more than running it: with its cheap passes only, the suite
# needs about a third less CPU (test_training and test_sample: 190 s of CPU
# against 120 s, 2026-12-01). XLA's older elementwise emitters (fusion
# emitters off) halve what is left of each compilation: the whole suite took
# 3:55 and 368 s of CPU against 5:41 and 566 s, back to back, 2026-12-02.
# Nothing the tests check depends on either;
# `benchmarks/same_results.py` checks the numbers of programs compiled as the
# commands compile them, and CHARLSTM_TEST_FULL_OPT=1 runs the suite that way.
# Subprocesses inherit it.
#
# XLA aborts the process on a flag it does not know, and newer ones drop
# flags: jaxlib 0.12 (the JAX pip picks on Python 3.12 and later) no longer
# has the emitters' flag, and the suite died at its first import, printing
# nothing (a walkthrough, 2026-12-06). So the suite's first process keeps
# those this XLA accepts, asking a child process once, and its workers and
# subprocesses inherit the answer.
_CHEAP_WANTED = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
)


def _accepted(flags: tuple[str, ...]) -> tuple[str, ...]:
    """Those of `flags` this jaxlib's XLA starts with: all at once, or else
    each alone (one unknown flag aborts the process)."""

    def starts(xla_flags: str) -> bool:
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags}
        probe = [sys.executable, "-c", "import jax; jax.devices()"]
        return subprocess.run(probe, env=env, capture_output=True, timeout=120).returncode == 0

    return flags if starts(" ".join(flags)) else tuple(flag for flag in flags if starts(flag))


if os.environ.get("CHARLSTM_TEST_FULL_OPT"):
    CHEAP_XLA_FLAGS = ""
elif "CHARLSTM_TEST_XLA_FLAGS" in os.environ:  # asked once, by the suite's first process
    CHEAP_XLA_FLAGS = os.environ["CHARLSTM_TEST_XLA_FLAGS"]
else:
    CHEAP_XLA_FLAGS = os.environ["CHARLSTM_TEST_XLA_FLAGS"] = " ".join(_accepted(_CHEAP_WANTED))
if CHEAP_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {CHEAP_XLA_FLAGS}".strip()
# The commands' deterministic GPU kernels (a no-op on a CPU), set here too
# so that the in-process commands and the API tests compile with one set of
# flags (the compilation cache keys on them), and exact resume is tested as
# the commands run it on a GPU.
from charlstm.runtime.gpu_determinism import deterministic_gpu_ops  # noqa: E402

deterministic_gpu_ops()

# Commands enable JAX's persistent compilation cache; keep the tests' cache
# out of the user's home, in one folder the whole session shares: pytest's
# main process makes it, and the xdist workers and every subprocess inherit
# it, so a program one worker compiled the other reads (most tests compile
# the same few tiny models). Only its maker removes it.
if "CHARLSTM_TEST_CACHES_OWNER" not in os.environ:
    os.environ["CHARLSTM_TEST_CACHES_OWNER"] = str(os.getpid())
    os.environ["CHARLSTM_CACHE_DIR"] = tempfile.mkdtemp(prefix="charlstm-test-cache-")
    # The same for the corpus cache (charlstm/text/cache.py).
    os.environ["CHARLSTM_CORPUS_CACHE"] = tempfile.mkdtemp(prefix="charlstm-test-corpora-")
if os.environ["CHARLSTM_TEST_CACHES_OWNER"] == str(os.getpid()):
    for _cache in ("CHARLSTM_CACHE_DIR", "CHARLSTM_CORPUS_CACHE"):
        atexit.register(shutil.rmtree, os.environ[_cache], ignore_errors=True)
os.environ.pop("CHARLSTM_NO_CACHE", None)
# Every program, not only those that take 0.2 s to compile: the tests' tiny
# programs compile in less, hundreds of times over (the suite's CPU time fell
# by a tenth, 2026-12-01). JAX reads this when it is imported, as do the
# subprocesses that inherit it.
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
# The tests' models are tiny, and for tiny buffers charlstm's malloc settings
# (charlstm/runtime/hostmem.py) cost about 20% of the suite's time; test_hostmem.py
# tests them in child processes that set this variable themselves.
os.environ["CHARLSTM_SYSTEM_MALLOC"] = "1"

# The in-process tests compile the same tiny programs again and again (a new
# jit per run); the cache serves the repeats, as it does the commands'.
from charlstm.runtime.compile_cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()

# The suite's own processes keep JAX's one CPU device: the commands that
# CliRunner runs in-process would otherwise split the CPU in two
# (charlstm/runtime/cpu_devices.py) whenever one happened to be the first
# to touch JAX in a worker, and the tests after it would train on two
# devices. Starting the backend here fixes the count; the commands the
# tests start as subprocesses split it as they do for users.
import jax  # noqa: E402

jax.devices()


# Typer's CliRunner builds the app's Click command again at every invoke,
# from every command's signature (typing's evaluation of each annotation):
# about 36 ms an invoke (2026-12-06; ten invokes took 0.36 s, and 0.04 s
# once cached). The command is built from the same functions every
# time and Click makes a fresh context for each call, so one per process
# serves them all; `charlstm` itself builds it once per process anyway.
if getattr(typer.testing, "_get_command", None) is typer.main.get_command:
    typer.testing._get_command = functools.cache(typer.main.get_command)


def pytest_configure(config: pytest.Config) -> None:
    """Orbax's reads that a failed restore left unawaited warn when the
    garbage collector finds them, which may be in a later test, after pytest
    has reset the filter the restore's failure set (restore_failures.failure_line:
    the commands keep it for the process; seen once, 2026-12-06, in a CI run
    of the whole suite). An ini filter, as pytest applies those at every
    test, from the one list of those reads."""
    from charlstm.training.restore_failures import UNAWAITED_READS

    config.addinivalue_line("filterwarnings", f"ignore:{UNAWAITED_READS}:RuntimeWarning")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """What `-n auto` starts on a machine of a few cores: one worker more
    than its cores. Many tests spend part of their time waiting on a
    subprocess, a server or a browser, which a third worker on two cores
    fills: the suite took 4:40 with three workers against 5:00 with two on
    the same 2-core Intel Xeon (2026-12-06). Elsewhere, xdist's own count."""
    cores = os.cpu_count() or 1
    return cores + 1 if cores <= 4 else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: where tests are handed out one by one
    (`--dist load`, as benchmarks/gpu_check.py runs its selection), a long
    test left for the end would run alone while the other workers sit idle.
    The suite's own `--dist loadfile` hands out whole files, those with the
    most tests first, so there it orders each file's tests only."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _tiny_text(lines: int = 400, seed: int = 1) -> str:
    rng = random.Random(seed)
    speakers = ["HAMLET.", "OPHELIA.", "KING.", "QUEEN."]
    words = [
        "the",
        "king",
        "and",
        "queen",
        "of",
        "denmark",
        "speak",
        "to",
        "hamlet",
        "who",
        "is",
        "sad",
        "but",
        "brave",
        "my",
        "lord",
    ]
    out = []
    for _ in range(lines // 3):
        out.append(rng.choice(speakers))
        out.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 9))).capitalize() + ".")
        out.append("")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="session")
def tiny_text() -> str:
    return _tiny_text()


@pytest.fixture()
def tiny_corpus(tmp_path: Path, tiny_text: str) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(tiny_text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny run trained for 4 steps (checkpoint and evaluation at 4), and its
    corpus. Shared: tests that damage it must work on a copy."""
    from .helpers import new_tiny_run, train

    corpus = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    corpus.write_text(_tiny_text(), encoding="utf-8")
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    train(new_tiny_run(corpus, steps=4, checkpoint_every=4, eval_every=4), run_dir)
    return run_dir, corpus
