"""What a run records about its corpus, and what changed since.

Every checkpoint's metadata has a summary under "corpus" (what was read,
from where, how it was split, and where its token file is); the run
directory's `corpus.json` lists every file with its size and sha256, so a
resumed run can say which files were added, removed or changed. Runs from
before folders recorded only a file's path and sha256; they read as a
corpus of that one file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from charlstm.errors import CorpusError, first_few, shown
from charlstm.flags import flag
from charlstm.text.corpus import Source, resolve_corpus_path
from charlstm.text.folder import DEFAULT_GLOB, RUN_RECORD
from charlstm.text.saving import save_whole
from charlstm.text.streams import Split
from charlstm.text.tokenfile import Tokens
from charlstm.text.tokens import Corpus

FILES = RUN_RECORD  # corpus.json


def summary(
    corpus: Corpus, tokens: Tokens, split: Split, val_fraction: float, copies_together: bool = True
) -> dict[str, Any]:
    """The checkpoint's "corpus" entry."""
    val_chars = sum(b - a for a, b in split.val)
    return {
        "path": corpus.path,
        "sha256": corpus.sha256,
        "sources": [str(p) for p in corpus.roots],
        "glob": corpus.source.glob,
        "val_files": [str(Path(p).resolve()) for p in corpus.source.val_files],
        "skip_bad_files": corpus.source.skip_bad_files,
        "documents": len(corpus.train),
        "chars": corpus.chars,
        "bytes": sum(d.size for d in corpus.documents),
        "skipped": len(corpus.skipped),
        "boundary": corpus.boundary,
        "validation": {
            "kind": split.kind,
            "fraction": val_fraction,
            "documents": len(split.held_out) if split.kind == "documents" else len(corpus.val),
            "chars": val_chars,
            # Copies of one text held out together (streams.split_documents);
            # absent from runs made before, split one copy at a time.
            **({"copies_together": True} if copies_together else {}),
            "sha256": validation_digest(tokens, split),
        },
        "tokens": {"path": str(tokens.path), "dtype": tokens.ids.dtype.name},
    }


# Read a slice at a time: a large corpus's validation text need not fit in memory at once.
_DIGEST_SLICE = 1 << 24


def validation_digest(tokens: Tokens, split: Split) -> str:
    """A sha256 of the validation text's ids: whether a resume given --force
    on a changed corpus validates on the text the run's best so far was
    measured on (absent from runs made before 2026-12-06). Ids, not files:
    a changed file's tail, which validates, can be unchanged."""
    digest = hashlib.sha256(tokens.ids.dtype.str.encode())
    for a, b in split.val:
        for start in range(a, b, _DIGEST_SLICE):
            digest.update(tokens.ids[start : min(b, start + _DIGEST_SLICE)].tobytes())
        digest.update(b"|")  # where one document's part ends
    return digest.hexdigest()


def validation_of(entry: Any) -> str | None:
    """A checkpoint's corpus entry's `validation_digest`, where it has one."""
    validation = entry.get("validation") if isinstance(entry, dict) else None
    digest = validation.get("sha256") if isinstance(validation, dict) else None
    return digest if isinstance(digest, str) else None


def files_record(corpus: Corpus, split: Split) -> dict[str, Any]:
    """corpus.json: every file read, with its size and sha256."""

    def listed(docs: tuple[Any, ...]) -> list[dict[str, Any]]:
        return [{"path": d.path, "size": d.size, "sha256": d.sha256} for d in docs]

    return {
        "train": listed(corpus.train),
        "val": listed(corpus.val),
        "held_out": [corpus.train[k].path for k in split.held_out],
        "skipped": [{"path": d.path, "problem": d.problem} for d in corpus.skipped],
        **({"not_files": [{"path": p, "problem": why} for p, why in corpus.not_files]} if corpus.not_files else {}),
        **({"other_case": list(corpus.other_case)} if corpus.other_case else {}),
    }


def write_files(run_dir: Path, record: dict[str, Any]) -> None:
    """Write corpus.json, unless it already says the same (a resumed run on unchanged text)."""
    if read_files(run_dir) == record:
        return
    text = json.dumps(record, indent=1, ensure_ascii=False) + "\n"
    save_whole(run_dir / FILES, text, intact="earlier checkpoints are intact", error=CorpusError)


def read_files(run_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((run_dir / FILES).read_text(encoding="utf-8"))
        return record if isinstance(record, dict) else None
    except (OSError, ValueError, RecursionError):  # RecursionError: nested past what json reads
        return None


# The types of what a checkpoint's corpus entry may hold, checked when it is
# read: runs from before folders have only "path" and "sha256".
_ENTRY_TYPES: dict[str, type | tuple[type, ...]] = {
    "path": str,
    "sha256": str,
    "sources": list,
    "glob": str,
    "val_files": list,
    "skip_bad_files": bool,
    "documents": int,
    "chars": int,
    "bytes": int,
    "skipped": int,
    "boundary": bool,
    "validation": dict,
    "tokens": dict,
}


def check_entry(entry: Any) -> None:
    """Refuse a corpus entry that later code could not use (ValueError)."""
    if not isinstance(entry, dict) or "path" not in entry or "sha256" not in entry:
        raise ValueError("its corpus entry lacks a path or a sha256")
    for key, kind in _ENTRY_TYPES.items():
        if key in entry and (not isinstance(entry[key], kind) or (kind is int and isinstance(entry[key], bool))):
            raise ValueError(f"its corpus entry's {key} is not a {getattr(kind, '__name__', kind)}")
    for key in ("sources", "val_files"):
        if not all(isinstance(p, str) for p in entry.get(key, [])):
            raise ValueError(f"its corpus entry's {key} are not paths")
    validation = entry.get("validation", {})
    if not all(isinstance(validation.get(k, 0), int) for k in ("documents", "chars")):
        raise ValueError("its corpus entry's validation is malformed")


def copies_together(entry: dict[str, Any]) -> bool:
    """How a run's corpus entry says its whole files were held out (`summary`)."""
    return entry.get("validation", {}).get("copies_together") is True


def source_of(entry: dict[str, Any]) -> Source:
    """The Source a checkpoint's corpus entry was read from."""
    paths = entry.get("sources") or [entry["path"]]
    return Source(
        tuple(str(p) for p in paths),
        str(entry.get("glob", DEFAULT_GLOB)),
        tuple(str(p) for p in entry.get("val_files", [])),
        bool(entry.get("skip_bad_files", False)),
    )


def missing(source: Source) -> list[str]:
    """The files and folders a run recorded that are no longer where it read
    them (a shipped corpus's name is always there)."""
    gone = []
    for path in (*source.paths, *source.val_files):
        try:
            resolve_corpus_path(path)
        except CorpusError:
            gone.append(path)
    return gone


def refuse_gone(source: Source, why: str) -> None:
    """Refuse a run whose recorded files moved or were deleted, saying `why`
    they are needed."""
    paths = missing(source)
    if not paths:
        return
    # --corpus moves the files and folders the run read, and the validation
    # files inside them (already moved with them here); one outside them has
    # to be put back.
    sources = [p for p in paths if p in source.paths]
    val_files = [p for p in paths if p not in source.paths and not any(_inside(p, s) for s in sources)]
    what = []
    if sources:
        them = "it" if len(sources) == 1 and len(paths) == 1 else "them"
        new = "its new place" if len(source.paths) == 1 else "the new places"
        what.append(f"put {them} back there or give {new} with {flag('corpus')}")
    if val_files:
        it = "it" if len(val_files) == 1 else "them"
        what.append(
            f"put the validation file{'s' if len(val_files) > 1 else ''} "
            f"{', '.join(map(shown, val_files)) + ' ' if sources else ''}back where {it} "
            f"{'was' if len(val_files) == 1 else 'were'}, or give {flag('corpus')} once for each file or folder "
            f"the run read ({len(source.paths)}) and then once for each validation file or folder "
            f"({len(source.val_files)}), in that order"
        )
    raise CorpusError(
        f"the run's corpus is not where the run read it: {', '.join(map(shown, paths))} "
        f"{'is' if len(paths) == 1 else 'are'} gone (moved or deleted?); {why}, {'; and '.join(what)} "
        "(the text is checked against the run's by its sha256)"
    )


def moved(
    entry: dict[str, Any], files: dict[str, Any] | None, places: Sequence[str | Path]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A run's corpus entry and corpus.json as if it had read its files and
    folders from `places`, one for each it read, in order, and then, where
    they moved apart from them, one for each of its `--val-file` files and
    folders: a corpus that was moved or renamed. Only the paths change;
    whether the text is the run's is still told by the sha256s, when it is
    read."""
    sources = [str(p) for p in entry.get("sources") or [entry["path"]]]
    vals = [str(p) for p in entry.get("val_files", [])]
    n, m = len(sources), len(vals)
    if len(places) not in (n, n + m):
        times = lambda k: {1: "once", 2: "twice"}.get(k, f"{k} times")  # noqa: E731
        things = lambda k: "one file or folder" if k == 1 else f"{k} files or folders"  # noqa: E731
        plural = "one" if m == 1 else "ones"
        held = f" and {m} validation {things(m).split(' ', 1)[1]} ({first_few([shown(p) for p in vals], 3)})"
        raise CorpusError(
            f"this run read {things(n)} ({first_few([shown(p) for p in sources], 5)}){held if m else ''}; give "
            f"{flag('corpus')} {times(n)}{', once for each, in that order' if n > 1 else ''}"
            f"{f', or {times(n + m)} with the validation {plural} last' if m else ''}, got {len(places)}"
        )
    before = (sources + vals)[: len(places)]
    # A validation file given a place of its own is not moved with a folder it was in: its pair comes first.
    pairs = [(old.rstrip(os.sep), str(new)) for old, new in zip(before, map(_new_place, places), strict=True)]
    pairs = pairs[len(sources) :] + pairs[: len(sources)]
    places = list(places[len(sources) :]) + list(places[: len(sources)])
    recorded = [
        x["path"] for k in ("train", "val", "skipped") for x in (files or {}).get(k) or [] if _has_path(x)
    ] + list(entry.get("val_files", []))
    for (old, new), given in zip(pairs, places, strict=True):
        # A folder's files are recorded under it; a file given is its own.
        # Runs made before folders read one file; without a corpus.json (a
        # checkpoint copied alone) a folder may show only by its --val-file.
        was_folder = any(_inside(p, old) for p in recorded)
        was_file = old in recorded or "sources" not in entry
        if Path(new).is_dir() != was_folder and was_file != was_folder:
            kinds = ("a folder", "a file") if was_folder else ("a file", "a folder")
            raise CorpusError(
                f"the run read {kinds[0]} ({shown(old)}), and {flag('corpus')} {given} is {kinds[1]}"
                + ("; give them in the order the run read them" if len(pairs) > 1 else "")
            )

    def rebased(path: str) -> str:
        for old, new in pairs:
            if path == old:
                return new
            if _inside(path, old):
                return new + path[len(old) :]
        return path

    def each(items: list[Any]) -> list[Any]:
        # Paths, or records that hold one under "path".
        return [
            rebased(x) if isinstance(x, str) else {**x, "path": rebased(x["path"])} if _has_path(x) else x
            for x in items
        ]

    paths = ("sources", "val_files")
    entry = {**entry, "path": rebased(entry["path"]), **{k: each(entry[k]) for k in paths if k in entry}}
    if files is not None:
        lists = ("train", "val", "held_out", "skipped", "not_files", "other_case")
        files = {**files, **{k: each(files[k]) for k in lists if isinstance(files.get(k), list)}}
    return entry, files


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def _has_path(record: Any) -> bool:
    return isinstance(record, dict) and isinstance(record.get("path"), str)


def _new_place(place: str | Path) -> str:
    found, _ = resolve_corpus_path(str(place), f"{flag('corpus')}")
    return str(found.resolve())


def changes(entry: dict[str, Any], files: dict[str, Any] | None, corpus: Corpus) -> list[str]:
    """How `corpus` differs from what a run recorded: one phrase per kind of
    change, naming the files; empty if nothing changed."""
    if files is None:
        return [] if corpus.matches(entry.get("sha256")) else [f"{shown(corpus.path)} differs (sha256)"]
    out = []
    for kind, now in (("", corpus.train), ("validation ", corpus.val)):
        before = {f["path"]: (f["size"], f["sha256"]) for f in files.get("train" if not kind else "val", [])}
        after = {d.path: (d.size, d.sha256) for d in now}
        added = [p for p in after if p not in before]
        removed = [p for p in before if p not in after]
        changed = [p for p in after if p in before and after[p] != before[p]]
        renamed = []  # (before, now): the same bytes under another name
        for path in list(added):
            was = next((q for q in removed if before[q] == after[path]), None)
            if was is not None:
                renamed.append(f"{shown(was)} -> {shown(path)}")
                added.remove(path)
                removed.remove(was)
        if renamed:
            out.append(f"{_count(renamed, kind)} renamed, the same text ({first_few(renamed, 5)})")
        if added:
            out.append(f"{_count(added, kind)} added ({_names(added)})")
        if removed:
            out.append(f"{_count(removed, kind)} removed ({_names(removed)})")
        if changed:
            sizes = [f"{shown(p)}: {before[p][0]:,} -> {after[p][0]:,} bytes" for p in changed]
            out.append(f"{_count(changed, kind)} changed ({first_few(sizes, 5, '; ')})")
    if not out and [d.path for d in corpus.train] != [f["path"] for f in files.get("train", [])]:
        out.append("the files are read in another order")
    return out


def _count(paths: list[str], kind: str) -> str:
    return f"{len(paths)} {kind}file{'s' if len(paths) != 1 else ''}"


def _names(paths: list[str]) -> str:
    return first_few([shown(p) for p in paths], 5)


def refuse_changed(entry: dict[str, Any], files: dict[str, Any] | None, corpus: Corpus, moved: bool = False) -> None:
    """Refuse a corpus other than the one the run trained on; `moved`: it
    was given a new place (`moved`), so it may be another text, not a changed one."""
    found = changes(entry, files, corpus)
    if found:
        what = (
            "the text there is not the corpus this run trained on"
            if moved
            else "the corpus changed since this run started"
        )
        raise CorpusError(
            f"{what}: {'; '.join(found)}; resuming would train on different text. Use {flag('force')} to resume anyway"
        )


def _percent(fraction: float) -> str:
    """10% for 0.1, 0.05% for 0.0005: never a share rounded to 0%."""
    return f"{fraction * 100:.3g}%"


def describe_validation(entry: dict[str, Any], val_fraction: float) -> str:
    """The validation text in words, as `charlstm info` and `eval` show it."""
    validation = entry.get("validation")
    if not isinstance(validation, dict):  # a run from before folders: one file's end
        return f"the last {_percent(val_fraction)} of the corpus"
    kind, n = validation.get("kind"), validation.get("documents", 0)
    if kind == "files":
        return f"{n} {'file' if n == 1 else 'files'} given with {flag('val_file')}, none of it trained on"
    if kind == "documents":
        share = validation.get("chars", 0) / max(1, entry.get("chars", 1))
        total = entry.get("documents", n)
        files = "1 whole file" if n == 1 else f"{n} whole files"
        return f"{files} of {total} ({share:.1%} of the text), chosen by their content's hash"
    if kind == "tails":
        return f"the last {_percent(val_fraction)} of each of its {entry.get('documents', 0)} files"
    return f"the last {_percent(val_fraction)} of the corpus"
