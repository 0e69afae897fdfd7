"""Run-to-run determinism on a GPU, for the commands that train.

On a GPU, XLA sums a scatter (the embedding's gradient: every position's
gradient added into its character's row) with atomic additions, in whatever
order the threads arrive, and may pick among matrix kernels by timing them.
Two runs of one seed would then drift apart in the last bits, then further,
and a resumed run would no longer be the straight run bit for bit, which
`charlstm resume` promises. `--xla_gpu_deterministic_ops=true` has XLA use
deterministic implementations (a sorted scatter) and choose among those only.

Every `charlstm` command sets it before JAX starts (one set of XLA flags
for all, which the compilation cache keys on), unless XLA_FLAGS already
names it (`--xla_gpu_deterministic_ops=false` for the
faster, drifting kernels); benchmarks/gpu_check.py times the step both ways.
On a CPU, whose kernels are deterministic already, the flag changes nothing.
The API leaves the caller's JAX as it finds it; `deterministic_gpu_ops()`
is exported for a caller who wants the commands' behaviour.
"""

from __future__ import annotations

import os

FLAG = "xla_gpu_deterministic_ops"


def deterministic_gpu_ops() -> None:
    """Ask XLA for deterministic GPU kernels, unless XLA_FLAGS already says.

    XLA reads XLA_FLAGS when JAX starts its first backend, so this must run
    before anything touches a device (it has no effect after)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --{FLAG}=true".strip()
