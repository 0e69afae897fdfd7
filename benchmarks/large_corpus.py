"""Memory and start-up time of training on large corpora.

    python benchmarks/large_corpus.py                          # 200 MB and 2 GB, the dated table's settings
    python benchmarks/large_corpus.py --mb 50 --rounds 1       # a quick look
    python benchmarks/large_corpus.py --mb 200 --src /tmp/base # another checkout's charlstm (before a change)

For each size it writes a folder of generated text (the shipped Shakespeare
repeated, in files of --file-mb MB, so every run also reads a folder of
documents) and a separate 100 kB validation file (the end of Shakespeare's
last play; validating on a held-out share of gigabytes would dominate the
run), then measures, each in a child process:

  encode   reading the corpus the first time, without JAX: hashing, checking
           and encoding, the throughput of each and the child's peak memory;
  first    `charlstm train` with an empty corpus cache (it reads and encodes
           the corpus itself), --rounds times;
  second   `charlstm train` again on the same corpus, the token file now in the
           cache, --rounds times.

Each training run is the default model for --steps steps with a validation
pass and a checkpoint at the end. It reports the time from the command's
start to its first training step (the first progress line) and its peak
resident memory (ru_maxrss of that child: everything it touched, JAX,
libraries, heap and the mapped token file's pages, included), and the peak
already reached when the training step was compiled (VmHWM, read from /proc
as that line arrives). The corpus and its cache are deleted afterwards.
With --src the children run another checkout's charlstm (PYTHONPATH); one
without folders or a token cache reads a single file instead.
--system-malloc trains with glibc's own malloc settings instead of the
CLI's (runtime/hostmem.py), to tell the corpus's memory from the heap's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from machine import commit, describe, provenance

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = ROOT / "corpora" / "shakespeare.txt"
VAL_BYTES = 100_000


def write_corpus(folder: Path, total_mb: int, file_mb: int, single: bool) -> tuple[Path, Path, int]:
    """The corpus (a folder, or one file if `single`), the validation file, and the corpus's bytes."""
    text = SHAKESPEARE.read_bytes()
    body, val = text[:-VAL_BYTES], text[-VAL_BYTES:]
    folder.mkdir(parents=True)
    (folder.parent / "val.txt").write_bytes(val)
    total, index, written = total_mb * 1_000_000, 0, 0
    per_file = total if single else file_mb * 1_000_000
    while written < total:
        path = folder / f"part-{index:04d}.txt"
        with path.open("wb") as f:
            size = 0
            while size < min(per_file, total - written):
                f.write(body)
                size += len(body)
        written += size
        index += 1
    return (folder / "part-0000.txt" if single else folder), folder.parent / "val.txt", written


_ENCODE = textwrap.dedent(
    """
    import json, resource, sys, time
    from charlstm.text.corpus import Source
    from charlstm.text.tokens import prepare
    try:
        from charlstm.text.tokenfile import open_tokens
    except ImportError:  # a checkout before the token file had its module (--src)
        from charlstm.text.tokens import open_tokens
    from charlstm.text.vocab import BOUNDARY, Vocab

    marks = {}
    def progress(phase, done, total):
        marks.setdefault(phase, [time.perf_counter(), 0, total])[1:] = [time.perf_counter(), total]
    start = time.perf_counter()
    corpus = prepare(Source((sys.argv[1],), val_files=(sys.argv[2],)), progress)
    # The vocabulary a new run makes (training.run.corpus_vocab), without importing JAX.
    vocab = Vocab("".join(sorted(corpus.charset + (BOUNDARY if corpus.boundary else ""))))
    tokens = open_tokens(corpus, vocab, progress)
    phases = {p: {"seconds": t1 - t0, "bytes": n} for p, (t0, t1, n) in marks.items()}
    print(json.dumps({"seconds": time.perf_counter() - start, "phases": phases,
                      "dtype": tokens.ids.dtype.name, "tokens": int(tokens.ids.size),
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
    """
)


def measure_encoding(corpus: Path, val: Path, env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-c", _ENCODE, str(corpus), str(val)]
    # From another folder: `python -m` puts the working directory first on the path.
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=corpus.parent)
    if done.returncode != 0:
        sys.exit(done.stderr)
    result = json.loads(done.stdout)
    for phase in result["phases"].values():
        phase["mb_per_s"] = phase["bytes"] / 1e6 / max(phase["seconds"], 1e-9)
    return result


def _hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def train_once(corpus: Path, val: Path, run_dir: Path, steps: int, env: dict[str, str], old: bool) -> dict[str, Any]:
    """One `charlstm train`: seconds to its first step, its peak memory, and the peak at compile time."""
    command = [sys.executable, "-m", "charlstm", "train", str(corpus), "--out", str(run_dir), "--steps", str(steps)]
    command += ["--eval-every", str(steps), "--checkpoint-every", str(steps), "--log-every", "1"]
    command += ["--val-fraction", "0.0005"] if old else ["--val-file", str(val)]
    started = time.perf_counter()
    # From another folder: `python -m` puts the working directory first on the path, before --src.
    cwd = run_dir.parent
    child = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=cwd)
    marks: dict[str, Any] = {}
    lines: list[str] = []

    def watch() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            lines.append(line.rstrip())
            now = time.perf_counter() - started
            if line.startswith("compiled the training step"):
                marks["compiled_s"], marks["hwm_at_compile"] = now, _hwm(child.pid)
            elif line.startswith("step 1/") and "first_step_s" not in marks:
                marks["first_step_s"] = now
            elif line.startswith("encoded in "):
                marks["encoded"] = line

    reader = threading.Thread(target=watch)
    reader.start()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    if child.returncode != 0:
        sys.exit("\n".join(lines[-20:]))
    return {"seconds": time.perf_counter() - started, "peak_rss": usage.ru_maxrss * 1024, **marks}


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds}
    for key in ("peak_rss", "first_step_s", "hwm_at_compile"):
        values = [r[key] for r in rounds if r.get(key) is not None]
        if values:
            out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, nargs="+", default=[200, 2000], help="corpus sizes in MB")
    parser.add_argument("--file-mb", type=int, default=100, help="size of each file of the corpus folder")
    parser.add_argument("--rounds", type=int, default=3, help="training runs per size and case")
    parser.add_argument("--steps", type=int, default=3, help="training steps per run")
    parser.add_argument("--src", type=Path, help="run this checkout's charlstm instead (PYTHONPATH)")
    parser.add_argument(
        "--system-malloc", action="store_true", help="train with glibc's default malloc (CHARLSTM_SYSTEM_MALLOC=1)"
    )
    parser.add_argument("--no-first", action="store_true", help="skip the runs with an empty corpus cache")
    parser.add_argument("--work", type=Path, default=None, help="where to write the corpora (default: a temp dir)")
    parser.add_argument("--out", type=Path, help="write the results to this JSON file")
    args = parser.parse_args()
    old = args.src is not None and not (args.src / "charlstm" / "text" / "tokens.py").exists()
    results = []
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        base_env = {**os.environ, "PYTHONUNBUFFERED": "1", "CHARLSTM_CACHE_DIR": f"{tmp}/jax"}
        if args.system_malloc:
            base_env["CHARLSTM_SYSTEM_MALLOC"] = "1"
        if args.src is not None:
            base_env["PYTHONPATH"] = str(args.src.resolve())
        for mb in args.mb:
            corpus, val, size = write_corpus(Path(tmp) / f"corpus-{mb}", mb, args.file_mb, single=old)
            entry: dict[str, Any] = {"mb": mb, "bytes": size, "files": 1 if old else len(list(corpus.glob("*.txt")))}
            cache = Path(tmp) / f"cache-{mb}"
            env = {**base_env, "CHARLSTM_CORPUS_CACHE": str(cache)}
            if not old:
                entry["encode"] = measure_encoding(corpus, val, {**env, "CHARLSTM_CORPUS_CACHE": f"{cache}-enc"})
                if args.no_first:  # what the encoding wrote fills the cache that "second" means
                    Path(f"{cache}-enc").rename(cache)
                else:
                    subprocess.run(["rm", "-rf", f"{cache}-enc"], check=True)
            first = []
            for r in range(args.rounds if not (old or args.no_first) else 0):
                subprocess.run(["rm", "-rf", str(cache)], check=True)
                first.append(train_once(corpus, val, Path(tmp) / f"first-{mb}-{r}", args.steps, env, old))
            entry["first"] = summarize(first) if first else None
            second = [
                train_once(corpus, val, Path(tmp) / f"run-{mb}-{r}", args.steps, env, old) for r in range(args.rounds)
            ]
            entry["second" if not old else "runs"] = summarize(second)
            results.append(entry)
            print(json.dumps(entry, indent=1), flush=True)
            subprocess.run(["rm", "-rf", str(corpus), str(cache), str(val)], check=True)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": describe(),
        "settings": {
            "steps": args.steps,
            "file_mb": args.file_mb,
            "rounds": args.rounds,
            "mb": args.mb,
            "no_first": args.no_first,
            "src": str(args.src or ROOT),
            "src_commit": commit(args.src.resolve()) if args.src is not None else None,  # the code measured
            "system_malloc": args.system_malloc,
        },
        **provenance(),
        "results": results,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
