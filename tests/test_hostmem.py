"""Host memory: freed large blocks reused instead of faulted in afresh
(keep_host_memory), or faulted in as huge pages (relaunch_with_huge_pages);
either makes XLA's per-step scratch memory cheap on the CPU. Run in child
processes: malloc's settings are process-wide."""

import os
import subprocess
import sys

import pytest

from charlstm.runtime.hostmem import huge_pages_possible

CHILD = """
import ctypes, resource, threading
from charlstm.runtime.hostmem import keep_host_memory
kept = keep_host_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 200 * 2**20
faults = []

def step():  # as XLA does: a worker thread allocates, writes and frees scratch
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

for _ in range(2):
    worker = threading.Thread(target=step)
    worker.start()
    worker.join()
print(kept, faults[1] / (size // resource.getpagesize()))
"""


def _child(env_extra: dict[str, str]) -> tuple[str, float]:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True).stdout
    kept, fraction = out.split()
    return kept, float(fraction)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_a_freed_large_block_is_reused_without_new_page_faults():
    kept, fraction = _child({"CHARLSTM_SYSTEM_MALLOC": "0"})
    assert kept == "True"
    assert fraction < 0.1  # the second 200 MB came from pages already mapped
    kept, fraction = _child({"CHARLSTM_SYSTEM_MALLOC": "1"})
    assert kept == "False"
    assert fraction > 0.5  # glibc's default: a fresh mmap, every page faulted in again


FIRST_TOUCH = """
import ctypes, resource, threading
from charlstm.runtime.hostmem import relaunch_with_huge_pages
on = relaunch_with_huge_pages()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 200 * 2**20
faults = []

def step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

worker = threading.Thread(target=step)
worker.start()
worker.join()
print(on, faults[0] / (size // resource.getpagesize()))
"""


def _without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


@pytest.mark.skipif(not huge_pages_possible(), reason="needs Linux, glibc >= 2.35 and transparent huge pages")
def test_on_huge_pages_a_fresh_large_block_costs_few_page_faults():
    """What the CLI relaunches a training command for: the same 200 MB of
    scratch, faulted in as 2 MB pages instead of 4 kB ones."""
    env = _without("GLIBC_TUNABLES", "CHARLSTM_SYSTEM_MALLOC")
    out = subprocess.run([sys.executable, "-c", FIRST_TOUCH], env=env, capture_output=True, text=True, check=True)
    on, fraction = out.stdout.split()  # printed once: by the relaunched process
    assert on == "True"
    assert float(fraction) < 0.1
    env["CHARLSTM_SYSTEM_MALLOC"] = "1"
    out = subprocess.run([sys.executable, "-c", FIRST_TOUCH], env=env, capture_output=True, text=True, check=True)
    on, fraction = out.stdout.split()
    assert on == "False"
    assert float(fraction) > 0.5


LAUNCH = """
import os, runpy, sys
print("started with", os.environ.get("GLIBC_TUNABLES"), file=sys.stderr, flush=True)
sys.argv = ["charlstm", *sys.argv[1:]]
runpy.run_module("charlstm", run_name="__main__")
"""


@pytest.mark.skipif(not huge_pages_possible(), reason="needs Linux, glibc >= 2.35 and transparent huge pages")
def test_a_training_command_relaunches_itself_on_huge_pages_and_others_do_not():
    """The relaunch happens before the command parses its own options, so
    `--help` shows it cheaply: started twice, the arguments intact, the
    help printed once. (The page faults are the test above.)"""
    env = _without("GLIBC_TUNABLES", "CHARLSTM_SYSTEM_MALLOC")
    for command, starts in [("train", ["None", "glibc.malloc.hugetlb=1"]), ("sample", ["None"])]:
        done = subprocess.run(
            [sys.executable, "-c", LAUNCH, command, "--help"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines() == [f"started with {s}" for s in starts]
        assert done.stdout.count("Usage:") == 1
    opted_out = {**env, "CHARLSTM_SYSTEM_MALLOC": "1"}
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH, "train", "--help"], env=opted_out, capture_output=True, text=True
    )
    assert done.stderr.splitlines() == ["started with None"]
