"""Validation loss per minute of training: charlstm against a plain PyTorch char-LSTM.

    pip install -e ".[bench]"
    python benchmarks/time_to_quality.py                              # 10 minutes each: charlstm, PyTorch 2x256, 2x512
    python benchmarks/time_to_quality.py --runs charlstm-gru torch-2x512 --minutes 5
    python benchmarks/time_to_quality.py --json ttq.json --png ttq.png

Every run trains on corpora/shakespeare.txt with its last 10% held out and
is scored on the whole held-out tail by the same layout (`charlstm.core.scorer`:
up to 64 streams of carried state, every character once), so the losses are
comparable. charlstm runs are `charlstm train` with its defaults (a child
process, read back from its metrics.jsonl), evaluated every 100 steps and
stopped at the time budget; their clock includes their own evaluations,
samples and checkpoints. The PyTorch runs are the usual recipe: nn.Embedding
+ nn.LSTM + nn.Linear, random 64 x 128 windows from a zero state, Adam at
2e-3, gradient-norm clipping at 1.0, evaluated at every whole minute with
the evaluation time left out of their clock, under the same malloc settings
the CLI uses (`charlstm.runtime.hostmem`; `--system-malloc` for glibc's defaults,
under which PyTorch trains about 40% slower on the 2-core CPU). Reported: the best validation
loss reached by 1, 2, 5 and 10 minutes (or the --marks given), counting an
evaluation made for a mark or for the budget within 3 s after it (at the end
of the step that crossed it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from charlstm.core.scorer import stream_layout, windows
from charlstm.runtime.hostmem import keep_host_memory
from charlstm.text.corpus import shipped_corpora
from charlstm.text.streams import split
from charlstm.text.vocab import Vocab
from charlstm.training.runlog import read_metrics


def _spelled_out(norm: str, dropout: str, steps: int) -> list[str]:
    """`charlstm train` flags that fix what the defaults would otherwise choose."""
    return ["--norm", norm, "--dropout", dropout, "--steps", str(steps)]


# Every charlstm run but the first spells out its cell, dropout and steps, so
# that it measures the same thing whatever the defaults are. The defaults
# before 2026-11-25's evening: the plain LSTM, no dropout, 3,000 steps.
RUNS = {
    "charlstm": [],  # the defaults: layer-normalised LSTM, dropout 0.2, 2,300 steps
    "charlstm-plain": _spelled_out("none", "0", 3000),
    "charlstm-gru": [*_spelled_out("none", "0", 3000), "--cell", "gru"],
    "charlstm-layer-norm": _spelled_out("layer", "0", 3000),
    "charlstm-dropout-0.1": _spelled_out("none", "0.1", 3000),
    "charlstm-dropout-0.2": _spelled_out("none", "0.2", 3000),
    # Layer norm's steps cost about 1.35x the plain LSTM's: a schedule that
    # ends inside 10 minutes instead of being cut off at step ~2400 of 3000.
    "charlstm-layer-norm-2300": _spelled_out("layer", "0", 2300),
    "charlstm-layer-norm-2300-dropout-0.2": _spelled_out("layer", "0.2", 2300),
    "torch-2x256": (64, 256, 2),
    "torch-2x512": (64, 512, 2),
}


class TorchCharLSTM(torch.nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, embed)
        self.lstm = torch.nn.LSTM(embed, hidden, layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        y, state = self.lstm(self.embed(x), state)
        return self.head(y), state


@torch.no_grad()
def torch_val_loss(model: TorchCharLSTM, val_ids: np.ndarray, streams: int = 64) -> float:
    layout = stream_layout(len(val_ids) - 1, streams)
    state = None
    total = 0.0
    for inputs, targets, mask in windows(val_ids, layout):
        logits, state = model(torch.from_numpy(inputs.astype(np.int64)), state)
        losses = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            torch.from_numpy(targets.astype(np.int64)).reshape(-1),
            reduction="none",
        )
        total += float((losses * torch.from_numpy(mask).reshape(-1)).sum())
    return total / int(layout.lengths.sum())


def run_torch(shape: tuple[int, int, int], ids: np.ndarray, val_ids: np.ndarray, vocab: int, minutes: float):
    embed, hidden, layers = shape
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = TorchCharLSTM(vocab, embed, hidden, layers)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    batch, seq_len = 64, 128
    records: list[dict] = []
    clock, step, next_eval = 0.0, 0, 60.0
    while clock < minutes * 60:
        t0 = time.perf_counter()
        starts = rng.integers(0, len(ids) - seq_len - 1, batch)
        window = torch.from_numpy(np.stack([ids[s : s + seq_len + 1] for s in starts]).astype(np.int64))
        logits, _ = model(window[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), window[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        clock += time.perf_counter() - t0
        step += 1
        record: dict = {"step": step, "elapsed": clock, "train_loss": loss.item()}
        if clock >= next_eval or clock >= minutes * 60:
            record["val_loss"] = torch_val_loss(model, val_ids)
            record["at_mark"] = True  # made for the mark this step crossed
            next_eval += 60.0
        if step % 10 == 0 or "val_loss" in record:
            records.append(record)
    return records


def run_charlstm(args: list[str], minutes: float, corpus: Path) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "charlstm", "--no-cache", "train", str(corpus), "--out", f"{tmp}/run"]
        command += ["--eval-every", "100", "--max-time", str(minutes), "-q", *args]
        subprocess.run(command, check=True)
        return read_metrics(Path(tmp) / "run")


# A run notices a mark or its budget at the end of the step that crosses it,
# and evaluates then: an evaluation made for a mark (PyTorch's, every whole
# minute) or for the budget (the last one) counts for the mark this close
# before it. charlstm's regular evaluations (every 100 steps) count only
# before the mark.
SLACK_S = 3.0


def best_by(records: list[dict], seconds: float) -> float | None:
    evals = [r for r in records if r.get("val_loss") is not None]
    seen = [
        r["val_loss"]
        for i, r in enumerate(evals)
        if r["elapsed"] <= seconds + (SLACK_S if r.get("at_mark") or i == len(evals) - 1 else 0.0)
    ]
    return min(seen) if seen else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=["charlstm", "torch-2x256", "torch-2x512"])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--marks", type=float, nargs="+", default=[1, 2, 5, 10], help="minutes to report")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--png", type=Path, help="the curves (needs the plot extra)")
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="run PyTorch with glibc's default malloc settings (default: the same settings charlstm's CLI uses)",
    )
    args = parser.parse_args()
    if not args.system_malloc:
        # The same host-memory settings for both sides: PyTorch's CPU LSTM
        # also pays for fresh pages at every step under glibc's defaults.
        keep_host_memory()
    corpus = shipped_corpora()["shakespeare.txt"]
    text = corpus.read_text(encoding="utf-8")
    vocab = Vocab.from_text(text)
    train_ids, val_ids = split(vocab.encode(text), 0.1)
    results = {}
    for name in args.runs:
        print(f"{name}: training for {args.minutes:g} minutes ...", file=sys.stderr, flush=True)
        spec = RUNS[name]
        if isinstance(spec, list):
            results[name] = run_charlstm(spec, args.minutes, corpus)
        else:
            results[name] = run_torch(spec, train_ids, val_ids, vocab.size, args.minutes)
    marks = [m for m in args.marks if m <= args.minutes]
    print(f"{'run':<22}" + "".join(f"{f'{m:g} min':>10}" for m in marks))
    for name, records in results.items():
        cells = [best_by(records, m * 60) for m in marks]
        print(f"{name:<22}" + "".join(f"{'-' if c is None else f'{c:.3f}':>10}" for c in cells))
    if args.json:
        table = {n: {f"{m:g}": best_by(r, m * 60) for m in marks} for n, r in results.items()}
        args.json.write_text(json.dumps({"best_val_loss_by_minute": table, "records": results}, indent=1))
    if args.png:
        from charlstm.plots.curves import plot_runs

        plot_runs(list(results.items()), args.png)


if __name__ == "__main__":
    main()
