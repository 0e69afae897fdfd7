"""Everything a session with a GPU should measure, in one command and at most 8 minutes.

    PYTHONPATH=. python benchmarks/gpu_check.py OUT_DIR          # on the GPU machine (its image has jax[cuda], torch)
    python benchmarks/gpu_check.py OUT_DIR --smoke               # the same path at tiny sizes, on any CPU

It runs, each section as its own process with its own time limit, and
writes `OUT_DIR/gpu_check.json` (every figure, every section's status and
wall time) and `OUT_DIR/gpu_check.log` (everything the sections printed):

1. `environment`: JAX's backend and devices, PyTorch and CUDA, nvidia-smi.
2. `tests`: the suite's GPU-relevant tests (cells against their NumPy
   references and autodiff, the model, the sampler, training and exact
   resume, several devices), run on the GPU.
3. `speed`: `benchmarks/vs_pytorch.py` for the small and large rows, and
   sampling at batch 1 and 32, against PyTorch on the same GPU; then the
   same training rows with `--precision bf16` where it exists.
4. `quality`: a 3-minute time-to-quality on the shipped corpus:
   charlstm's defaults against the same recipe in PyTorch, 1.5 minutes each.
5. `portability`: a checkpoint written on the GPU, then loaded and sampled
   in a process that sees only the CPU.

`--smoke` runs every section at toy sizes in a minute or two on any CPU;
`.ci/run` runs it, so this script cannot rot before a GPU is there.
Sections that need PyTorch say so and are skipped where it is not installed.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
CORPUS = ROOT / "corpora" / "shakespeare.txt"
GPU_TESTS = [
    "tests/test_recurrence.py",
    "tests/test_model.py",
    "tests/test_sample.py",
    "tests/test_training.py",
    "tests/test_distributed.py",
]
# Seconds each section may take on the GPU machine, all its commands
# together; the whole check also stops at TOTAL_S (7.5 minutes).
LIMITS = {"environment": 30, "tests": 150, "speed": 120, "quality": 200, "portability": 50}
TOTAL_S = 450


class Check:
    def __init__(self, out: Path, smoke: bool):
        self.out, self.smoke = out, smoke
        self.started = time.perf_counter()
        self.section_started: dict[str, float] = {}
        self.log = (out / "gpu_check.log").open("w", encoding="utf-8")
        self.result: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "smoke": smoke,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "sections": {},
        }

    def run(self, section: str, command: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        """Run one command of a section under its time limit; its output goes to the log."""
        now = time.perf_counter()
        first = self.section_started.setdefault(section, now)
        budget = 120 if self.smoke else LIMITS[section]
        left = budget - (now - first)
        if not self.smoke:
            left = min(left, TOTAL_S - (now - self.started))
        limit = max(1, int(left))
        self.log.write(f"\n===== {section}: {shlex.join(command)}\n")
        self.log.flush()
        started = time.perf_counter()
        try:
            done = subprocess.run(
                command,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                capture_output=True,
                text=True,
                timeout=limit,
            )
            status, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as err:
            status = 124
            output = f"{_text(err.stdout)}{_text(err.stderr)}\n(stopped after {limit} s)"
        self.log.write(output)
        self.log.write(f"\n(exit {status} after {time.perf_counter() - started:.1f} s)\n")
        self.log.flush()
        return status, output

    def section(self, name: str, **figures: Any) -> None:
        self.result["sections"][name] = figures
        (self.out / "gpu_check.json").write_text(json.dumps(self.result, indent=1) + "\n", encoding="utf-8")


def environment(check: Check) -> None:
    started = time.perf_counter()
    code = (
        "import json, jax; d = jax.devices(); "
        "print(json.dumps({'jax': jax.__version__, 'backend': jax.default_backend(), "
        "'devices': [f'{x.platform}:{x.device_kind}' for x in d]}))"
    )
    status, output = check.run("environment", [sys.executable, "-c", code])
    figures: dict[str, Any] = {"status": status}
    if status == 0:
        figures |= json.loads(output.strip().splitlines()[-1])
    figures["torch"] = _torch_version()
    smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True) if _which("nvidia-smi") else None
    figures["nvidia_smi"] = smi.stdout.strip() if smi is not None else "not found"
    check.section("environment", **figures, seconds=round(time.perf_counter() - started, 1))


def tests(check: Check) -> None:
    started = time.perf_counter()
    selection = ["tests/test_model.py::test_shapes_and_parameter_count"] if check.smoke else GPU_TESTS
    status, output = check.run("tests", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection])
    summary = [line for line in output.splitlines() if " passed" in line or " failed" in line or " error" in line]
    check.section("tests", status=status, summary=summary[-1:] or ["no summary"], seconds=_since(started))


def speed(check: Check) -> None:
    started = time.perf_counter()
    figures: dict[str, Any] = {}
    if _torch_version() is None:
        figures["vs_pytorch"] = "skipped: PyTorch is not installed"
    else:
        target = check.out / "vs_pytorch.json"
        command = [sys.executable, str(BENCH / "vs_pytorch.py"), "--json", str(target), "--rounds", "1"]
        command += ["--smoke", "--rows", "small", "--steps", "2"] if check.smoke else ["--rows", "small", "large"]
        status, _ = check.run("speed", command)
        figures["vs_pytorch"] = (
            json.loads(target.read_text()) if status == 0 and target.exists() else {"status": status}
        )
    shape = (
        ["--shape", "16,1,4,8", "--steps", "2"]
        if check.smoke
        else ["--shape", "256,2,64,128", "--shape", "512,3,128,128"]
    )
    bf16 = "--precision" in (BENCH / "step_speed.py").read_text(encoding="utf-8")
    for precision in ("fp32", "bf16"):
        target = check.out / f"step_speed_{precision}.json"
        if precision == "bf16" and not bf16:
            figures["step_speed_bf16"] = "not available in this version"
            continue
        command = [sys.executable, str(BENCH / "step_speed.py"), *shape, "--json", str(target)]
        command += ["--precision", precision] if bf16 else []
        status, _ = check.run("speed", command)
        figures[f"step_speed_{precision}"] = (
            json.loads(target.read_text()) if status == 0 and target.exists() else {"status": status}
        )
    check.section("speed", **figures, seconds=_since(started))


def quality(check: Check) -> None:
    started = time.perf_counter()
    target = check.out / "time_to_quality.json"
    minutes = "0.5" if check.smoke else "1.5"
    command = [sys.executable, str(BENCH / "time_to_quality.py"), "--minutes", minutes, "--json", str(target)]
    command += ["--marks", "0.5"] if check.smoke else ["--marks", "0.5", "1", "1.5"]
    if check.smoke or _torch_version() is None:
        # Without PyTorch (or at smoke size) charlstm alone, on the tiny preset.
        command += ["--runs", "charlstm", "--charlstm-args", "--preset tiny --steps 30"]
    else:
        command += ["--runs", "charlstm", "torch-recipe", "--recipe-lrs", "1e-2"]
    status, _ = check.run("quality", command)
    table = json.loads(target.read_text())["median_by_minute"] if status == 0 and target.exists() else None
    check.section("quality", status=status, median_by_minute=table, seconds=_since(started))


def portability(check: Check) -> None:
    started = time.perf_counter()
    run = check.out / "gpu-run"
    shutil.rmtree(run, ignore_errors=True)  # this script's own scratch run, from an earlier check
    steps = "20" if check.smoke else "200"
    status, _ = check.run(
        "portability",
        [sys.executable, "-m", "charlstm", "--no-cache", "train", str(CORPUS), "--preset", "tiny", "--steps", steps,
         "--eval-every", steps, "--out", str(run), "-q"],
    )  # fmt: skip
    figures: dict[str, Any] = {"train_status": status}
    sample = [sys.executable, "-m", "charlstm", "--no-cache", "sample", "-c", str(run), "-n", "200", "--seed", "3"]
    if status == 0:
        here, here_text = check.run("portability", sample)
        cpu, cpu_text = check.run("portability", sample, env={"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""})
        figures |= {
            "sample_status": here,
            "cpu_only_sample_status": cpu,
            "cpu_only_process_loaded_and_sampled": cpu == 0 and len(cpu_text.strip()) > 0,
            "same_text_on_both": here == 0 and cpu == 0 and _sample_text(here_text) == _sample_text(cpu_text),
        }
    check.section("portability", **figures, seconds=_since(started))


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def _sample_text(output: str) -> str:
    return "\n".join(line for line in output.splitlines() if not line.startswith("sampling from"))


@functools.cache
def _torch_version() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return None
    done = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__, torch.cuda.is_available())"],
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout.strip() or None


def _which(name: str) -> bool:
    return any((Path(p) / name).exists() for p in os.environ.get("PATH", "").split(os.pathsep))


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for gpu_check.json, gpu_check.log and the sections' files")
    parser.add_argument("--smoke", action="store_true", help="every section at tiny sizes, on any machine")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(args.out, args.smoke)
    started = time.perf_counter()
    for step in (environment, tests, speed, quality, portability):
        print(f"gpu_check: {step.__name__} ...", file=sys.stderr, flush=True)
        step(check)
    check.result["seconds"] = _since(started)
    failed = sorted(name for name, figures in check.result["sections"].items() if _failed(figures))
    check.section("summary", failed=failed)
    print(f"gpu_check: done in {check.result['seconds']} s; {args.out / 'gpu_check.json'}", file=sys.stderr)
    if failed:
        print(f"gpu_check: failed: {', '.join(failed)} (see {args.out / 'gpu_check.log'})", file=sys.stderr)
    return 1 if failed else 0


def _failed(figures: Any) -> bool:
    """Whether a section, or any command in it, ended with a non-zero status."""
    if isinstance(figures, dict):
        statuses = [v for k, v in figures.items() if k == "status" or k.endswith("_status")]
        return any(s not in (0, None) for s in statuses) or any(_failed(v) for v in figures.values())
    return False


if __name__ == "__main__":
    sys.exit(main())
