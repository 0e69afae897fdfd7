"""A change to the cells (charlstm/core/cells.py, lstm.py, ln_lstm.py,
gru.py), timed against a git revision's, in one process.

    python benchmarks/cells_ab.py HEAD                  # the plain cell, 2x256 on 64 x 128, 30 pairs
    python benchmarks/cells_ab.py main --norm layer --dropout 0.2 --shape 256,2,64,64
    python benchmarks/cells_ab.py HEAD~3 --pairs 60 --json out.json

The training step is compiled twice in this process: once with the layer
functions of the cells' modules as they are at REV, once with the working
tree's. Then the two steps alternate (A then B, B then A, ...) and each pair
gives a ratio, A's time over B's: above 1 means the working tree is faster.
The median ratio and its quartiles are printed.

Why pairs in one process: this machine's speed drifts by up to a third
within minutes, so fresh processes timed in turn (step_speed.py, rounds)
cannot show a 5% change; two steps a few hundred milliseconds apart see the
same machine. Both steps start from the same state and data; whether their
parameters are still bit for bit equal after three steps is printed too (a
change meant to compute the same numbers should say True).

Only the cells are swapped (the model, the step and everything else are the
working tree's), so this times changes inside the cells alone. Timings never
feed a pass/fail test.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
from machine import provenance
from step_speed import CompiledStep, compiled_step

import charlstm.core.model as model_module
import charlstm.core.step as step_module
from charlstm.runtime.hostmem import keep_host_memory

ROOT = Path(__file__).resolve().parent.parent
# The layer functions core/model.py takes, and the module of core/ each lives
# in. Older revisions had them elsewhere: up to 2026-12-02 (3ef80bc) all three
# in cells.py, until 2026-12-03 (fa4b5e0) the plain LSTM's there.
LAYERS = {"lstm_layer": "lstm", "ln_lstm_layer": "ln_lstm", "gru_layer": "gru"}
SWAPPED = tuple(LAYERS)


def _source_at(revision: str, module: str) -> str | None:
    """charlstm/core/`module`.py as it is at `revision` (None: not there)."""
    shown = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:charlstm/core/{module}.py"], capture_output=True, text=True
    )
    return shown.stdout if shown.returncode == 0 else None


def _module(revision: str, module: str, source: str) -> types.ModuleType:
    """`source`, charlstm/core/`module`.py at `revision`, as a module of its own."""
    loaded = types.ModuleType(f"{module}_at_{revision}")
    where = f"{revision}:charlstm/core/{module}.py"
    exec(compile(source, where, "exec"), loaded.__dict__)  # our own file, at a revision
    return loaded


@contextlib.contextmanager
def _imported_as(modules: dict[str, types.ModuleType]) -> Iterator[None]:
    """`from charlstm.core.NAME import ...` gives `modules[NAME]`'s names meanwhile."""
    names = [f"charlstm.core.{name}" for name in modules]
    before = {name: sys.modules.get(name) for name in names}
    sys.modules.update(zip(names, modules.values(), strict=True))
    try:
        yield
    finally:
        for name, module in before.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


def cells_at(revision: str) -> types.SimpleNamespace:
    """The layer functions as they are at `revision`: each cell's module as it
    is there, reading that revision's own modules for what it imports of the
    others (cells.py, lstm.py)."""
    loaded: dict[str, types.ModuleType] = {}
    found = {}
    for name, module in LAYERS.items():
        for where in ("cells", module):  # what the cells share first, as their modules import it
            if where not in loaded and (source := _source_at(revision, where)) is not None:
                with _imported_as(loaded):
                    loaded[where] = _module(revision, where, source)
        # Its own module, or where an older revision had it.
        home = next((loaded[w] for w in (module, "cells") if w in loaded and hasattr(loaded[w], name)), None)
        if home is None:
            raise SystemExit(f"{revision} has no {name} in charlstm/core/{module}.py or cells.py")
        found[name] = getattr(home, name)
    return types.SimpleNamespace(**found)


def working_cells() -> types.SimpleNamespace:
    """The layer functions as the working tree has them."""
    return types.SimpleNamespace(
        **{name: getattr(importlib.import_module(f"charlstm.core.{module}"), name) for name, module in LAYERS.items()}
    )


def compiled_with(cells: types.SimpleNamespace, shape: list[int], norm: str, dropout: float) -> CompiledStep:
    for name in SWAPPED:
        setattr(model_module, name, getattr(cells, name))
    step_module._make_train_step.cache_clear()  # compile afresh, not the cached program
    jax.clear_caches()
    hidden, layers, batch, seq_len = shape
    return compiled_step(hidden, layers, batch, seq_len, embed=64, vocab=65, norm=norm, dropout=dropout)


def paired(a: CompiledStep, b: CompiledStep, pairs: int) -> dict:
    state_a, state_b = a.state, b.state
    for _ in range(3):
        state_a, _ = a.step(state_a, a.data)
        state_b, _ = b.step(state_b, b.data)
    jax.block_until_ready((state_a, state_b))
    leaves = zip(jax.tree_util.tree_leaves(state_a.params), jax.tree_util.tree_leaves(state_b.params), strict=True)
    same = all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in leaves)
    times: dict[str, list[float]] = {"a": [], "b": []}
    for k in range(pairs):
        for side in ("a", "b") if k % 2 == 0 else ("b", "a"):
            started = time.perf_counter()
            if side == "a":
                state_a, metrics = a.step(state_a, a.data)
            else:
                state_b, metrics = b.step(state_b, b.data)
            jax.block_until_ready(metrics)
            times[side].append(time.perf_counter() - started)
    ratios = [x / y for x, y in zip(times["a"], times["b"], strict=True)]
    quartiles = statistics.quantiles(ratios, n=4)
    return {
        "bit_identical_after_3_steps": same,
        "a_ms": round(statistics.median(times["a"]) * 1e3, 1),
        "b_ms": round(statistics.median(times["b"]) * 1e3, 1),
        "median_ratio": round(statistics.median(ratios), 4),
        "quartiles": [round(q, 4) for q in quartiles],
        "ratios": [round(r, 4) for r in ratios],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revision", help="the git revision whose cells are A (B is the working tree's)")
    parser.add_argument("--shape", default="256,2,64,128", help="HIDDEN,LAYERS,BATCH,SEQ_LEN [256,2,64,128]")
    parser.add_argument("--norm", default="none", help="none or layer [none]")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout rate in the step [0]")
    parser.add_argument("--pairs", type=int, default=30, help="timed pairs of steps [30]")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.pairs < 2:
        parser.error("--pairs must be at least 2 (their quartiles are shown)")
    keep_host_memory()  # as the CLI does
    shape = [int(n) for n in args.shape.split(",")]
    found = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{args.revision}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        parser.error(f"{args.revision!r} is not a revision of this repository (git rev-parse found no commit)")
    commit = found.stdout.strip()
    a = compiled_with(cells_at(args.revision), shape, args.norm, args.dropout)
    b = compiled_with(working_cells(), shape, args.norm, args.dropout)
    result = paired(a, b, args.pairs)
    print(
        f"cells at {args.revision} (A) against the working tree (B), {args.shape} norm={args.norm} "
        f"dropout={args.dropout}: A {result['a_ms']} ms, B {result['b_ms']} ms a step; A/B median "
        f"{result['median_ratio']:.3f}, quartiles {result['quartiles'][0]:.3f}-{result['quartiles'][2]:.3f} "
        f"over {args.pairs} pairs; parameters bit-identical after 3 steps: {result['bit_identical_after_3_steps']}"
    )
    if args.json:
        record = {**provenance(), "jax": jax.__version__, "revision": args.revision, "revision_commit": commit}
        record |= {"shape": args.shape, "norm": args.norm, "dropout": args.dropout}
        Path(args.json).write_text(json.dumps(record | result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
