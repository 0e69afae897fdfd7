"""Training throughput on one CPU device, on two, and in two processes
(the CPU split as `charlstm train` splits it; JAX_PLATFORMS=cpu even where
a GPU is present).

    python benchmarks/devices.py                       # the small config: 2x256 LSTM, batch 64 x 128
    python benchmarks/devices.py --steps 10 --repeats 1 --json devices.json
    python benchmarks/devices.py --norm layer --dropout 0.2   # the default cell

Every row runs in processes of its own, the way `charlstm train` runs: the
step that `fit` compiles (on several devices: a `data` mesh, the batch and
carried state split by stream, parameters replicated, one pmean of the
gradients), fed by the same `Feeder`. On a CPU the second device is forced
with XLA_FLAGS=--xla_force_host_platform_device_count=2, so both "devices"
share the same cores; the two-process row joins two one-device processes
over loopback, with gloo collectives. Each step is timed with the device synchronised;
the median is reported as characters per second of the global batch, and
each row is run --repeats times, taking turns with the other rows.
Timings are for reading, never for pass/fail tests.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

from machine import describe, provenance

ROWS = [
    # (label, forced CPU devices, --devices, processes)
    ("1 device", 1, 1, 1),
    ("1 of 2 forced devices", 2, 1, 1),
    ("2 forced devices, 1 process", 2, 2, 1),
    ("2 processes x 1 device (gloo, loopback)", 1, 1, 2),
]


def worker(args: argparse.Namespace) -> None:
    """One process of one row: time the real step, print a JSON line (process 0)."""
    from charlstm.runtime.hostmem import keep_host_memory
    from charlstm.training import distributed, processes

    keep_host_memory()  # as the CLI does

    processes.initialize(args.coordinator, args.num_processes, args.process_id)

    import jax
    import numpy as np

    from charlstm.config import ModelConfig, TrainConfig
    from charlstm.core.state import init_state
    from charlstm.text import streams
    from charlstm.training.step_setup import TrainStep

    hidden, layers, batch, seq_len = map(int, args.shape.split(","))
    # The plain LSTM without dropout unless --norm and --dropout say otherwise, as in step_speed.py.
    model_cfg = ModelConfig(vocab_size=81, embed_dim=64, hidden_size=hidden, num_layers=layers, norm=args.norm)
    train_cfg = TrainConfig(batch_size=batch, seq_len=seq_len, dropout=args.dropout)
    ids = np.random.default_rng(0).integers(0, 81, size=batch * seq_len * (args.steps + 8) + 1, dtype=np.int32)
    train_streams = streams.Streams(ids, batch, seq_len, reset_windows=16)
    state = init_state(model_cfg, train_cfg)
    mesh = distributed.make_mesh(batch, args.devices)
    if mesh.size == 1:  # fed and placed as training/step_setup.py does
        feed = train_streams.window
    else:
        feed = distributed.Feeder(train_streams, mesh)  # type: ignore[assignment]
        state = distributed.place_state(state, mesh)
    step = TrainStep(model_cfg, train_cfg, state, feed(0), mesh)
    for i in range(3):  # warm-up
        state, metrics = step(state, feed(i))
    jax.block_until_ready(metrics)
    times = []
    for i in range(3, 3 + args.steps):
        t0 = time.perf_counter()
        state, metrics = step(state, feed(i))
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    if processes.is_main():
        median = statistics.median(times)
        result = {"devices": mesh.size, "processes": jax.process_count(), "step_ms": round(median * 1000, 1)}
        result["chars_per_s"] = round(batch * seq_len / median)
        result["jax"], result["backend"] = jax.__version__, jax.default_backend()
        print(json.dumps(result), flush=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_row(
    forced: int, devices: int, processes: int, shape: str, steps: int, cell: tuple[str, float] = ("none", 0.0)
) -> dict[str, object]:
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    env.pop("XLA_FLAGS", None)
    if forced > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={forced}"
    command = [sys.executable, __file__, "--worker", "--shape", shape, "--steps", str(steps), "--devices", str(devices)]
    command += ["--norm", cell[0], "--dropout", str(cell[1])]
    port = _free_port()
    launched = []
    for i in range(processes):
        joined = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes), "--process-id", str(i)]
        launched.append(
            subprocess.Popen(command + (joined if processes > 1 else []), stdout=subprocess.PIPE, text=True, env=env)
        )
    outputs = [p.communicate(timeout=600)[0] for p in launched]
    if any(p.returncode for p in launched):
        raise SystemExit(f"a worker failed: {[p.returncode for p in launched]}")
    return json.loads(outputs[0].strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="256,2,64,128", help="HIDDEN,LAYERS,BATCH,SEQ_LEN (default: small)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (the median is reported)")
    parser.add_argument("--norm", default="none", help="none or layer [none]")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout rate in the step [0]")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", help=argparse.SUPPRESS)
    parser.add_argument("--num-processes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    # Rows take turns, so that a slow minute on a shared machine spreads over
    # all of them instead of landing on one; each row reports its median run.
    runs: dict[str, list[dict[str, object]]] = {label: [] for label, *_ in ROWS}
    for _ in range(args.repeats):
        for label, forced, devices, processes in ROWS:
            runs[label].append(run_row(forced, devices, processes, args.shape, args.steps, (args.norm, args.dropout)))
    rows = []
    for label, results in runs.items():
        ordered = sorted(results, key=lambda r: float(r["chars_per_s"]))  # type: ignore[arg-type]
        row = {"config": label, **ordered[len(ordered) // 2], "all_chars_per_s": [r["chars_per_s"] for r in results]}
        rows.append(row)
        print(f"{label:<42} {row['step_ms']:>8} ms/step {row['chars_per_s']:>8,} chars/s", flush=True)
    print(
        f"shape {args.shape} (hidden, layers, batch, seq), norm {args.norm}, dropout {args.dropout}, "
        f"{describe()}, "
        f"backend {rows[0]['backend']}, jax {rows[0]['jax']}; median of {args.repeats} runs per row"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    **provenance(),
                    "steps": args.steps,
                    "shape": args.shape,
                    "norm": args.norm,
                    "dropout": args.dropout,
                    "cpus": os.cpu_count(),
                    "repeats": args.repeats,
                    "results": rows,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
