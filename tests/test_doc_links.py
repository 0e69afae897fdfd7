"""Every relative link in the project's Markdown leads somewhere: the file
exists and, where the link names a heading (`file.md#heading`), a heading
of that file has that anchor as GitHub makes it. And every file of the
project that a document or the code names by its path exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted(
    p for pattern in ("*.md", "docs/*.md", "corpora/*.md", "benchmarks/*.md") for p in ROOT.glob(pattern)
)
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case,
    punctuation but hyphens dropped, spaces as hyphens, repeats numbered."""
    found: set[str] = set()
    for heading in re.findall(r"^#+ +(.+?) *$", FENCE.sub("", path.read_text(encoding="utf-8")), re.M):
        base = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchor, n = base, 0
        while anchor in found:
            n += 1
            anchor = f"{base}-{n}"
        found.add(anchor)
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document):
    assert DOCUMENTS, "no Markdown found"
    broken = []
    for target in LINK.findall(FENCE.sub("", document.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        path = (document.parent / file_part).resolve() if file_part else document
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, broken


# A path of the project's own as the documents and the code name it:
# `training/loop.py` (inside the package), `charlstm/cli/app.py`,
# `benchmarks/vs_pytorch.py`. Modules move; a reader sent to one that is
# gone has lost the thread.
PACKAGES = sorted(p.parent.name for p in (ROOT / "charlstm").glob("*/__init__.py"))  # cli, api, ... text
TOP_DIRS = ("benchmarks", "tests", "corpora", "examples")
NAMED_PATH = re.compile(
    rf"(?<![\w/.-])((?:charlstm/)?(?:{'|'.join(PACKAGES)})/\w+\.(?:py|js|css|html)"
    rf"|(?:{'|'.join(TOP_DIRS)})/[\w/.-]+\.(?:py|sh|txt|json|md))"
)
PLACEHOLDERS = ("DATE", "tests/x.py")  # a usage line's stand-ins (benchmarks/results/serve_load-cpu-DATE.json)
SOURCES = sorted(p for pattern in ("charlstm/**/*.py", "benchmarks/*.py", "tests/*.py") for p in ROOT.glob(pattern))


@pytest.mark.parametrize("where", ["documents", "code"])
def test_every_file_path_named_exists(where):
    files = DOCUMENTS if where == "documents" else SOURCES
    missing = set()
    for path in files:
        for found in NAMED_PATH.finditer(path.read_text(encoding="utf-8")):
            named = found[1].rstrip(".")
            inside_package = named.split("/")[0] in PACKAGES  # training/loop.py, not charlstm/training/loop.py
            target = ROOT / "charlstm" / named if inside_package else ROOT / named
            if not target.exists() and not any(p in named for p in PLACEHOLDERS):
                missing.add(f"{path.relative_to(ROOT)}: {named}")
    assert not missing, sorted(missing)
