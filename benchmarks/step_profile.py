"""Where a training step's time goes, charlstm beside PyTorch, part by part.

    pip install -e ".[bench]"
    python benchmarks/step_profile.py                   # the vs_pytorch.py small row: 2x256, 64 x 128
    python benchmarks/step_profile.py --shape 512,3,128,128 --json out.json
    python benchmarks/step_profile.py --norm layer --no-torch   # the default cell (nn.LSTM has none)

charlstm's side: JAX's profiler records every operation XLA's CPU runtime
runs (its "thunks") over a few steps; each is matched to its instruction in
the compiled program, whose metadata says where it came from (the forward
pass or its transpose, the backward pass; which layer; a matrix product or
not), and whether it runs once per step or at every character inside a
scan. PyTorch's side: `torch.profiler` over the same number of steps of the
nn.LSTM model `vs_pytorch.py` times, bucketed by operator (oneDNN's LSTM
layer forward and backward, the rest).

Both profilers add their own cost, so the parts are read as shares and
compared with each other; each side's step is also timed without a
profiler (the median of --steps steps). XLA may run independent operations
on the two cores at once, so charlstm's parts can add up to more than its
wall time. Both sides run in this one process, with the malloc settings of
`charlstm.runtime.hostmem` (the comparison `vs_pytorch.py` counts).
Timings never feed a pass/fail test.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
from step_speed import compiled_step

from charlstm.runtime.hostmem import keep_host_memory

# Where an instruction came from, from its op_name: JAX names the backward
# pass "transpose(jvp(...))" and the layers by their Flax module names.
_LAYER = re.compile(r"/(lstm|gru)_\d+/")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = .*? ([a-z][\w\-]*)\(")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_BODY = re.compile(r"body=%([\w.\-]+)")
_CALLS = re.compile(r"calls=%([\w.\-]+)")
_CONTROL = {"while", "conditional", "call"}  # their events contain their bodies' events

PARTS = [
    ("forward", "LSTM forward"),
    ("backward", "LSTM backward"),
    ("rest", "embedding, head, loss, optimizer, metrics"),
]
KINDS = [
    ("scan products", "matrix products at each character (in the scan)"),
    ("scan other", "everything else at each character"),
    ("window products", "matrix products over the whole window"),
    ("window other", "everything else, once a step"),
]


def _instructions(hlo: str) -> dict[str, tuple[str, str, bool]]:
    """Each instruction's name -> (opcode, op_name, whether it computes a
    matrix product) in XLA's compiled program text.

    A fusion is a product if the computation it calls holds a dot: its own
    op_name is its root's, which may be an addition or a reduction that XLA
    fused after the product. Instructions XLA added itself (copies in a
    loop's body) have no op_name and take the first one of their loop body."""
    with_dot: set[str] = set()
    bodies = set(_BODY.findall(hlo))
    first_op_name: dict[str, str] = {}
    rows = []  # (computation, name, opcode, op_name, called computation)
    computation = ""
    for line in hlo.splitlines():
        if line and not line.startswith(" ") and "{" in line:
            computation = line.split(" ", 1)[0].lstrip("%")
            continue
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        op, calls = _OP_NAME.search(line), _CALLS.search(line)
        op_name = op.group(1) if op else ""
        if m.group(2) == "dot":
            with_dot.add(computation)
        if op_name and computation in bodies:
            first_op_name.setdefault(computation, op_name)
        rows.append((computation, m.group(1), m.group(2), op_name, calls.group(1) if calls else None))
    return {
        name: (opcode, op_name or first_op_name.get(computation, ""), opcode == "dot" or called in with_dot)
        for computation, name, opcode, op_name, called in rows
    }


def _trace_events(log_dir: str) -> list[dict[str, Any]]:
    (path,) = glob.glob(f"{log_dir}/plugins/profile/*/*.trace.json.gz")
    with gzip.open(path) as f:
        return [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]


def _part(op_name: str) -> str:
    if not _LAYER.search(op_name):
        return "rest"
    return "backward" if "transpose(jvp(" in op_name else "forward"


def _timed(step: Callable[[], Any], steps: int) -> float:
    """The median of `steps` steps' wall times, in ms."""
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def jax_profiler(shape: dict[str, int], norm: str) -> Callable[[int], dict[str, Any]]:
    """charlstm's step at `shape`, compiled and warmed up: a function that
    times `steps` steps, then profiles as many, and returns the figures."""
    c = compiled_step(shape["hidden"], shape["layers"], shape["batch"], shape["seq_len"], shape["embed"], norm=norm)
    instructions = _instructions(c.step.as_text())
    state = [c.state]

    def one_step() -> None:
        state[0], metrics = c.step(state[0], c.data, c.hyper)
        jax.block_until_ready(metrics)

    _timed(one_step, 3)

    def profile(steps: int) -> dict[str, Any]:
        step_ms = _timed(one_step, steps)
        with tempfile.TemporaryDirectory() as log_dir:
            jax.profiler.start_trace(log_dir)
            t0 = time.perf_counter()
            for _ in range(steps):
                one_step()
            traced_ms = (time.perf_counter() - t0) / steps * 1e3
            jax.profiler.stop_trace()
            events = [e for e in _trace_events(log_dir) if e["name"] in instructions]
        events = [e for e in events if instructions[e["name"]][0] not in _CONTROL]
        runs = collections.Counter(e["name"] for e in events)
        ms: dict[str, float] = collections.defaultdict(float)
        for e in events:
            _, op_name, product = instructions[e["name"]]
            where = "scan" if runs[e["name"]] > 1.5 * steps else "window"  # a scan runs its body once per character
            ms[f"{_part(op_name)}/{where} {'products' if product else 'other'}"] += e["dur"] / 1e3 / steps
        return {
            "step_ms": step_ms,
            "traced_step_ms": traced_ms,
            "operations_per_step": len(events) / steps,
            "parts_ms": dict(sorted(ms.items())),
        }

    return profile


def torch_profiler(shape: dict[str, int]) -> Callable[[int], dict[str, Any]]:
    """The same for PyTorch's nn.LSTM model of `vs_pytorch.py`, bucketed by
    operator: oneDNN's LSTM layer forward, its backward, and the rest."""
    from torch.profiler import ProfilerActivity, profile
    from vs_pytorch import torch_step

    step, first = torch_step(shape["embed"], shape["hidden"], shape["layers"], shape["batch"], shape["seq_len"])
    state = [first]

    def one_step() -> None:
        state[0] = step(state[0])

    _timed(one_step, 3)

    def profile_steps(steps: int) -> dict[str, Any]:
        step_ms = _timed(one_step, steps)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                one_step()
        parts: dict[str, float] = collections.defaultdict(float)
        for op in prof.key_averages():
            if op.key.startswith("aten::mkldnn_rnn_layer_backward"):
                part = "backward"
            elif op.key.startswith("aten::mkldnn_rnn_layer"):
                part = "forward"
            else:
                part = "rest"
            parts[f"{part}/all"] += op.self_cpu_time_total / 1e3 / steps
        return {"step_ms": step_ms, "parts_ms": dict(parts)}

    return profile_steps


def _medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds; every round is kept."""
    keys = {k for r in rounds for k in r["parts_ms"]}
    out = {k: round(statistics.median(r[k] for r in rounds), 1) for k in rounds[0] if k != "parts_ms"}
    out["parts_ms"] = {k: round(statistics.median(r["parts_ms"].get(k, 0.0) for r in rounds), 2) for k in sorted(keys)}
    return {**out, "rounds": rounds}


def _print(shape: dict[str, int], norm: str, jx: dict[str, Any], pt: dict[str, Any] | None) -> None:
    print(
        f"{platform.machine()}, jax {jax.__version__}; {shape['layers']}x{shape['hidden']} {norm} cell, "
        f"batch {shape['batch']} x {shape['seq_len']} characters"
    )
    rounds = len(jx["rounds"])
    print(f"{f'part (ms per step under the profilers, median of {rounds})':58} {'charlstm':>9} {'PyTorch':>8}")
    jparts, total = jx["parts_ms"], sum(jx["parts_ms"].values())
    for part, title in PARTS:
        mine = sum(v for k, v in jparts.items() if k.startswith(part + "/"))
        theirs = "" if pt is None else f"{pt['parts_ms'].get(part + '/all', 0.0):8.1f}"
        print(f"{title:58} {mine:9.1f} {theirs}")
        for kind, what in KINDS:
            t = jparts.get(f"{part}/{kind}", 0.0)
            if t:
                print(f"  {what:56} {t:9.1f}   ({t / total:.0%} of charlstm's)")
    their_total = "" if pt is None else f"{sum(pt['parts_ms'].values()):8.1f}"
    their_step = "" if pt is None else f"{pt['step_ms']:8.1f}"
    print(f"{'the parts added up':58} {total:9.1f} {their_total}")
    print(f"{'the step under the profiler (wall)':58} {jx['traced_step_ms']:9.1f}")
    print(f"{'the step without a profiler':58} {jx['step_ms']:9.1f} {their_step}")
    if pt is not None:
        ratios = [t["step_ms"] / c["step_ms"] for c, t in zip(jx["rounds"], pt["rounds"], strict=True)]
        print(f"charlstm's speed / PyTorch's, round by round: {', '.join(f'{r:.2f}x' for r in ratios)}")
    print(f"XLA ran {jx['operations_per_step']:,.0f} operations a step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="256,2,64,128", help="HIDDEN,LAYERS,BATCH,SEQ_LEN [256,2,64,128]")
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--norm", default="none", help="none (nn.LSTM's cell) or layer [none]")
    parser.add_argument("--steps", type=int, default=5, help="steps per round, timed and then profiled [5]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the sides; medians shown [3]")
    parser.add_argument("--no-torch", action="store_true", help="charlstm only")
    parser.add_argument("--json", help="also write the figures here, every round included")
    args = parser.parse_args()
    keep_host_memory()
    hidden, layers, batch, seq_len = map(int, args.shape.split(","))
    shape = {"hidden": hidden, "layers": layers, "batch": batch, "seq_len": seq_len, "embed": args.embed}
    sides = {"charlstm": jax_profiler(shape, args.norm)}
    if not args.no_torch and args.norm == "none":
        sides["torch"] = torch_profiler(shape)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, profile in sides.items():
            rounds[name].append(profile(args.steps))
    jx = _medians(rounds["charlstm"])
    pt = _medians(rounds["torch"]) if "torch" in rounds else None
    _print(shape, args.norm, jx, pt)
    if args.json:
        with open(args.json, "w") as f:
            result = {"shape": shape, "norm": args.norm, "jax": jax.__version__, "charlstm": jx, "torch": pt}
            json.dump({**result, "machine": platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M")}, f, indent=2)


if __name__ == "__main__":
    main()
