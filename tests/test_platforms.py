"""charlstm where POSIX's extras are missing, as on Windows: the names
Python leaves out there taken away before charlstm is imported (an audit,
2026-12-06, found every command failing at import, and a closed pipe
failing a run). Only a simulation: these tests run on Linux."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Windows's signal module has no SIGHUP or SIGPIPE, its select no poll, its
# os no set_blocking on Python 3.11, and there is no fcntl.
WITHOUT_POSIX = """
import os, select, signal, sys
for name in ("SIGHUP", "SIGPIPE"):
    delattr(signal, name)
del select.poll
if sys.version_info < (3, 12):
    del os.set_blocking
sys.modules["fcntl"] = None
from charlstm.__main__ import main
sys.argv = ["charlstm", *sys.argv[1:]]
main()
"""


def _charlstm(*args: str, cwd, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_POSIX, *args], cwd=cwd, stdout=stdout, stderr=subprocess.PIPE, timeout=240
    )


def test_help_starts(tmp_path):
    done = _charlstm("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert b"train" in done.stdout


@pytest.mark.slow
def test_a_run_trains_samples_and_goes_on_past_a_closed_pipe(tiny_corpus, tmp_path):
    small = ["--hidden", "16", "--embed", "8", "--layers", "1", "-b", "4", "--seq-len", "16"]
    done = _charlstm("train", str(tiny_corpus), "-o", "run", "--steps", "6", "--eval-every", "3", *small, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    # The reader of a long sample goes away: the command ends as a pipe's writer does, no traceback.
    sample = subprocess.Popen(
        [sys.executable, "-c", WITHOUT_POSIX, "sample", "run", "--length", "200000"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert sample.stdout is not None and sample.stdout.read(10)
    sample.stdout.close()
    _, err = sample.communicate(timeout=240)
    assert b"Traceback" not in err, err.decode()
    assert sample.returncode in (0, 141), err.decode()
