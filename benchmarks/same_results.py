"""Fixed-seed fingerprints: train, resume, sample and inspect, every number kept.

A refactoring that claims to change no behaviour must leave these numbers
identical, bit for bit. Run it before and after, then compare:

    python benchmarks/same_results.py --out before.json      # on the old commit
    python benchmarks/same_results.py --out after.json       # on the new one
    python benchmarks/same_results.py --compare before.json after.json

It uses only the public API and the command line (`charlstm.train`,
`charlstm.resume`, `charlstm.load`, `Model.sample`, `Model.inspect`,
`charlstm sample`), so the same script runs on both sides of a change that
moves modules around. Losses, gradient norms and validation losses are kept
as their exact float repr; the inspected arrays as a sha256 of their bytes
plus a few sums to say how far apart they are when they differ.

About 4.5 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from machine import provenance

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpora" / "shakespeare.txt"

# (name, model and training options): the default cell, the plain cell and the GRU.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("default", {"steps": 200}),
    ("plain", {"steps": 120, "norm": "none", "dropout": 0.0, "hidden_size": 128}),
    ("gru", {"steps": 120, "cell": "gru", "hidden_size": 128}),
]
COMMON = {"eval_every": 50, "checkpoint_every": 50, "log_every": 10, "seed": 0}
INSPECT_TEXT = "HAMLET.\nTo be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"


def _events(collected: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"progress": [], "val": []}
    for e in collected:
        kind = type(e).__name__
        if kind == "Progress":
            out["progress"].append([e.step, repr(e.loss), repr(e.grad_norm), repr(e.lr)])
        elif kind == "Evaluated":
            out["val"].append([e.step, repr(e.val_loss)])
        elif kind == "Sampled":
            out.setdefault("samples", []).append([e.step, e.text])
    return out


def _digest(array: Any) -> dict[str, str]:
    import numpy as np

    a = np.ascontiguousarray(np.asarray(array))
    return {"sha256": hashlib.sha256(a.tobytes()).hexdigest(), "sum": repr(float(a.astype(np.float64).sum()))}


def fingerprint(name: str, options: dict[str, Any], work: Path) -> dict[str, Any]:
    import charlstm

    straight: list[Any] = []
    model = charlstm.train(CORPUS, out=work / f"{name}-a", on_event=straight.append, **options, **COMMON)
    # The same run stopped half-way, then resumed.
    stop_at = options["steps"] // 2
    first: list[Any] = []
    state = {"step": 0}

    def note(event: Any) -> None:
        first.append(event)
        if type(event).__name__ == "Progress":
            state["step"] = event.step

    charlstm.train(
        CORPUS,
        out=work / f"{name}-b",
        on_event=note,
        should_stop=lambda: state["step"] >= stop_at,
        **options,
        **COMMON,
    )
    second: list[Any] = []
    resumed = charlstm.resume(work / f"{name}-b", on_event=second.append)

    samples = {
        "temp0.8": model.sample(300, temperature=0.8, seed=3),
        "greedy": model.sample(200, temperature=0.0, prime="ROMEO."),
        "top_p": model.sample(200, temperature=1.0, top_p=0.9, top_k=20, seed=5),
        "resumed": resumed.sample(300, temperature=0.8, seed=3),
    }
    cli = subprocess.run(
        [sys.executable, "-m", "charlstm", "sample", "-c", str(work / f"{name}-a"), "--temp", "0.8", "-n", "300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seen = model.inspect(INSPECT_TEXT)
    inspected = {"loss": repr(seen.loss), "h": _digest(seen.h), "c": _digest(seen.c), "probs": _digest(seen.probs)}
    inspected |= {f"gate_{g}": _digest(v) for g, v in seen.gates.items()}
    score = model.evaluate(CORPUS.read_text(encoding="utf-8")[-20000:])
    return {
        "straight": _events(straight),
        "first_session": _events(first),
        "resumed_session": _events(second),
        "best_val_loss": repr(model.best_val_loss),
        "samples": samples,
        "cli_sample": cli,
        "inspect": inspected,
        "eval_tail": repr(score.loss),
    }


def compare(a_path: Path, b_path: Path) -> int:
    a, b = (json.loads(p.read_text()) for p in (a_path, b_path))
    differences: list[str] = []

    def walk(x: Any, y: Any, where: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                walk(x.get(key), y.get(key), f"{where}.{key}")
        elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                walk(u, v, f"{where}[{i}]")
        elif x != y:
            differences.append(f"{where}: {str(x)[:80]!r} != {str(y)[:80]!r}")

    walk(a["cases"], b["cases"], "")
    for line in differences[:40]:
        print(line)
    print(f"{len(differences)} differences" if differences else "identical: every number and text is the same")
    return 1 if differences else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the fingerprints to this JSON file")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    missing = [str(p) for p in args.compare or [] if not p.is_file()]
    if missing:
        parser.error(f"no file {', '.join(missing)}: --compare reads two files this script wrote with --out")
    if args.compare:
        return compare(*args.compare)
    import jax

    with tempfile.TemporaryDirectory() as work:
        cases = {name: fingerprint(name, options, Path(work)) for name, options in CASES}
    result = {**provenance(), "jax": jax.__version__, "backend": jax.default_backend(), "cases": cases}
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
