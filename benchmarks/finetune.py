"""Fine-tuning against training from scratch, on the same short budget.

    python benchmarks/finetune.py --out benchmarks/results/finetune-cpu-DATE.json

A base model (the default shape) is trained on the shipped Shakespeare for
--base-steps steps. Then, on a new text with characters Shakespeare lacks
(Python's standard library source, corpora/build_python_stdlib.py: braces,
underscores, `=`, `#`, ...), the same shape is trained for --steps steps
twice over: from scratch at the default learning rate, and from the base
model (`--init-from`) at each of --lrs. Every run's validation loss on the
new text's held-out tenth is read from its best checkpoint (`charlstm eval`),
and the fine-tuned models are also scored on Shakespeare's held-out text, next
to the base model, to show what they kept. Every run is a real `charlstm
train` in a child process, with --seeds seeds each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import describe, provenance

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = ROOT / "corpora" / "shakespeare.txt"
STDLIB = ROOT / "corpora" / "python-stdlib.txt"


def charlstm(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "charlstm", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"charlstm {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def score(run: Path, text: Path | None = None) -> float:
    """The run's best checkpoint's loss on `text` (default: its own validation text), nats/char."""
    return float(json.loads(charlstm("eval", str(run), *([str(text)] if text else []), "--json"))["loss"])


def train(corpus: Path, out: Path, steps: int, seed: int, *extra: str) -> dict[str, Any]:
    started = time.perf_counter()
    charlstm("train", str(corpus), "--out", str(out), "--steps", str(steps), "--seed", str(seed), "-q", *extra)
    return {"run": out.name, "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-steps", type=int, default=1000, help="the base model's training steps [1000]")
    parser.add_argument("--steps", type=int, default=300, help="the budget of every run on the new text")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2], help="fine-tuning learning rates")
    parser.add_argument("--seeds", type=int, default=2, help="seeds of every run [2]")
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args()
    if not STDLIB.exists():
        subprocess.run([sys.executable, str(ROOT / "corpora" / "build_python_stdlib.py")], check=True)
    new_chars = sorted(set(STDLIB.read_text(encoding="utf-8")) - set(SHAKESPEARE.read_text(encoding="utf-8")))
    every = ["--eval-every", str(args.steps), "--checkpoint-every", str(args.steps)]
    results: dict[str, Any] = {"new_characters": "".join(new_chars), "base": [], "scratch": [], "tuned": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in range(args.seeds):
            base = work / f"base-{seed}"
            record = train(SHAKESPEARE, base, args.base_steps, seed)
            # The base run's held-out text (the last tenth), as a file, to score every model on.
            shakespeare_val = work / "shakespeare-val.txt"
            text = SHAKESPEARE.read_text(encoding="utf-8")
            shakespeare_val.write_text(text[len(text) - int(len(text) * 0.1) :], encoding="utf-8")
            results["base"].append(record | {"shakespeare_val": score(base, shakespeare_val)})
            scratch = train(STDLIB, work / f"scratch-{seed}", args.steps, seed, *every)
            results["scratch"].append(scratch | {"new_val": score(work / f"scratch-{seed}")})
            for lr in args.lrs:
                out = work / f"tuned-{lr:g}-{seed}"
                tuned = train(STDLIB, out, args.steps, seed, "--init-from", str(base), "--lr", f"{lr:g}", *every)
                tuned |= {"new_val": score(out), "shakespeare_val": score(out, shakespeare_val)}
                results["tuned"].setdefault(f"{lr:g}", []).append(tuned)
            print(json.dumps(results, indent=1), flush=True)
    scratch = statistics.mean(r["new_val"] for r in results["scratch"])
    base_val = statistics.mean(r["shakespeare_val"] for r in results["base"])
    summary: dict[str, Any] = {"scratch_new_val": scratch, "base_shakespeare_val": base_val}
    for lr, runs in results["tuned"].items():
        new_val = statistics.mean(r["new_val"] for r in runs)
        summary[f"tuned_{lr}"] = {
            "new_val": new_val,
            "below_scratch": scratch - new_val,
            "shakespeare_val": statistics.mean(r["shakespeare_val"] for r in runs),
        }
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": describe(),
        **provenance(),
        "settings": {"base_steps": args.base_steps, "steps": args.steps, "lrs": args.lrs, "seeds": args.seeds},
        "summary": summary,
        "results": results,
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
