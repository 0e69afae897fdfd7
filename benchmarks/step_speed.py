"""Training throughput of charlstm's real jitted step, for a few shapes.

    python benchmarks/step_speed.py                      # the default shapes
    python benchmarks/step_speed.py --shape 256,2,64,64 --steps 50 --json out.json
    python benchmarks/step_speed.py --norm layer --dropout 0.2   # the CLI's default LSTM
    python benchmarks/step_speed.py --precision bf16             # bf16 products (for GPUs)

Each shape is HIDDEN,LAYERS,BATCH,SEQ_LEN (embedding 64, vocabulary 81 as in
the shipped corpus). The step is compiled once, warmed up, then timed step by
step with the device synchronised; the median is reported as characters per
second (BATCH x SEQ_LEN characters per step). The model is the plain LSTM
without dropout unless --norm or --dropout say otherwise: the cell that
benchmarks/vs_pytorch.py compares with nn.LSTM. Timings are for reading, never
for pass/fail tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

import jax
import numpy as np
from machine import describe, provenance

from charlstm.config import ModelConfig, TrainConfig
from charlstm.core.model import count_params
from charlstm.core.sharding import batch_sharding
from charlstm.core.state import TrainState, init_state
from charlstm.runtime.gpu_determinism import deterministic_gpu_ops
from charlstm.runtime.hostmem import keep_host_memory
from charlstm.text.streams import Batch
from charlstm.training import distributed
from charlstm.training.step_setup import TrainStep

DEFAULT_SHAPES = ["256,2,64,64", "256,2,32,128", "256,2,64,128", "512,2,64,64"]


@dataclasses.dataclass
class CompiledStep:
    """charlstm's real training step, compiled for one shape, with its inputs."""

    model: ModelConfig
    train: TrainConfig
    step: TrainStep  # `step(state, batch) -> (state, metrics)`, as `charlstm train` runs it
    state: TrainState
    data: Batch
    compile_s: float
    planned: int | None  # bytes XLA plans for the step's buffers
    devices: int = 1  # the batch is split over this many


def compiled_step(
    hidden: int,
    layers: int,
    batch: int,
    seq_len: int,
    embed: int = 64,
    vocab: int = 81,
    norm: str = "none",
    dropout: float = 0.0,
    precision: str = "fp32",
    weight_decay: float | None = None,
) -> CompiledStep:
    """The jitted training step at one shape, compiled, on random tokens;
    AdamW's weight decay as `charlstm train`'s unless `weight_decay` says."""
    model_cfg = ModelConfig(vocab_size=vocab, embed_dim=embed, hidden_size=hidden, num_layers=layers, norm=norm)
    train_cfg = TrainConfig(batch_size=batch, seq_len=seq_len, dropout=dropout, precision=precision)
    if weight_decay is not None:
        train_cfg = dataclasses.replace(train_cfg, weight_decay=weight_decay)
    state = init_state(model_cfg, train_cfg)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab, size=(batch, seq_len + 1), dtype=np.int32)
    data = Batch(tokens[:, :-1], tokens[:, 1:], np.zeros(batch, bool))

    t0 = time.perf_counter()
    # Over the devices `charlstm train` would split this batch over (one,
    # unless the process split the CPU: runtime/cpu_devices.py), placed as
    # training places its state and batches.
    mesh = distributed.make_mesh(batch)
    if mesh.size > 1:
        state = distributed.place_state(state, mesh)
        data = jax.device_put(data, batch_sharding(mesh))
    else:
        # On the device already, as training's prefetched batches are: a GPU
        # step timed with a host-to-device copy in it would not be the step.
        data = jax.device_put(data)
    step = TrainStep(model_cfg, train_cfg, state, data, mesh)
    compile_s = time.perf_counter() - t0
    memory = step.compiled.memory_analysis()
    # What XLA plans for this step: inputs, outputs and scratch (no allocator overhead).
    planned = None if memory is None else memory.argument_size_in_bytes + memory.output_size_in_bytes
    planned = None if planned is None else planned + memory.temp_size_in_bytes
    return CompiledStep(model_cfg, train_cfg, step, state, data, compile_s, planned, mesh.size)


def measure(compiled: CompiledStep, steps: int) -> dict[str, float]:
    """Median chars/s of a compiled training step (`compiled_step`)."""
    step, state, data = compiled.step, compiled.state, compiled.data
    batch, seq_len = compiled.train.batch_size, compiled.train.seq_len
    for _ in range(3):  # warm-up
        state, metrics = step(state, data)
    jax.block_until_ready(state)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = step(state, data)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "hidden": compiled.model.hidden_size,
        "layers": compiled.model.num_layers,
        "batch": batch,
        "seq_len": seq_len,
        "params": count_params(state.params),
        "devices": compiled.devices,
        "compile_s": round(compiled.compile_s, 2),
        "planned_mb": None if compiled.planned is None else round(compiled.planned / 1e6, 1),
        "step_ms": round(median * 1000, 1),
        "chars_per_s": round(batch * seq_len / median),
    }


def shape_option(text: str) -> str:
    """argparse's type for --shape: HIDDEN,LAYERS,BATCH,SEQ_LEN, kept as given."""
    numbers = text.split(",")
    if len(numbers) != 4 or not all(n.strip().isdigit() and int(n) > 0 for n in numbers):
        raise argparse.ArgumentTypeError(f"HIDDEN,LAYERS,BATCH,SEQ_LEN, four whole numbers above 0, not {text!r}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", type=shape_option, help="HIDDEN,LAYERS,BATCH,SEQ_LEN (repeatable)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per shape [30]")
    parser.add_argument("--norm", choices=["none", "layer"], default="none", help="none or layer [none]")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout rate in the step [0]")
    parser.add_argument(
        "--precision", choices=["fp32", "bf16"], default="fp32", help="fp32 or bf16 (bf16 products, fp32 state) [fp32]"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    keep_host_memory()  # as the CLI does (see charlstm/hostmem.py)
    deterministic_gpu_ops()  # as every command asks, unless XLA_FLAGS says otherwise
    shapes = args.shape or DEFAULT_SHAPES
    rows = []
    for shape in shapes:
        compiled = compiled_step(
            *map(int, shape.split(",")), norm=args.norm, dropout=args.dropout, precision=args.precision
        )
        rows.append(measure(compiled, args.steps))
    device = jax.devices()[0].device_kind
    print(
        f"backend {jax.default_backend()} ({device}), {describe()}, jax {jax.__version__}, "
        f"{args.precision}, norm {args.norm}, dropout {args.dropout:g}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    header = ("hidden", "layers", "batch", "seq", "params", "compile s", "step ms", "chars/s")
    print("{:>6} {:>6} {:>5} {:>4} {:>9} {:>9} {:>8} {:>8}".format(*header))
    for r in rows:
        print(
            f"{r['hidden']:>6} {r['layers']:>6} {r['batch']:>5} {r['seq_len']:>4} {r['params']:>9,} "
            f"{r['compile_s']:>9} {r['step_ms']:>8} {r['chars_per_s']:>8,}"
        )
    if args.json:
        with open(args.json, "w") as f:
            meta = {**provenance(), "backend": jax.default_backend(), "device": device, "jax": jax.__version__}
            meta |= {"steps": args.steps, "shapes": args.shape or DEFAULT_SHAPES}
            meta |= {"precision": args.precision, "norm": args.norm, "dropout": args.dropout}
            meta |= {"xla_flags": os.environ.get("XLA_FLAGS", "")}
            json.dump({**meta, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
