"""How long the user waits: `--help`, and `charlstm sample` cold and warm.

    python benchmarks/startup.py                      # trains a default-size model for 1 step first
    python benchmarks/startup.py --checkpoint runs/X  # or times sampling from an existing run
    python benchmarks/startup.py --json results.json

Every command runs as its own process, as a user runs it, and is timed from
start to exit. "first" samples with an empty compilation cache (as on the
first run after installing), "second" with the cache the first run filled;
both include starting Python and loading JAX and the checkpoint. Medians of
--repeats runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import provenance

ROOT = Path(__file__).resolve().parent.parent


def _charlstm() -> list[str]:
    """`python -m charlstm` of this checkout (`_env` puts it first on the
    path): an installed `charlstm` script would run whichever checkout was
    installed, so a worktree of an older revision would time today's code."""
    return [sys.executable, "-m", "charlstm"]


def _env(base: dict[str, str]) -> dict[str, str]:
    return {**base, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")]))}


def _time(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    # From this folder, not the caller's: `-m` puts the working directory
    # first on the path, ahead of PYTHONPATH, which may hold another checkout.
    done = subprocess.run([*_charlstm(), *args], capture_output=True, text=True, env=_env(env), cwd=ROOT / "benchmarks")
    if done.returncode != 0:
        raise SystemExit(f"startup: charlstm {' '.join(args)} failed ({done.returncode}):\n{done.stderr.strip()}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="run to sample from [default: train a default-size one]")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (their median is shown)")
    parser.add_argument("--length", type=int, default=1000, help="characters per sample")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHARLSTM_")}
        run = args.checkpoint
        if run is None:
            run = Path(tmp) / "run"
            print("training a default-size model for one step to sample from ...", file=sys.stderr)
            train = ["--no-cache", "train", "shakespeare.txt", "--steps", "1", "--out", str(run), "-q"]
            subprocess.run([*_charlstm(), *train], check=True, cwd=tmp, env=_env(dict(os.environ)))
        sample = ["sample", "-c", str(run), "-n", str(args.length), "-q"]
        rows: dict[str, list[float]] = {"charlstm --help": [], "charlstm sample --help": [], "first": [], "second": []}
        for i in range(args.repeats):
            rows["charlstm --help"].append(_time(["--help"], env))
            rows["charlstm sample --help"].append(_time(["sample", "--help"], env))
            cache = Path(tmp) / f"cache-{i}"
            cached_env = {**env, "CHARLSTM_CACHE_DIR": str(cache)}
            rows["first"].append(_time(sample, cached_env))
            rows["second"].append(_time(sample, cached_env))
            shutil.rmtree(cache, ignore_errors=True)
    medians = {name: statistics.median(times) for name, times in rows.items()}
    labels = {
        "first": f"charlstm sample -n {args.length}, empty compilation cache",
        "second": f"charlstm sample -n {args.length}, cache filled by the first",
    }
    print(f"{'command':<55} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, times in rows.items():
        print(f"{labels.get(name, name):<55} {medians[name]:>9.2f} {min(times):>7.2f} {max(times):>7.2f}")
    if args.json:
        found = {**provenance(), "length": args.length, "repeats": args.repeats, "seconds": rows, "median": medians}
        args.json.write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
