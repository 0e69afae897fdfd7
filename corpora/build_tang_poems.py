"""Build corpora/tang-poems.txt: Tang poems in Chinese, from the npm package chinese-poetry 2.0.1.

The package (the chinese-poetry database, MIT licence for the compilation;
the poems themselves are over a thousand years old and in the public domain)
holds the Complete Tang Poems (全唐诗) as JSON files,
`dist/quantangshi/poet.tang.<first id>.json`, 1,000 poems each, in
traditional characters. This script takes the files in the order of their
first poem, writes each poem as its title, its author and its lines, one a
line, with a blank line between poems, and stops after the poem that takes
the text past --chars characters (1,000,000 by default: about the character
count of the shipped Shakespeare, in 3 MB of UTF-8).

    python corpora/build_tang_poems.py                     # download with npm (or from the registry) and build
    python corpora/build_tang_poems.py --tarball chinese-poetry-2.0.1.tgz

The archive is checked against the registry's published SHA-1 before use, so
the same archive always gives the same text; the sha256 of what was written
is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

PACKAGE, VERSION = "chinese-poetry", "2.0.1"
TARBALL_URL = f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
TARBALL_SHA1 = "b6e7e60d0accac7c723d066a5c360549aab8299d"  # the registry's dist.shasum
OUT = Path(__file__).resolve().parent / "tang-poems.txt"


def fetch(folder: Path) -> Path:
    """The package's archive: `npm pack` where npm is installed, else straight from the registry."""
    target = folder / f"{PACKAGE}-{VERSION}.tgz"
    if shutil.which("npm"):
        subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=folder, check=True)
    else:
        urllib.request.urlretrieve(TARBALL_URL, target)
    return target


def poems(archive: Path) -> list[dict]:
    sha1 = hashlib.sha1(archive.read_bytes()).hexdigest()
    if sha1 != TARBALL_SHA1:
        raise SystemExit(f"{archive} has SHA-1 {sha1}, not the registry's {TARBALL_SHA1}")
    found: list[tuple[int, list[dict]]] = []
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = re.fullmatch(r"package/dist/quantangshi/poet\.tang\.(\d+)\.json", member.name)
            if name:
                data = tar.extractfile(member)
                assert data is not None
                found.append((int(name.group(1)), json.load(data)))
    return [poem for _, batch in sorted(found, key=lambda f: f[0]) for poem in batch]


def render(poem: dict) -> str:
    lines = [poem.get("title", "").strip(), poem.get("author", "").strip()]
    lines += [line.strip() for line in poem.get("paragraphs", []) if line.strip()]
    return "\n".join(line for line in lines if line) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tarball", type=Path, help=f"{PACKAGE}-{VERSION}.tgz you already have")
    parser.add_argument("--chars", type=int, default=1_000_000, help="stop after the poem that passes this many")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = args.tarball or fetch(Path(tmp))
        pieces, total = [], 0
        for poem in poems(archive):
            text = render(poem)
            pieces.append(text)
            total += len(text) + 1
            if total >= args.chars:
                break
    corpus = "\n".join(pieces)
    args.out.write_text(corpus, encoding="utf-8")
    data = corpus.encode("utf-8")
    print(
        f"wrote {args.out}: {len(pieces):,} poems, {len(corpus):,} characters ({len(set(corpus)):,} distinct), "
        f"{len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}"
    )


if __name__ == "__main__":
    main()
