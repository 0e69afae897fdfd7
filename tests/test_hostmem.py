"""keep_host_memory: freed large blocks are reused instead of faulted in
afresh (what makes XLA's per-step scratch memory cheap on the CPU). Run in
child processes: malloc's settings are process-wide."""

import os
import subprocess
import sys

import pytest

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
