"""Host memory: freed large blocks reused instead of faulted in afresh
(keep_host_memory), or faulted in as huge pages (relaunch_with_huge_pages);
either makes XLA's per-step scratch memory cheap on the CPU. Memory freed
inside an arena goes back to the system on request (return_freed). Run in
child processes: malloc's settings are process-wide."""

import os
import subprocess
import sys

import pytest

from charlstm.cli.app import asks_for_help
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
    """The relaunch happens before the command parses its own options, its
    arguments intact (a corpus that is not there is then told once); a
    command line that asks for help trains nothing and is not started
    again, whatever the command."""
    env = _without("GLIBC_TUNABLES", "CHARLSTM_SYSTEM_MALLOC")
    cases = [
        (["train", "no-such-corpus.txt"], ["None", "glibc.malloc.hugetlb=1"], 2),
        (["train", "--help"], ["None"], 0),
        (["resume", "-h"], ["None"], 0),
        (["sample", "--help"], ["None"], 0),
    ]
    for args, starts, status in cases:
        done = subprocess.run(
            [sys.executable, "-c", LAUNCH, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == status, done.stderr
        said = done.stderr.splitlines()
        assert said[: len(starts)] == [f"started with {s}" for s in starts]
        if status:
            assert len(said) == len(starts) + 1 and said[-1].startswith("error: corpus file or folder not found")
        else:
            assert said == [f"started with {s}" for s in starts] and done.stdout.count("Usage:") == 1
    opted_out = {**env, "CHARLSTM_SYSTEM_MALLOC": "1"}
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH, "train", "no-such-corpus.txt"], env=opted_out, capture_output=True, text=True
    )
    assert [line for line in done.stderr.splitlines() if line.startswith("started")] == ["started with None"]


def test_only_the_commands_own_arguments_before_a_double_dash_ask_for_help():
    assert asks_for_help(["corpus.txt", "--steps", "5", "-h"])
    assert not asks_for_help(["corpus.txt", "--", "-h"])  # a file named -h
    assert not asks_for_help(["--hidden-size", "64"])


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
