"""Validation loss per minute of training: charlstm against PyTorch char-LSTMs.

    pip install -e ".[bench]"
    python benchmarks/time_to_quality.py                                  # shakespeare, 10 minutes, seed 0
    python benchmarks/time_to_quality.py --corpus tang-poems --seeds 0 1 --json ttq-tang.json
    python benchmarks/time_to_quality.py --runs charlstm torch-recipe --recipe-lrs 2e-3 5e-3 1e-2

Every run is a child process trained on the same corpus with its last 10%
held out, and scored on the whole held-out tail by the same layout
(`charlstm.core.scorer`: up to 64 streams of carried state, every character
once), so the losses are comparable. Every run's clock starts when its
process is launched: imports, compilation and evaluations count, the same
way on both sides. A validation loss is placed at the moment its evaluation
began (the model as it stood then); every run evaluates every 100 steps and
at the end of its budget.

The runs:

- `charlstm`: `charlstm train` with its defaults (the layer-normalised LSTM
  with dropout 0.2, AdamW with weight decay 0.1, 100 warm-up steps and a
  cosine schedule over 2,300 steps, 64 carried-state streams of 64
  characters). Other `charlstm-*` runs change one thing.
- `torch-recipe`: the same recipe in PyTorch: nn.Embedding + nn.LSTM with
  dropout 0.2 between layers and before the head, the forget-gate bias
  starting at 1, AdamW (b2 0.99) with weight decay 0.1 on the weight
  matrices, the same warm-up and cosine schedule (its step count fitted to
  the budget from a timing of its own step, as charlstm's 2,300 are on this
  CPU), clipping at 1.0, and charlstm's own stream layout (text/streams.py:
  contiguous streams, state carried, staggered resets every 1,024
  characters). Its peak learning rate is swept (`--recipe-lrs`, on the first
  seed); the best at the budget is run on the other seeds.
- `torch-2x256`, `torch-2x512`: the usual PyTorch recipe: random 64 x 128
  windows from a zero state, Adam at 2e-3, clipping at 1.0, no schedule, no
  dropout, no weight decay.

Both sides run under the same malloc settings (`charlstm.runtime.hostmem`;
`--system-malloc` for glibc's defaults). Reported: the best validation loss
reached by 1, 2, 5 and 10 minutes (or the --marks given); the last
evaluation, made for the budget, counts for a mark up to 3 s after it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import provenance

ROOT = Path(__file__).resolve().parent.parent
CORPORA = {
    "shakespeare": (ROOT / "corpora" / "shakespeare.txt", None),
    "tang-poems": (ROOT / "corpora" / "tang-poems.txt", ROOT / "corpora" / "build_tang_poems.py"),
    "python-stdlib": (ROOT / "corpora" / "python-stdlib.txt", ROOT / "corpora" / "build_python_stdlib.py"),
}
EVAL_EVERY = 100
BATCH, SEQ_LEN = 64, 64  # charlstm's defaults, and the recipe's
STEPS_FILL = 0.85  # of the budget the recipe's fitted schedule aims at: evaluations take the rest


def _spelled_out(norm: str, dropout: str, steps: int) -> list[str]:
    """`charlstm train` flags that fix what the defaults would otherwise choose."""
    return ["--norm", norm, "--dropout", dropout, "--steps", str(steps)]


# Every charlstm run but the first spells out its cell, dropout and steps, so
# that it measures the same thing whatever the defaults are. The defaults
# before 2026-11-25's evening: the plain LSTM, no dropout, 3,000 steps.
CHARLSTM_RUNS = {
    "charlstm": [],  # the defaults: layer-normalised LSTM, dropout 0.2, 2,300 steps
    "charlstm-plain": _spelled_out("none", "0", 3000),
    "charlstm-gru": [*_spelled_out("none", "0", 3000), "--cell", "gru"],
    "charlstm-layer-norm": _spelled_out("layer", "0", 3000),
    "charlstm-dropout-0.1": _spelled_out("none", "0.1", 3000),
    "charlstm-dropout-0.2": _spelled_out("none", "0.2", 3000),
    "charlstm-layer-norm-2300": _spelled_out("layer", "0", 2300),
    "charlstm-layer-norm-2300-dropout-0.2": _spelled_out("layer", "0.2", 2300),
    # The defaults given the budget as a user would (`--max-time`): what is
    # left of it when training is called, less SETUP_S for reading the corpus
    # and compiling, so the schedule is fitted to end with the budget.
    "charlstm-max-time": ["--max-time", "budget"],
    # The same, told to train for all of it (`--fill-time`): more steps than
    # the defaults' 2,300 where they fit, as on a GPU.
    "charlstm-fill": ["--max-time", "budget", "--fill-time"],
}
SETUP_S = 10.0  # reading the corpus and compiling the default model: 5-8 s here (2026-12-02)
TORCH_RUNS = {"torch-recipe": None, "torch-2x256": (64, 256, 2), "torch-2x512": (64, 512, 2)}
ALL_RUNS = [*CHARLSTM_RUNS, *TORCH_RUNS]


def corpus_path(name: str) -> Path:
    """A named benchmark corpus (built on first use, saying so) or a file;
    SystemExit with what to do where neither is there."""
    if name not in CORPORA:
        if not Path(name).is_file():
            raise SystemExit(f"time_to_quality: no file {name}, and not a corpus of {', '.join(CORPORA)}")
        return Path(name)
    path, builder = CORPORA[name]
    if not path.is_file() and builder is not None:
        print(f"building {path} first: python {builder.relative_to(ROOT)}", file=sys.stderr, flush=True)
        if subprocess.run([sys.executable, str(builder)]).returncode != 0:
            raise SystemExit(f"time_to_quality: building {path} failed (above); run python {builder} to retry")
    return path


# ---- charlstm: `charlstm.train` in a child (`--worker charlstm`), stopped at launch + budget


def _api_options(flags: list[str]) -> dict[str, object]:
    """`charlstm train` flags (`--norm none --steps 3000`) as charlstm.train's keyword arguments."""
    from charlstm.config import ModelConfig, TrainConfig
    from charlstm.flags import FLAGS

    by_flag = {flag: field for field, flag in FLAGS.items()}
    types = {f.name: f.type for cls in (ModelConfig, TrainConfig) for f in dataclasses.fields(cls)}
    options: dict[str, object] = {}
    flags = list(flags)
    while flags:
        field = by_flag[flags.pop(0)]
        if field == "fill_time":  # the one switch among them: no value follows
            options[field] = True
            continue
        value = flags.pop(0)
        kind = str(types.get(field, "str"))
        if field == "max_seconds":  # minutes on the command line; "budget": see CHARLSTM_RUNS
            options[field] = value if value == "budget" else 60 * float(value)
            continue
        options[field] = int(value) if kind == "int" else float(value) if kind.startswith("float") else value
    return options


def charlstm_worker(flags: list[str], corpus: Path, minutes: float, seed: int, launched: float) -> None:
    import charlstm
    from charlstm.training.runlog import read_metrics

    charlstm.deterministic_gpu_ops()  # as the commands run
    charlstm.split_the_cpu()  # the devices `charlstm train` trains on (two on a CPU of two cores or more)

    deadline = launched + minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        options = {"eval_every": EVAL_EVERY, "seed": seed, **_api_options(flags)}
        if options.get("max_seconds") == "budget":
            options["max_seconds"] = deadline - time.time() - SETUP_S
        charlstm.train(corpus, f"{tmp}/run", should_stop=lambda: time.time() >= deadline, **options)
        # Wall seconds since launch; a metrics line is written when its step
        # is reported, just before an evaluation of that step begins.
        records = [{**r, "elapsed": r["time"] - launched} for r in read_metrics(Path(tmp) / "run")]
        last = max((r for r in records if "val_loss" in r), key=lambda r: r["step"], default=None)
        final = charlstm.load(f"{tmp}/run", prefer="latest")
        if last is None or last["step"] != final.step:
            # Stopped by the clock between evaluations: score where it stopped.
            stopped = time.time() - launched
            score = final.evaluate(final.validation_text())
            records.append({"step": final.step, "elapsed": stopped, "val_loss": score.loss})
    import jax

    device = f"{jax.default_backend()}:{jax.devices()[0].device_kind}"
    print(json.dumps({"records": records, "steps": final.train_config.steps, "device": device}))


def run_charlstm(flags: list[str], minutes: float, corpus: Path, seed: int, system_malloc: bool) -> dict:
    return _child("charlstm", corpus, minutes, seed, 0.0, system_malloc, flags)


# ---- PyTorch: a child process per run (`--worker`), records on its stdout


def _torch_model(vocab: int, embed: int, hidden: int, layers: int, dropout: float):
    import torch

    class CharLSTM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, embed)
            self.lstm = torch.nn.LSTM(embed, hidden, layers, batch_first=True, dropout=dropout)
            self.drop = torch.nn.Dropout(dropout)
            self.head = torch.nn.Linear(hidden, vocab)

        def forward(self, x, state=None):
            y, state = self.lstm(self.embed(x), state)
            return self.head(self.drop(y)), state

    return CharLSTM()


def _torch_val_loss(model, val_ids, device, streams: int = 64) -> float:
    import numpy as np
    import torch

    from charlstm.core.scorer import stream_layout, windows

    model.eval()
    layout = stream_layout(len(val_ids) - 1, streams)
    state, total = None, torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for inputs, targets, mask in windows(val_ids, layout):
            logits, state = model(torch.from_numpy(inputs.astype(np.int64)).to(device), state)
            losses = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                torch.from_numpy(targets.astype(np.int64)).to(device).reshape(-1),
                reduction="none",
            )
            total += (losses * torch.from_numpy(mask).to(device).reshape(-1)).sum()
    model.train()
    return float(total) / int(layout.lengths.sum())


def _recipe_schedule(peak: float, steps: int):
    """charlstm's: linear warm-up over min(100, steps // 10), cosine decay to 5% at `steps`."""
    warmup = min(100, steps // 10)

    def lr(step: int) -> float:
        if step < warmup:
            return peak * step / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    return lr


def torch_worker(name: str, corpus: Path, minutes: float, seed: int, lr: float, launched: float) -> None:
    import numpy as np
    import torch

    from charlstm.runtime.cores import cores
    from charlstm.text.streams import Streams, split
    from charlstm.text.vocab import Vocab

    # The cores charlstm's side splits its CPU by: affinity and a container's quota.
    torch.set_num_threads(cores())
    torch.manual_seed(seed)
    # On the same accelerator charlstm gets: a GPU where there is one.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = corpus.read_text(encoding="utf-8")
    vocab = Vocab.from_text(text)
    train_ids, val_ids = split(vocab.encode(text), 0.1)
    recipe = name == "torch-recipe"
    embed, hidden, layers = (64, 256, 2) if recipe else TORCH_RUNS[name]  # type: ignore[misc]
    model = _torch_model(vocab.size, embed, hidden, layers, 0.2 if recipe else 0.0).to(device)
    budget = minutes * 60
    records: list[dict] = []

    if recipe:
        with torch.no_grad():  # biases start at zero but the forget gate's, at 1, as charlstm's do
            for name_, p in model.lstm.named_parameters():
                if name_.startswith("bias"):
                    p.zero_()
                if name_.startswith("bias_ih"):
                    p[hidden : 2 * hidden] = 1.0  # nn.LSTM's gate order is input, forget, cell, output
        decayed = [p for n, p in model.named_parameters() if p.ndim == 2 and not n.startswith("embed")]
        others = [p for n, p in model.named_parameters() if not (p.ndim == 2 and not n.startswith("embed"))]
        groups = [{"params": decayed, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), eps=1e-8)
        streams = Streams(train_ids, BATCH, SEQ_LEN, reset_windows=1024 // SEQ_LEN)

        def batch(step: int):
            window = streams.window(step)
            return (
                torch.from_numpy(window.inputs.astype(np.int64)).to(device),
                torch.from_numpy(window.targets.astype(np.int64)).to(device),
                torch.from_numpy(window.reset).to(device),
            )
    else:
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        rng = np.random.default_rng(seed)

        def batch(step: int):
            starts = rng.integers(0, len(train_ids) - 128 - 1, 64)
            window = torch.from_numpy(np.stack([train_ids[s : s + 129] for s in starts]).astype(np.int64))
            window = window.to(device)
            return window[:, :-1], window[:, 1:], None

    def train_step(step: int, state):
        inputs, targets, reset = batch(step)
        if state is not None and reset is not None:
            keep = (~reset).to(torch.float32)[None, :, None]  # (1, B, 1): streams that start afresh get zeros
            state = tuple(s * keep for s in state)
        logits, state = model(inputs, state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab.size), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        new_state = None if reset is None else tuple(s.detach() for s in state)
        return loss.item(), new_state

    steps, state = None, None
    if recipe:
        # Fit the schedule to the budget from a timing of this very step, then
        # put the model, the optimizer and the random state back as they were.
        saved = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
        for probe in range(2):  # the first steps pay one-off costs: not timed
            _, state = train_step(probe, state)
        t0 = time.perf_counter()
        for probe in range(2, 14):
            _, state = train_step(probe, state)
        seconds_per_step = (time.perf_counter() - t0) / 12
        model.load_state_dict(saved[0])
        opt.load_state_dict(saved[1])
        torch.manual_seed(seed)
        remaining = budget - (time.time() - launched)
        steps = max(10, int(STEPS_FILL * remaining / seconds_per_step))
        state = None
        schedule = _recipe_schedule(lr, steps)
    step = 0
    while True:
        elapsed = time.time() - launched
        over = elapsed >= budget or (steps is not None and step >= steps)
        if (step % EVAL_EVERY == 0 and step > 0) or over:
            records.append({"step": step, "elapsed": elapsed, "val_loss": _torch_val_loss(model, val_ids, device)})
        if over:
            break
        if recipe:
            for g in opt.param_groups:
                g["lr"] = schedule(step)
        loss, state = train_step(step, state)
        step += 1
        if step % 10 == 0:
            records.append({"step": step, "elapsed": time.time() - launched, "train_loss": loss})
    print(json.dumps({"records": records, "steps": steps, "lr": lr if recipe else 2e-3, "device": str(device)}))


def _child(
    worker: str, corpus: Path, minutes: float, seed: int, lr: float, system_malloc: bool, flags: list[str] | None = None
) -> dict:
    """One run in a child process of its own, its clock started at launch."""
    from charlstm.runtime.hostmem import ENV_OFF

    env = {**os.environ, ENV_OFF: "1" if system_malloc else "0"}
    launched = time.time()
    command = [sys.executable, __file__, "--worker", worker, "--corpus", str(corpus), "--minutes", str(minutes)]
    command += ["--seeds", str(seed), "--lr", str(lr), "--launched", repr(launched)]
    command += ["--charlstm-args", shlex.join(flags or [])]
    out = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.splitlines()[-1])


def run_torch(name: str, corpus: Path, minutes: float, seed: int, lr: float, system_malloc: bool) -> dict:
    return _child(name, corpus, minutes, seed, lr, system_malloc)


# ---- marks

SLACK_S = 3.0


def best_by(records: list[dict], seconds: float) -> float | None:
    """The best validation loss reached by `seconds` (the last evaluation, made
    for the budget, counts up to SLACK_S after the mark)."""
    evals = [r for r in records if r.get("val_loss") is not None]
    seen = [
        r["val_loss"]
        for i, r in enumerate(evals)
        if r["elapsed"] <= seconds + (SLACK_S if i == len(evals) - 1 else 0.0)
    ]
    return min(seen) if seen else None


def _median(values: list[float | None]) -> float | None:
    """The median over seeds; None if any seed had no evaluation by then."""
    return None if any(v is None for v in values) else statistics.median(values)  # type: ignore[type-var]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", choices=ALL_RUNS, default=["charlstm", "torch-recipe", "torch-2x256"])
    parser.add_argument("--corpus", default="shakespeare", help=f"{', '.join(CORPORA)}, or a text file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="a run of each side per seed [0]")
    parser.add_argument("--recipe-lrs", type=float, nargs="+", default=[3e-3, 1e-2], help="torch-recipe's sweep")
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="each run's wall time from its process's start [10]"
    )
    parser.add_argument("--marks", type=float, nargs="+", default=[1, 2, 5, 10], help="minutes to report")
    parser.add_argument("--json", type=Path, help="also write every run's records here (after each run)")
    parser.add_argument("--png", type=Path, help="the curves of the first seed (needs the plot extra)")
    parser.add_argument("--system-malloc", action="store_true", help="glibc's default malloc for every run")
    parser.add_argument("--charlstm-args", default="", help="more `charlstm train` options for the charlstm runs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--lr", type=float, default=2e-3, help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        from charlstm.runtime.hostmem import keep_host_memory

        keep_host_memory()  # does nothing when the parent set CHARLSTM_SYSTEM_MALLOC=1
        if args.worker == "charlstm":
            flags = shlex.split(args.charlstm_args)
            charlstm_worker(flags, Path(args.corpus), args.minutes, args.seeds[0], args.launched)
        else:
            torch_worker(args.worker, Path(args.corpus), args.minutes, args.seeds[0], args.lr, args.launched)
        return
    marks = [m for m in args.marks if m <= args.minutes]
    if not marks:
        parser.error(
            f"--minutes {args.minutes:g} ends before every mark (the first at {min(args.marks):g}): "
            "give --marks within it"
        )
    corpus = corpus_path(args.corpus)
    if not corpus.is_file():
        raise SystemExit(f"time_to_quality: no file {corpus}")
    corpus_sha = hashlib.sha256(corpus.read_bytes()).hexdigest()  # python-stdlib's text depends on the Python
    results: dict[str, dict] = {}  # label -> seed -> that run's figures and records
    chosen: dict[str, float] = {}  # the sweep's peak learning rate, where one ran

    def summary() -> dict[str, dict[str, float | None]]:
        return {
            label: {
                m: _median([s["best_val_loss_by_minute"][m] for s in seeds.values()])
                for m in seeds[next(iter(seeds))]["best_val_loss_by_minute"]
            }
            for label, seeds in results.items()
        }

    def record(label: str, seed: int, records: list[dict], **extra: object) -> None:
        cells = {f"{m:g}": best_by(records, m * 60) for m in marks}
        results.setdefault(label, {})[str(seed)] = {"best_val_loss_by_minute": cells, "records": records, **extra}
        shown = "".join(f"{'-' if c is None else f'{c:.3f}':>9}" for c in cells.values())
        print(f"{label:<28}{seed:>5}{shown}", flush=True)
        save()  # after every run: a run cut short by a time limit keeps the ones before it

    def save() -> None:
        if args.json:
            meta = {**provenance(), "corpus": str(corpus), "minutes": args.minutes, "seeds": args.seeds}
            meta["corpus_sha256"] = corpus_sha
            found = {**meta, "median_by_minute": summary(), "runs": results, "best_lr": chosen}
            args.json.write_text(json.dumps(found, indent=1))

    print(f"{corpus.name}, {args.minutes:g} minutes per run")
    print(f"{'run':<28}{'seed':>5}" + "".join(f"{f'{m:g} min':>9}" for m in marks), flush=True)
    for name in args.runs:
        if name in CHARLSTM_RUNS:
            for seed in args.seeds:
                flags = [*CHARLSTM_RUNS[name], *shlex.split(args.charlstm_args)]
                out = run_charlstm(flags, args.minutes, corpus, seed, args.system_malloc)
                record(name, seed, out["records"], device=out["device"])
        elif name == "torch-recipe":
            swept = {}
            for lr in args.recipe_lrs:
                out = run_torch(name, corpus, args.minutes, args.seeds[0], lr, args.system_malloc)
                kept = {"steps": out["steps"], "lr": lr, "device": out["device"]}
                record(f"torch-recipe lr {lr:g}", args.seeds[0], out["records"], **kept)
                swept[lr] = best_by(out["records"], args.minutes * 60) or math.inf
            best_lr = min(swept, key=swept.__getitem__)
            for seed in args.seeds[1:]:
                out = run_torch(name, corpus, args.minutes, seed, best_lr, args.system_malloc)
                kept = {"steps": out["steps"], "lr": best_lr, "device": out["device"]}
                record(f"torch-recipe lr {best_lr:g}", seed, out["records"], **kept)
            chosen["torch-recipe"] = best_lr
        else:
            for seed in args.seeds:
                out = run_torch(name, corpus, args.minutes, seed, 2e-3, args.system_malloc)
                record(name, seed, out["records"], device=out["device"])
    save()
    if args.png:
        from charlstm.plots.curves import plot_runs

        first = str(args.seeds[0])
        plot_runs([(label, seeds[first]["records"]) for label, seeds in results.items() if first in seeds], args.png)


if __name__ == "__main__":
    main()
