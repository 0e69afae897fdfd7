"""Build corpora/python-stdlib.txt: Python source, from the running interpreter's own standard library.

Every machine that runs charlstm has it (PSF licence). The script takes the
top-level modules of the standard library directory (`Lib/*.py`, not
packages, not tests), in sorted order, and concatenates them, each file
followed by a blank line, stopping after the file that takes the text past
--chars characters (1,200,000 by default: about the size of the shipped
Shakespeare). Files that are not UTF-8 are left out. The text depends on the
Python version, which is printed with the sha256 of what was written.

    python corpora/build_python_stdlib.py
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import sysconfig
from pathlib import Path

OUT = Path(__file__).resolve().parent / "python-stdlib.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=1_200_000, help="stop after the file that passes this many")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    pieces, total = [], 0
    for path in sorted(stdlib.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        pieces.append(text.rstrip("\n") + "\n\n")
        total += len(pieces[-1])
        if total >= args.chars:
            break
    corpus = "".join(pieces)
    args.out.write_text(corpus, encoding="utf-8")
    data = corpus.encode("utf-8")
    print(
        f"wrote {args.out}: {len(pieces)} files of Python {sys.version.split()[0]}'s standard library, "
        f"{len(corpus):,} characters ({len(set(corpus))} distinct), sha256 {hashlib.sha256(data).hexdigest()}"
    )


if __name__ == "__main__":
    main()
