"""Host memory: freed large blocks reused instead of faulted in afresh
(keep_host_memory), or faulted in as huge pages (relaunch_with_huge_pages);
either makes XLA's per-step scratch memory cheap on the CPU. Memory freed
inside an arena goes back to the system on request (return_freed). Run in
child processes: malloc's settings are process-wide."""

import os
import subprocess
import sys

import pytest

from charlstm.runtime.hostmem import huge_pages_possible

# Child process: `setup` (keep_host_memory or relaunch_with_huge_pages) and
# how many 200 MB blocks a worker thread allocates, writes and frees, as XLA
# does with its scratch; it prints what setup returned and the page faults of
# the last block as a share of its 4 kB pages.
CHILD = """
import ctypes, resource, sys, threading
from charlstm.runtime import hostmem
done = getattr(hostmem, sys.argv[1])()
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

for _ in range(int(sys.argv[2])):
    worker = threading.Thread(target=step)
    worker.start()
    worker.join()
print(done, faults[-1] / (size // resource.getpagesize()))
"""


def _child(setup: str, blocks: int, env: dict[str, str]) -> tuple[str, float]:
    command = [sys.executable, "-c", CHILD, setup, str(blocks)]
    done, fraction = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.split()
    return done, float(fraction)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_a_freed_large_block_is_reused_without_new_page_faults():
    kept, fraction = _child("keep_host_memory", 2, {**os.environ, "CHARLSTM_SYSTEM_MALLOC": "0"})
    assert kept == "True"
    assert fraction < 0.1  # the second 200 MB came from pages already mapped
    kept, fraction = _child("keep_host_memory", 2, {**os.environ, "CHARLSTM_SYSTEM_MALLOC": "1"})
    assert kept == "False"
    assert fraction > 0.5  # glibc's default: a fresh mmap, every page faulted in again


def _without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


@pytest.mark.skipif(not huge_pages_possible(), reason="needs Linux, glibc >= 2.35 and transparent huge pages")
def test_on_huge_pages_a_fresh_large_block_costs_few_page_faults():
    """What the CLI relaunches a training command for: the same 200 MB of
    scratch, faulted in as 2 MB pages instead of 4 kB ones. The child prints
    once: the relaunched process does."""
    env = _without("GLIBC_TUNABLES", "CHARLSTM_SYSTEM_MALLOC")
    on, fraction = _child("relaunch_with_huge_pages", 1, env)
    assert on == "True"
    assert fraction < 0.1
    on, fraction = _child("relaunch_with_huge_pages", 1, {**env, "CHARLSTM_SYSTEM_MALLOC": "1"})
    assert on == "False"
    assert fraction > 0.5


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


# Child process: a worker thread allocates 200 MB in 2 kB blocks and frees
# all but the last, so the freed memory sits below a live block in the
# thread's arena, where free() never returns it (as a compiler's scratch
# does); it prints resident memory before and after `return_freed`.
TRIM_CHILD = """
import ctypes, threading
from charlstm.runtime import hostmem
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

def scratch():
    blocks = [libc.malloc(2048) for _ in range(100_000)]
    for block in blocks:
        ctypes.memset(block, 1, 2048)
    for block in blocks[:-1]:
        libc.free(block)

worker = threading.Thread(target=scratch)
worker.start()
worker.join()
before = rss()
print(hostmem.return_freed(), before, rss())
"""


def _trim_child(env: dict[str, str]) -> tuple[str, int]:
    returned, before, after = subprocess.run(
        [sys.executable, "-c", TRIM_CHILD], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return returned, int(before) - int(after)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_memory_freed_inside_an_arena_goes_back_to_the_system():
    """What the training loop does once a compilation is done."""
    env = _without("GLIBC_TUNABLES", "CHARLSTM_SYSTEM_MALLOC")
    returned, dropped = _trim_child(env)
    assert returned == "True"
    assert dropped > 150 * 2**20  # most of the 200 MB
    returned, dropped = _trim_child({**env, "CHARLSTM_SYSTEM_MALLOC": "1"})
    assert returned == "False"
    assert dropped < 50 * 2**20
