"""Where a training step's time goes on the CPU, charlstm beside PyTorch, part by part.

    pip install -e ".[bench]"
    python benchmarks/step_profile.py                   # the vs_pytorch.py small row: 2x256, 64 x 128
    python benchmarks/step_profile.py --shape 512,3,128,128 --json out.json
    python benchmarks/step_profile.py --norm layer --no-torch   # the default cell (nn.LSTM has none)

charlstm's side: JAX's profiler records every operation XLA's CPU runtime
runs (its "thunks") over a few steps; each is matched to its instruction in
the compiled program, whose metadata says where it came from: the forward
pass or its transpose, the backward pass; which layer; whether it is a
matrix product; and whether it sits in a scan's body, run at every
character, or runs once a step. PyTorch's side: `torch.profiler` over the
same number of steps of the nn.LSTM model `vs_pytorch.py` times, bucketed
into oneDNN's LSTM layers forward, their backward, and the rest.

Both profilers add their own cost, so the parts are read as shares and
compared with each other; each side's step is also timed without a
profiler. XLA runs independent operations on the two cores at once, so
charlstm's parts add up to more than the time in which any of them ran;
both are shown. Rounds alternate the sides and medians are shown, every
round kept in the JSON. Both sides run in this one process, with the
malloc settings of `charlstm.runtime.hostmem` (the comparison
`vs_pytorch.py` counts). Timings never feed a pass/fail test.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
from machine import describe, provenance
from step_speed import compiled_step, shape_option
from vs_pytorch import VOCAB

from charlstm.runtime.cores import cores
from charlstm.runtime.hostmem import keep_host_memory

# JAX names the backward pass "transpose(jvp(...))" and the layers by their
# Flax module names.
_LAYER = re.compile(r"/(lstm|gru)_\d+/")
_MODULE = re.compile(r"^HloModule ([\w.\-]+)")
_HEADER = re.compile(r"^(?:ENTRY )?%([\w.\-]+) \(")
_INSTRUCTION = re.compile(r"^\s+(?:ROOT )?%([\w.\-]+) = .*? ([a-z][\w\-]*)\(([^)]*)\)")
_OP_NAME = re.compile(r'op_name="((?:[^"\\]|\\.)*)"')
_CALLED = re.compile(r"(?:calls|to_apply|body|condition|branch_computations)=\{?%([\w.\-]+)")
_BODY = re.compile(r"body=%([\w.\-]+)")
_NAME = re.compile(r"%([\w.\-]+)")
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


@dataclasses.dataclass(frozen=True)
class Instruction:
    opcode: str
    part: str  # forward, backward or rest
    kind: str  # one of KINDS' keys


def _part(op_name: str) -> str | None:
    if not _LAYER.search(op_name):
        return None
    return "backward" if "transpose(jvp(" in op_name else "forward"


def _instructions(hlo: str) -> tuple[str, dict[str, Instruction]]:
    """The compiled program's module name, and each of its instructions by name.

    A fusion is a product if the computation it calls holds a dot, however
    deeply: its own op_name is its root's, which may be an addition or a
    reduction XLA fused after the product. An instruction without a layer in
    its op_name (the copies and buffers XLA adds itself) takes its part from
    where it runs: in a scan's body, the scan's; elsewhere, the nearest
    instruction that uses it and has an op_name."""
    module = _MODULE.match(hlo)
    rows = []  # (computation, name, opcode, op_name, operands, called computations, the line)
    calls: dict[str, set[str]] = collections.defaultdict(set)
    computation = ""
    for line in hlo.splitlines():
        header = _HEADER.match(line)
        if header:
            computation = header.group(1)
            continue
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        op = _OP_NAME.search(line)
        called = _CALLED.findall(line)
        calls[computation].update(called)
        is_dot = m.group(2) == "dot" or (m.group(2) == "custom-call" and "matmul" in line.lower())
        if is_dot:
            calls[computation].add("<dot>")
        operands = _NAME.findall(m.group(3))
        rows.append((computation, m.group(1), m.group(2), op.group(1) if op else "", operands, called, line))

    def holds_dot(comp: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(c == "<dot>" or (c not in seen and holds_dot(c, seen | {c})) for c in calls.get(comp, ()))

    scan_part: dict[str, str | None] = {}  # body computation -> the part its while belongs to
    for _, _, opcode, op_name, _, _, line in rows:
        body = _BODY.search(line) if opcode == "while" else None
        if body:
            scan_part[body.group(1)] = _part(op_name)
    users: dict[str, list[str]] = collections.defaultdict(list)
    for _, name, _, _, operands, _, _ in rows:
        for operand in operands:
            users[operand].append(name)
    named = {name: _part(op_name) or "rest" for _, name, _, op_name, _, _, _ in rows if op_name}

    def part_from_users(name: str) -> str:
        frontier, seen = [name], {name}
        while frontier:  # breadth first: the nearest user with an op_name decides
            nearest = [named[u] for n in frontier for u in users.get(n, ()) if u in named]
            if nearest:
                return nearest[0]
            frontier = [u for n in frontier for u in users.get(n, ()) if u not in seen]
            seen.update(frontier)
        return "rest"

    out = {}
    for comp, name, opcode, _, _, called, _ in rows:
        in_scan = comp in scan_part
        part = named.get(name) or ((scan_part[comp] or "rest") if in_scan else part_from_users(name))
        product = opcode == "dot" or any(holds_dot(c) for c in called)
        kind = f"{'scan' if in_scan else 'window'} {'products' if product else 'other'}"
        out[name] = Instruction(opcode, part, kind)
    return (module.group(1) if module else ""), out


def _trace_events(log_dir: str, module: str) -> list[dict[str, Any]]:
    """The profile's events of the program `module`."""
    (path,) = glob.glob(f"{log_dir}/plugins/profile/*/*.trace.json.gz")
    with gzip.open(path) as f:
        events = json.load(f)["traceEvents"]
    return [e for e in events if e.get("ph") == "X" and e.get("args", {}).get("hlo_module") == module]


def _busy_ms(events: list[dict[str, Any]]) -> float:
    """The time during which at least one of `events` ran, in ms."""
    busy, end = 0.0, float("-inf")
    for start, stop in sorted((e["ts"], e["ts"] + e["dur"]) for e in events):
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return busy / 1e3


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
    if jax.default_backend() != "cpu":
        raise SystemExit("step_profile.py reads the CPU runtime's profile; benchmarks/gpu_check.py is for GPUs")
    c = compiled_step(
        shape["hidden"], shape["layers"], shape["batch"], shape["seq_len"], shape["embed"], vocab=VOCAB, norm=norm
    )
    module, instructions = _instructions(c.step.compiled.as_text())
    state = [c.state]

    def one_step() -> None:
        state[0], metrics = c.step(state[0], c.data)
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
            events = _trace_events(log_dir, module)
        events = [e for e in events if e["args"].get("hlo_op") in instructions]
        events = [e for e in events if instructions[e["args"]["hlo_op"]].opcode not in _CONTROL]
        ms: dict[str, float] = collections.defaultdict(float)
        runs: dict[str, float] = collections.defaultdict(float)
        for e in events:
            at = instructions[e["args"]["hlo_op"]]
            ms[f"{at.part}/{at.kind}"] += e["dur"] / 1e3 / steps
            runs[f"{at.part}/{at.kind}"] += 1 / steps
        return {
            "step_ms": step_ms,
            "traced_step_ms": traced_ms,
            "parts_total_ms": sum(ms.values()),
            "busy_ms": _busy_ms(events) / steps,
            "parts_ms": dict(sorted(ms.items())),
            "operations_per_step": dict(sorted(runs.items())),
        }

    return profile


def torch_profiler(shape: dict[str, int]) -> Callable[[int], dict[str, Any]]:
    """The same for PyTorch's nn.LSTM model of `vs_pytorch.py`: oneDNN's
    LSTM layers forward (with what they call), their backward (with
    autograd's work around it), and everything else."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from vs_pytorch import torch_step

    if torch.cuda.is_available():
        raise SystemExit("step_profile.py profiles the CPU; benchmarks/gpu_check.py is for GPUs")
    # As vs_pytorch.py's worker sets it: left to itself PyTorch picks its own
    # count beside JAX's threads in this process, and its step time swung 100x.
    torch.set_num_threads(cores())
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
        ops = {op.key: op for op in prof.key_averages()}
        total = sum(op.self_cpu_time_total for op in ops.values())
        forward = sum(op.cpu_time_total for key, op in ops.items() if key == "aten::lstm")
        backward = sum(
            op.cpu_time_total
            for key, op in ops.items()
            if key.startswith("autograd::engine::evaluate_function: MkldnnRnnLayerBackward")
        )
        if not forward or not backward:
            raise RuntimeError(f"no oneDNN LSTM layer in PyTorch's profile: {sorted(ops)[:20]}")
        parts = {"forward/all": forward, "backward/all": backward, "rest/all": total - forward - backward}
        per_step = {k: v / 1e3 / steps for k, v in parts.items()}
        return {"step_ms": step_ms, "parts_total_ms": total / 1e3 / steps, "parts_ms": per_step}

    return profile_steps


def _medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds; every round is kept."""
    figures = [k for k, v in rounds[0].items() if isinstance(v, float)]
    out: dict[str, Any] = {k: round(statistics.median(r[k] for r in rounds), 1) for k in figures}
    for table in ("parts_ms", "operations_per_step"):
        if table in rounds[0]:
            keys = sorted({k for r in rounds for k in r[table]})
            out[table] = {k: round(statistics.median(r[table].get(k, 0.0) for r in rounds), 2) for k in keys}
    return {**out, "rounds": rounds}


def _print(shape: dict[str, int], norm: str, jx: dict[str, Any], pt: dict[str, Any] | None) -> None:
    print(
        f"{describe()}, jax {jax.__version__}; {shape['layers']}x{shape['hidden']} {norm} cell, "
        f"batch {shape['batch']} x {shape['seq_len']} characters"
    )
    rounds = len(jx["rounds"])
    print(f"{f'part (ms per step under the profilers, median of {rounds})':58} {'charlstm':>9} {'PyTorch':>8}")
    jparts, total = jx["parts_ms"], jx["parts_total_ms"]
    for part, title in PARTS:
        mine = sum(v for k, v in jparts.items() if k.startswith(part + "/"))
        theirs = "" if pt is None else f"{pt['parts_ms'].get(part + '/all', 0.0):8.1f}"
        print(f"{title:58} {mine:9.1f} {theirs}")
        for kind, what in KINDS:
            t = jparts.get(f"{part}/{kind}", 0.0)
            if t:
                print(f"  {what:56} {t:9.1f}   ({t / total:.0%} of charlstm's)")
    their_total = "" if pt is None else f"{pt['parts_total_ms']:8.1f}"
    their_step = "" if pt is None else f"{pt['step_ms']:8.1f}"
    print(f"{'the parts added up':58} {total:9.1f} {their_total}")
    print(f"{'the time in which at least one of them ran':58} {jx['busy_ms']:9.1f}")
    print(f"{'the step under the profiler (wall)':58} {jx['traced_step_ms']:9.1f}")
    print(f"{'the step without a profiler':58} {jx['step_ms']:9.1f} {their_step}")
    if pt is not None:
        ratios = [t["step_ms"] / c["step_ms"] for c, t in zip(jx["rounds"], pt["rounds"], strict=True)]
        print(f"charlstm's speed / PyTorch's, round by round: {', '.join(f'{r:.2f}x' for r in ratios)}")
    print(f"XLA ran {sum(jx['operations_per_step'].values()):,.0f} operations a step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shape", default="256,2,64,128", type=shape_option, help="HIDDEN,LAYERS,BATCH,SEQ_LEN [256,2,64,128]"
    )
    parser.add_argument("--embed", type=int, default=64, help="embedding width [64]")
    parser.add_argument("--norm", default="none", help="none (nn.LSTM's cell) or layer [none]")
    parser.add_argument("--steps", type=int, default=5, help="steps per round, timed and then profiled [5]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the sides; medians shown [3]")
    parser.add_argument("--no-torch", action="store_true", help="charlstm only")
    parser.add_argument("--json", help="also write the figures here, every round included")
    args = parser.parse_args()
    keep_host_memory()
    hidden, layers, batch, seq_len = map(int, args.shape.split(","))
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be at least 1")
    shape = {"hidden": hidden, "layers": layers, "batch": batch, "seq_len": seq_len, "embed": args.embed}
    sides = {"charlstm": jax_profiler(shape, args.norm)}
    if not args.no_torch and args.norm == "none":
        sides["torch"] = torch_profiler(shape)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for r in range(args.rounds):
        order = list(sides.items())
        for name, profile in order if r % 2 == 0 else order[::-1]:  # which side goes first alternates
            rounds[name].append(profile(args.steps))
    jx = _medians(rounds["charlstm"])
    pt = _medians(rounds["torch"]) if "torch" in rounds else None
    _print(shape, args.norm, jx, pt)
    if args.json:
        with open(args.json, "w") as f:
            result = {"shape": shape, "norm": args.norm, "jax": jax.__version__, "charlstm": jx, "torch": pt}
            json.dump({**provenance(), **result}, f, indent=2)


if __name__ == "__main__":
    main()
