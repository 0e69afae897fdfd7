"""charlstm against a PyTorch char-LSTM of the same shapes, side by side in one run.

    pip install -e ".[bench]"                  # a CPU build of PyTorch
    python benchmarks/vs_pytorch.py            # small, large and sampling: 6.5 minutes on 2 CPU cores (2026-12-02)
    python benchmarks/vs_pytorch.py --quick    # small and sampling only
    python benchmarks/vs_pytorch.py --growth   # also hidden 128-1024 and seq 64-256 (one round each)
    python benchmarks/vs_pytorch.py --json results.json
    python benchmarks/vs_pytorch.py --precision bf16   # bf16 products on both sides (training rows only)
    python benchmarks/vs_pytorch.py --charlstm-python ENV/bin/python   # charlstm under another Python/JAX

Training: charlstm's real jitted step (embedding, stacked LSTM, dense head,
AdamW with its weight decay set to 0, as PyTorch's Adam has none (the same
update, though AdamW still computes its decay term, multiplied by 0), and
its warm-up and cosine schedule, a few scalar operations a step; global-norm
clipping at 1.0, fp32), over the devices
`charlstm train` splits the batch over (on a CPU of two cores or more, two:
charlstm/runtime/cpu_devices.py; `--charlstm-devices 1` times one), against PyTorch's
nn.Embedding + nn.LSTM (oneDNN on CPU, cuDNN on GPU) + nn.Linear with Adam and
the same clipping, same batch and sequence length, state carried between
steps in both. Each is timed per step with the device synchronised, after
warm-up; the median is reported. Sampling: 2,000 characters at batch 1 and
32, charlstm's one jitted scan against PyTorch's usual loop of one model call
per character with carried state; the median of three runs each.

This machine's neighbours make timings drift by up to a third within minutes,
so the small row and sampling are measured in `--rounds` rounds (default 5),
the large row in the first `--large-rounds` of them (default 3), each round
running charlstm and PyTorch once in turn (charlstm first in the first
round, then the first side alternating), and each side's median round is
reported, the matrix product's GFLOP/s too; every round is kept in the JSON. PyTorch under glibc's defaults
runs in the first round only. So that one run fits in 10 minutes on the
2-core CPU, the other rows (`--growth`) are opt-in and measured once. Each child also times one large
fp32 matrix product (2048 x 1024 x 1024) in its own framework: that is the
ceiling the training rows' GFLOP/s can be read against.

`--precision bf16` times the training rows with bfloat16 matrix products on
both sides: charlstm's `--precision bf16` step (bfloat16 products with
float32 results; parameters, optimizer, gates, cell state and loss in
float32), against PyTorch under `torch.autocast` to bfloat16 (oneDNN's
bfloat16 LSTM on a CPU, cuDNN's on a GPU; its gates, states and outputs
bfloat16, its loss and parameters float32; the carried state is handed to
the next step as float32, as charlstm carries it). Sampling stays float32
on both sides: the sampler has no bf16 mode. On a CPU without bfloat16
instructions both sides convert in software, and the figures say so.

Host memory matters on the CPU: under glibc's default malloc settings both
frameworks get fresh pages from the kernel for their large per-step buffers
at every step. charlstm's CLI changes those settings (`charlstm.runtime.hostmem`),
so the comparison that counts gives PyTorch the same ones; PyTorch as a
plain script runs it is shown beside it. Each side runs in a child process
of this one with its own settings (they are process-wide and cannot be
undone), one after the other. Ratios are charlstm / PyTorch: above 1 means
charlstm is faster. Timings never feed a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from machine import describe, provenance, versions
from step_speed import compiled_step, measure

from charlstm.config import ModelConfig
from charlstm.core.model import init_params
from charlstm.core.sampler import generate
from charlstm.runtime.cores import cores
from charlstm.runtime.cpu_devices import split_the_cpu
from charlstm.runtime.gpu_determinism import deterministic_gpu_ops
from charlstm.runtime.hostmem import ENV_OFF, keep_host_memory

if TYPE_CHECKING:
    import torch
# PyTorch is imported only where it runs (`_torch()`): in the charlstm
# worker it would load its own CUDA libraries (cuDNN among them) beside
# JAX's, whose versions JAX checks at start-up; and this parent process
# reads both sides' versions and devices from the workers, so that it
# holds no GPU memory while they run.

VOCAB = 65
SMALL = {"embed": 64, "hidden": 256, "layers": 2, "batch": 64, "seq_len": 128}
LARGE = {"embed": 128, "hidden": 512, "layers": 3, "batch": 128, "seq_len": 128}
SAMPLE_LENGTH = 2000
# --smoke: the same code at toy sizes, so that benchmarks/gpu_check.py --smoke
# can run every path in about a minute (the figures mean nothing; 1.1 minutes
# for vs_pytorch.py --smoke --rounds 3 on the 2-core CPU, 2026-12-06).
if os.environ.get("CHARLSTM_BENCH_SMOKE") == "1":
    SMALL = {"embed": 8, "hidden": 16, "layers": 1, "batch": 4, "seq_len": 8}
    LARGE = {"embed": 8, "hidden": 32, "layers": 2, "batch": 4, "seq_len": 8}
    SAMPLE_LENGTH = 20


def _growth() -> list[tuple[str, dict[str, int]]]:
    rows = [(f"hidden {h}", {**SMALL, "hidden": h}) for h in (128, 256, 512, 1024)]
    return rows + [(f"seq {t}", {**SMALL, "seq_len": t}) for t in (64, 128, 256)]


def train_flops_per_char(embed: int, hidden: int, layers: int) -> float:
    """Multiply-adds x 2 of the forward pass, x 3 for forward + backward."""
    lstm = sum(2 * (embed if i == 0 else hidden) * 4 * hidden + 2 * hidden * 4 * hidden for i in range(layers))
    return 3 * (lstm + 2 * hidden * VOCAB)


def _torch() -> Any:
    import torch

    return torch


def _torch_device() -> torch.device:
    torch = _torch()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_char_lstm(embed: int, hidden: int, layers: int) -> torch.nn.Module:
    """nn.Embedding + nn.LSTM + nn.Linear: `model(x, (h, c)) -> (logits, (h, c))`."""
    torch = _torch()

    class TorchCharLSTM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(VOCAB, embed)
            self.lstm = torch.nn.LSTM(embed, hidden, layers, batch_first=True)
            self.head = torch.nn.Linear(hidden, VOCAB)

        def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> Any:
            y, state = self.lstm(self.embed(x), state)
            return self.head(y), state

    return TorchCharLSTM()


def matmul_peak_gflops(framework: str) -> float:
    """Median GFLOP/s of one large fp32 matrix product, in this framework,
    at each framework's default precision (see `device_row`). On a CPU,
    2048 x 1024 by 1024 x 1024, each product timed alone; on a GPU, where
    that takes microseconds and a call's dispatch as long, 8192 cubed
    (over a TFLOP), 5 between two synchronisations."""
    on_cpu = (jax.default_backend() if framework == "charlstm" else _torch_device().type) == "cpu"
    m, k, n = (2048, 1024, 1024) if on_cpu else (8192, 8192, 8192)
    repeats = 1 if on_cpu else 5
    if framework == "charlstm":
        a, b = jnp.ones((m, k)), jnp.ones((k, n))
        product = jax.jit(jnp.matmul)

        def run() -> None:
            for _ in range(repeats - 1):
                product(a, b)
            product(a, b).block_until_ready()  # one stream: the last ends after the others
    else:
        torch, device = _torch(), _torch_device()
        ta, tb = torch.ones(m, k, device=device), torch.ones(k, n, device=device)

        def run() -> None:
            for _ in range(repeats):
                ta @ tb
            _sync(device)

    run()
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return round(2 * m * k * n * repeats / statistics.median(times) / 1e9, 1)


def device_row(framework: str) -> dict[str, Any]:
    """Where this worker ran, and the float32 product precision it ran at: on
    an NVIDIA GPU from Ampere on, JAX's default lets XLA use TF32 for
    float32 products, PyTorch's lets cuDNN (nn.LSTM) but not its other
    products (nn.Linear) use it."""
    if framework == "charlstm":
        device = jax.devices()[0]
        return {
            "config": "device",
            "version": jax.__version__,
            "python": platform.python_version(),
            # This side's own libraries: under --charlstm-python they are not the parent's (`provenance`).
            **versions(("flax", "optax")),
            "platform": device.platform,
            "device": device.device_kind,
            "matmul_precision": str(getattr(jax.config, "jax_default_matmul_precision", None) or "default"),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
        }
    torch, device = _torch(), _torch_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "config": "device",
        "version": torch.__version__,
        "python": platform.python_version(),
        "platform": device.type,
        "device": name,
        "tf32": {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        },
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        _torch().cuda.synchronize()


TorchState = tuple["torch.Tensor", "torch.Tensor"]  # the carried (h, c), (layers, batch, hidden) each


def torch_step(
    embed: int, hidden: int, layers: int, batch: int, seq_len: int, precision: str = "fp32"
) -> tuple[Callable[[TorchState], TorchState], TorchState]:
    """PyTorch's training step on one fixed batch, `step(state) -> state`,
    and its first carried state; bf16: the forward pass under autocast."""
    torch, device = _torch(), _torch_device()
    torch.manual_seed(0)
    model = torch_char_lstm(embed, hidden, layers).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.99))
    x = torch.randint(0, VOCAB, (batch, seq_len + 1), device=device)
    state = (torch.zeros(layers, batch, hidden, device=device), torch.zeros(layers, batch, hidden, device=device))

    def step(state: TorchState) -> TorchState:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits, state = model(x[:, :-1], state)
        # (B, T, V); float32 for the loss, as autocast would make it anyway
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, VOCAB), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return state[0].detach().float(), state[1].detach().float()

    return step, state


def torch_train(
    embed: int, hidden: int, layers: int, batch: int, seq_len: int, steps: int, precision: str = "fp32"
) -> float:
    device = _torch_device()
    step, state = torch_step(embed, hidden, layers, batch, seq_len, precision)
    for _ in range(3):
        state = step(state)
    _sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state = step(state)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return batch * seq_len / statistics.median(times)


def torch_sample(batch: int, length: int) -> float:
    torch, device = _torch(), _torch_device()
    model = torch_char_lstm(SMALL["embed"], SMALL["hidden"], SMALL["layers"]).to(device).eval()
    layers, hidden = SMALL["layers"], SMALL["hidden"]

    def run() -> None:
        x = torch.zeros(batch, 1, dtype=torch.long, device=device)
        state = (torch.zeros(layers, batch, hidden, device=device), torch.zeros(layers, batch, hidden, device=device))
        with torch.no_grad():
            for _ in range(length):
                logits, state = model(x, state)
                x = torch.multinomial(torch.softmax(logits[:, -1] / 0.8, dim=-1), 1)
        _sync(device)

    run()  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return batch * length / statistics.median(times)


def jax_sample(batch: int, length: int) -> tuple[float, float]:
    cfg = ModelConfig(VOCAB, SMALL["embed"], SMALL["hidden"], SMALL["layers"], norm="none")  # nn.LSTM's cell
    params = init_params(cfg, jax.random.PRNGKey(0))
    prime = jnp.zeros((batch, 1), jnp.int32)
    t0 = time.perf_counter()
    generate(cfg, params, prime, jax.random.PRNGKey(0), jnp.float32(0.8), length).block_until_ready()
    compile_s = time.perf_counter() - t0
    times = []
    for seed in range(3):
        t0 = time.perf_counter()
        generate(cfg, params, prime, jax.random.PRNGKey(seed + 1), jnp.float32(0.8), length).block_until_ready()
        times.append(time.perf_counter() - t0)
    return batch * length / statistics.median(times), compile_s


SAMPLE_BATCHES = (1, 32)
# Who runs in which child: (name, framework, host-memory settings).
SIDES = [("charlstm", "charlstm", "kept"), ("torch", "torch", "kept"), ("torch_system", "torch", "system")]
MAIN_ROWS = ("small", "large")  # the rows measured in rounds, and the only ones PyTorch* runs (time)


def worker(framework: str, names: list[str], steps: int, sample: bool, precision: str = "fp32") -> list[dict]:
    """One side's figures, in this (child) process: training rows, the matmul
    ceiling, then (with `sample`) sampling; first, where it ran."""
    if framework == "torch":
        _torch().set_num_threads(cores())
    configs = dict(all_configs())
    out = [device_row(framework)]
    for name in names:
        c = configs[name]
        if framework == "charlstm":
            # A weight decay of 0, as PyTorch's Adam has none: the same update.
            # (The rate is an argument of the compiled step, so AdamW still
            # multiplies it in: one elementwise term a step that Adam skips.)
            compiled = compiled_step(
                c["hidden"],
                c["layers"],
                c["batch"],
                c["seq_len"],
                embed=c["embed"],
                vocab=VOCAB,
                precision=precision,
                weight_decay=0.0,
            )
            r = measure(compiled, steps)
            out.append(
                {
                    "config": name,
                    "devices": r["devices"],
                    "chars_per_s": r["chars_per_s"],
                    "compile_s": r["compile_s"],
                    "xla_planned_mb": r["planned_mb"],
                }
            )
        else:
            chars = torch_train(c["embed"], c["hidden"], c["layers"], c["batch"], c["seq_len"], steps, precision)
            out.append({"config": name, "chars_per_s": round(chars)})
        print(f"  {framework}: {name} done", file=sys.stderr, flush=True)
    out.append({"config": "matmul peak", "gflops": matmul_peak_gflops(framework)})
    for batch in SAMPLE_BATCHES if sample else ():
        if framework == "charlstm":
            chars, compile_s = jax_sample(batch, SAMPLE_LENGTH)
            out.append({"config": f"sample b{batch}", "chars_per_s": round(chars), "compile_s": round(compile_s, 2)})
        else:
            out.append({"config": f"sample b{batch}", "chars_per_s": round(torch_sample(batch, SAMPLE_LENGTH))})
    return out


def all_configs() -> list[tuple[str, dict[str, int]]]:
    return [("small", SMALL), ("large", LARGE), *_growth()]


def run_side(
    framework: str,
    memory: str,
    names: list[str],
    steps: int,
    sample: bool = True,
    devices: int | None = None,
    precision: str = "fp32",
    python: str = sys.executable,
) -> dict[str, dict]:
    env = {**os.environ, ENV_OFF: "1" if memory == "system" else "0"}
    command = [python, __file__, "--worker", framework, "--steps", str(steps), "--configs", *names]
    command += ["--precision", precision]
    command += [] if sample else ["--no-sample"]
    command += [] if devices is None else ["--charlstm-devices", str(devices)]
    out = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return {row["config"]: row for row in json.loads(out.splitlines()[-1])}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small configuration and sampling only")
    parser.add_argument("--growth", action="store_true", help="also the hidden and seq rows (one round each)")
    parser.add_argument(
        "--rows", nargs="+", help="only these training rows (small, large, 'hidden 512', ...), whatever --quick says"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="toy sizes: check that every path runs (sets CHARLSTM_BENCH_SMOKE=1)"
    )
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per configuration")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating rounds of the small row and sampling (median)"
    )
    parser.add_argument(
        "--large-rounds", type=int, default=3, help="of those rounds, how many also run the large row (median)"
    )
    parser.add_argument(
        "--charlstm-devices",
        type=int,
        help="split charlstm's training batch over this many CPU devices [default: as `charlstm train` does]",
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="the training rows' matrix products on both sides (bf16: charlstm's --precision bf16, PyTorch's autocast)",
    )
    parser.add_argument(
        "--charlstm-python",
        default=sys.executable,
        metavar="PYTHON",
        help="run charlstm's side under this interpreter, e.g. a virtual environment with another JAX "
        "(it needs charlstm importable; PyTorch's side stays under this one)",
    )
    parser.add_argument("--json", help="also write the results here (and each side's as it ends, marked partial)")
    parser.add_argument(
        "--no-system-malloc",
        action="store_true",
        help="leave out PyTorch under glibc's default malloc (PyTorch*): a CPU's question, not a GPU's",
    )
    parser.add_argument("--no-sample", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["charlstm", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--configs", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke and os.environ.get("CHARLSTM_BENCH_SMOKE") != "1":
        os.environ["CHARLSTM_BENCH_SMOKE"] = "1"  # for the children; this process re-reads it below
        os.execv(sys.executable, [sys.executable, __file__, *sys.argv[1:]])
    if args.rounds < 1 or args.large_rounds < 1:
        parser.error("--rounds and --large-rounds must be at least 1")
    if args.worker:
        if args.worker == "charlstm":
            # Before anything touches JAX's devices, as the commands do.
            deterministic_gpu_ops()
            split_the_cpu(args.charlstm_devices)
        keep_host_memory()  # unless the parent set CHARLSTM_SYSTEM_MALLOC for this side
        print(json.dumps(worker(args.worker, args.configs or [], args.steps, not args.no_sample, args.precision)))
        return

    wanted = args.rows or (["small"] if args.quick else [*MAIN_ROWS, *(n for n, _ in _growth() if args.growth)])
    known = [n for n, _ in all_configs()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        parser.error(f"no training row {', '.join(map(repr, unknown))}: the rows are {', '.join(map(repr, known))}")
    names = [n for n in known if n in wanted]
    started = time.perf_counter()
    measured = [s for s in SIDES if not (args.no_system_malloc and s[0] == "torch_system")]
    sides: dict[str, dict[str, dict]] = {"torch_system": {}}

    def measure_side(framework: str, memory: str, rows: list[str]) -> dict[str, dict]:
        python = args.charlstm_python if framework == "charlstm" else sys.executable
        return run_side(
            framework, memory, rows, args.steps, devices=args.charlstm_devices, precision=args.precision, python=python
        )

    for side, framework, memory in measured:
        print(f"measuring {side} ...", file=sys.stderr, flush=True)
        rows = [n for n in names if side != "torch_system" or n in MAIN_ROWS]
        sides[side] = measure_side(framework, memory, rows)
        if args.json:  # a run stopped later (a GPU check's time limit) keeps the sides measured so far
            Path(args.json).write_text(json.dumps({"partial": True, "first_round": sides}, indent=1) + "\n")
    ran = {side: sides[side]["device"] for side in ("charlstm", "torch")}
    print(
        f"{time.strftime('%Y-%m-%d')}  {describe()}\n"
        f"jax {ran['charlstm']['version']} (Python {ran['charlstm']['python']}) on {ran['charlstm']['platform']} "
        f"({ran['charlstm']['device']}), torch {ran['torch']['version']} (Python {ran['torch']['python']}) "
        f"on {ran['torch']['platform']} ({ran['torch']['device']})",
        flush=True,
    )
    # More rounds of the main rows and sampling, charlstm and PyTorch in
    # turn; each side reports its median round.
    main_rows = [n for n in names if n in MAIN_ROWS]
    repeated = [*main_rows, *(f"sample b{b}" for b in SAMPLE_BATCHES)]
    rounds = {side: {n: [sides[side][n]["chars_per_s"]] for n in repeated} for side, _, _ in measured}
    peaks = {side: [sides[side]["matmul peak"]["gflops"]] for side in ("charlstm", "torch")}
    for r in range(1, args.rounds):
        this_round = [n for n in main_rows if n != "large" or r < args.large_rounds]
        # The first round runs charlstm first; later ones alternate which side
        # goes first, so that neither always meets the machine in one state.
        for side, framework, memory in SIDES[:2] if r % 2 == 0 else SIDES[1::-1]:
            print(f"round {r + 1}: measuring {side} ...", file=sys.stderr, flush=True)
            again = measure_side(framework, memory, this_round)
            for n in [*this_round, *(f"sample b{b}" for b in SAMPLE_BATCHES)]:
                rounds[side][n].append(again[n]["chars_per_s"])
            peaks[side].append(again["matmul peak"]["gflops"])
    for side in rounds:
        for n in repeated:
            sides[side][n]["chars_per_s"] = round(statistics.median(rounds[side][n]))
    for side, gflops in peaks.items():  # the median round, as for the rows
        sides[side]["matmul peak"] = {"config": "matmul peak", "gflops": round(statistics.median(gflops), 1)}
    minutes = (time.perf_counter() - started) / 60
    peak = {side: sides[side]["matmul peak"]["gflops"] for side in ("charlstm", "torch")}
    shape = "2048x1024x1024" if ran["charlstm"]["platform"] == "cpu" else "8192x8192x8192"
    print(f"fp32 matmul {shape} (median round): JAX {peak['charlstm']} GFLOP/s, PyTorch {peak['torch']} GFLOP/s")
    tf32 = ran["torch"]["tf32"]
    print(
        f"(float32 products at each side's default: JAX precision {ran['charlstm']['matmul_precision']}, "
        f"TF32 on an NVIDIA GPU from Ampere on; PyTorch TF32 in matmul {tf32['matmul']}, in cuDNN {tf32['cudnn']})"
    )

    head = (
        "config",
        "E",
        "H",
        "L",
        "B",
        "T",
        "charlstm c/s",
        "torch c/s",
        "ratio",
        "torch* c/s",
        "ratio*",
        "compile s",
        "XLA MB",
        "GFLOP/s",
        "torch GFLOP/s",
    )
    print(
        "{:<11} {:>4} {:>5} {:>2} {:>4} {:>4} {:>12} {:>10} {:>6} {:>10} {:>6} {:>9} {:>7} {:>8} {:>13}".format(*head)
    )
    rows = []
    configs = dict(all_configs())
    for name in names:
        c, ours = configs[name], sides["charlstm"][name]
        theirs, plain = sides["torch"][name]["chars_per_s"], sides["torch_system"].get(name, {}).get("chars_per_s")
        flops = train_flops_per_char(c["embed"], c["hidden"], c["layers"])
        row = {
            "config": name,
            **c,
            "charlstm_chars_per_s": ours["chars_per_s"],
            "charlstm_devices": ours["devices"],
            "torch_chars_per_s": theirs,
            "ratio": _ratio(ours["chars_per_s"], theirs),
            "torch_system_malloc_chars_per_s": plain,
            "ratio_vs_torch_system_malloc": _ratio(ours["chars_per_s"], plain),
            "compile_s": ours["compile_s"],
            "xla_planned_mb": ours["xla_planned_mb"],
            "charlstm_gflops": round(ours["chars_per_s"] * flops / 1e9, 1),
            "torch_gflops": round(theirs * flops / 1e9, 1),
        }
        if name in main_rows:
            row["rounds"] = {side: rounds[side][name] for side in rounds}  # chars/s of every round
        rows.append(row)
        print(
            f"{name:<11} {c['embed']:>4} {c['hidden']:>5} {c['layers']:>2} {c['batch']:>4} {c['seq_len']:>4} "
            f"{row['charlstm_chars_per_s']:>12,} {theirs:>10,} {row['ratio']!s:>6} "
            f"{f'{plain:,}' if plain else '-':>10} "
            f"{row['ratio_vs_torch_system_malloc'] or '-'!s:>6} "
            f"{row['compile_s']:>9} {row['xla_planned_mb']!s:>7} {row['charlstm_gflops']:>8} {row['torch_gflops']:>13}"
        )
    print("(* PyTorch under glibc's default malloc settings, as a plain script runs it; - where not measured)")
    split = " or ".join(map(str, sorted({sides["charlstm"][n]["devices"] for n in names})))
    asked = "as `charlstm train` splits it" if args.charlstm_devices is None else "--charlstm-devices"
    print(f"(charlstm's batch split over {split} device(s), {asked})")
    if args.precision == "bf16":
        print("(training rows: bfloat16 products on both sides, charlstm --precision bf16, PyTorch autocast)")
    how = (
        f"small and sampling: each side's median of {args.rounds} rounds, the first side alternating, large: of "
        f"the first {min(args.large_rounds, args.rounds)}; PyTorch*: the first round only"
    )
    print(f"({how}; {minutes:.1f} minutes)")
    if args.smoke:
        print("(--smoke: toy sizes, a check that every path runs; these figures are not a result)")

    print(
        f"\nsampling {SAMPLE_LENGTH:,} characters (small model, float32)\n"
        f"{'batch':>5} {'charlstm c/s':>12} {'torch c/s':>10} {'ratio':>6} {'torch* c/s':>10} {'ratio*':>6}"
    )
    for batch in SAMPLE_BATCHES:
        key = f"sample b{batch}"
        ours, theirs = (sides[s][key]["chars_per_s"] for s in ("charlstm", "torch"))
        plain = sides["torch_system"].get(key, {}).get("chars_per_s")
        row = {
            "config": key,
            "charlstm_chars_per_s": ours,
            "torch_chars_per_s": theirs,
            "ratio": _ratio(ours, theirs),
            "torch_system_malloc_chars_per_s": plain,
            "ratio_vs_torch_system_malloc": _ratio(ours, plain),
            "compile_s": sides["charlstm"][key]["compile_s"],
            "rounds": {side: rounds[side][key] for side in rounds},  # chars/s of every round
        }
        rows.append(row)
        print(
            f"{batch:>5} {ours:>12,} {theirs:>10,} {row['ratio']!s:>6} {f'{plain:,}' if plain else '-':>10} "
            f"{row['ratio_vs_torch_system_malloc'] or '-'!s:>6}"
        )

    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    **provenance(),
                    "date": time.strftime("%Y-%m-%d"),
                    "jax": ran["charlstm"]["version"],
                    "torch": ran["torch"]["version"],
                    "device": ran["charlstm"]["device"],
                    "ran_on": ran,
                    "cpus": os.cpu_count(),
                    "machine": describe(),
                    "torch_malloc": "the same settings as charlstm (runtime.hostmem); *_system_malloc: glibc defaults",
                    "rounds": how,
                    "precision": args.precision,  # of the training rows' products; sampling is float32
                    "smoke": args.smoke,  # toy sizes: a check that every path runs, not a result
                    "steps": args.steps,  # timed training steps per row and round
                    "sample_length": SAMPLE_LENGTH,
                    "argv": sys.argv[1:],
                    "minutes": round(minutes, 1),
                    "matmul_peak_gflops": {"jax": peak["charlstm"], "torch": peak["torch"]},
                    "rows": rows,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
