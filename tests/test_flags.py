"""flags.py is the one table from options to flags: no string in the package
writes one of its flags out, so that renaming a flag is a one-line change
there (two walkthroughs, 2026-12-06, found a dozen help texts and messages
that did, which a rename would have left behind)."""

import ast
import re
from pathlib import Path

from charlstm.flags import FLAGS

PACKAGE = Path(__file__).resolve().parent.parent / "charlstm"
# A flag written out on purpose: `sample`'s own --output, which also answers
# to --out (train's run directory in the table), is declared by its names.
ALLOWED = {("cli/sampling.py", "--out")}
# A whole flag: --temp, but not the --temperature it begins.
FLAG = re.compile(
    r"(?<![\w-])(?:" + "|".join(map(re.escape, sorted(set(FLAGS.values()), key=len, reverse=True))) + r")(?![\w-])"
)


def _docstrings(tree: ast.AST) -> set[int]:
    """The docstrings' nodes: prose for a reader of the code, not messages."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_no_string_in_the_package_writes_a_flag_of_the_table_out():
    written = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where == "flags.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                written += [
                    f"{where}:{node.lineno}: {flag}"
                    for flag in FLAG.findall(node.value)
                    if (where, flag) not in ALLOWED
                ]
    assert not written, "spell these through flags.option or flags.flag:\n" + "\n".join(written)


def test_the_check_finds_a_flag_written_out():
    """The test above would pass on a pattern that matches nothing."""
    assert FLAG.findall("give --lr 0.01, not --temperature or --lr-max") == ["--lr"]
