"""Peak memory of training on a large corpus.

    python benchmarks/large_corpus.py              # 200 MB
    python benchmarks/large_corpus.py --mb 50

Writes a text of the given size (the shipped Shakespeare corpus repeated),
runs `charlstm train` on it for a few steps in a child process, and reports
the child's peak resident memory next to the size of the encoded corpus
(int32 ids, 4 bytes per character) and the model's parameters and Adam
state. The validation split is kept small (--val-fraction 0.001) because a
full pass over 10% of a 200 MB text is a long evaluation on a CPU.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charlstm.text.corpus import shipped_corpora


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200, help="corpus size in MB")
    args = parser.parse_args()
    base = shipped_corpora()["shakespeare.txt"].read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "big.txt"
        with corpus.open("wb") as f:
            written = 0
            while written < args.mb * 1_000_000:
                f.write(base)
                written += len(base)
        chars = written  # ASCII: one byte per character
        command = [sys.executable, "-m", "charlstm", "train", str(corpus), "--out", f"{tmp}/run"]
        command += ["--steps", "3", "--eval-every", "3", "--val-fraction", "0.001"]
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            sys.exit(done.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
    encoded = 4 * chars
    model = 3 * 4 * 880_017  # parameters + two Adam moments, float32, default 2x256 model
    print(f"corpus {chars / 1e6:.0f} MB ({chars:,} characters), 3 training steps in {seconds:.1f}s")
    print(f"encoded corpus (int32) {encoded / 1e6:.0f} MB, model + optimizer {model / 1e6:.1f} MB")
    print(f"peak resident memory {peak / 1e6:.0f} MB = {peak / (encoded + model):.2f}x (encoded corpus + model)")


if __name__ == "__main__":
    main()
