"""Tables for `charlstm runs`, `info`, `eval` and `tune`: data in, rich
renderables out. Nothing here prints; the commands decide where tables go."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from charlstm.api.model import BOUNDARY
from charlstm.cli.fitting import SpareTable
from charlstm.cli.format import (
    duration,
    loss_text,
    param_count,
    setting,
    skipped_text,
    training_options,
    trial_seconds,
)
from charlstm.errors import as_text
from charlstm.flags import label, option
from charlstm.training.catalog import RunSummary
from charlstm.training.checkpoint import Meta
from charlstm.training.events import TrialResult
from charlstm.training.run import why_ended
from charlstm.units import fixed

if TYPE_CHECKING:
    from charlstm.api import Description
    from charlstm.core.scorer import Score
    from charlstm.text.vocab import Vocab


def _when(unix: float) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(unix))


def runs_table(runs: Sequence[RunSummary], folder: Path | None = None) -> Table:
    """One row a run, named by its path under `folder`, so that two searches' trial-01 differ."""
    # A narrow terminal keeps the name, the figures and the state: whether a
    # run is done, stopped early or can go on is what the table is for (at 60
    # columns it went, and a run to resume read as one stopped for good; a
    # walkthrough, 2026-12-06). A long name folds before it goes.
    spare = ("updated", "params", "corpus", "model", "time")
    table = SpareTable(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, spare=spare)
    table.add_column("run", overflow="fold", min_width=16)
    table.add_column("corpus", overflow="fold", min_width=10)
    table.add_column("model", overflow="fold", min_width=10)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("best val (bpc)", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("updated", no_wrap=True)
    for r in runs:
        if r.problem is not None and r.state != "training":
            continue  # listed apart: see the CLI
        # A new run training before its first save has no model or figures to show yet.
        table.add_row(
            _run_name(r.path, folder),
            _corpus_name(r),
            r.model if r.params else "-",
            param_count(r.params) if r.params else "-",
            f"{r.step if r.problem is None else '-'}/{r.total_steps or '-'}",  # before a save: its step unknown
            r.state,
            loss_text(r.best_val_loss, 4, unit=""),
            duration(r.train_seconds),
            _when(r.updated),
        )
    return table


def _run_name(path: Path, folder: Path | None) -> str:
    if folder is not None and path != folder and path.is_relative_to(folder):
        return as_text(str(path.relative_to(folder)))
    return as_text(path.name)


def _corpus_name(run: RunSummary) -> str:
    """A file's or folder's name, and how many more were given with it."""
    more = f" +{len(run.corpus_sources) - 1}" if len(run.corpus_sources) > 1 else ""
    return as_text(Path(run.corpus).name) + more


def _vocabulary(vocab: Vocab) -> str:
    """How many characters, and which: the document boundary, a symbol of
    the vocabulary but no character, counted apart."""
    chars = vocab.characters
    return f"{chars} character{'s' * (chars != 1)}: {_vocab_preview(vocab)}"


def _vocab_preview(vocab: Vocab, limit: int = 60) -> str:
    marked = vocab.boundary_id is not None
    chars = "".join(c for i, c in enumerate(vocab.chars) if i != vocab.boundary_id)
    shown = chars if len(chars) <= limit else chars[:limit]
    more = f" ... and {len(chars) - limit} more" if len(chars) > limit else ""
    return "'" + "".join(_vocab_char(c) for c in shown) + "'" + more + (", and the document boundary" if marked else "")


def _vocab_char(c: str) -> str:
    """One character of the vocabulary as the list shows it, quoted as
    Python quotes it; by its escape where it would merge with its
    neighbours on screen or not show at all: combining marks (a vowel sign
    sat on the space before it), joiners and other format characters,
    regional indicators (J and P beside each other drew the flag of
    Japan), and spaces other than ' ' (a walkthrough, 2026-12-06)."""
    category = unicodedata.category(c)
    merges = category[0] == "M" or category == "Cf" or (category == "Zs" and c != " ")
    if merges or "\U0001f1e6" <= c <= "\U0001f1ff":
        return c.encode("unicode_escape").decode("ascii")
    return "\\'" if c == "'" else repr(c)[1:-1]


def _wrapped(items: list[str], per_line: int) -> str:
    return "\n".join(", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line))


def _where_it_stands(description: Description) -> list[tuple[str, str]]:
    """The run's latest checkpoint where it is not the one described (the
    best), so that info and `runs` tell the same story: a run interrupted
    at 79 whose best is 60, or one whose best is newer than its latest."""
    latest, meta, newest = description.latest_step, description.meta, description.latest
    if latest is None or latest == meta.step:
        return [("latest checkpoint", "being trained now")] if description.training else []
    goes_on = "being trained now" if description.training else "resume goes on from there"
    if newest is None:  # unreadable: its step alone
        return [("latest checkpoint", f"step {latest}: {goes_on}")]
    ended = None if description.training else why_ended(newest.step, newest.train_config, newest.history)
    after = {"done": "the run is done", "patience": f"the run stopped early ({option('patience')})"}.get(
        ended or "", goes_on
    )
    return [("latest checkpoint", f"step {latest} of {newest.train_config.steps}: {after}")]


def info_table(description: Description) -> Table:
    table = Table(show_header=False, show_edge=False, box=None, padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    meta, params = description.meta, description.params
    model, train = meta.model_config, meta.train_config
    saved = f"{meta.raw.get('saved_at', '?')} by charlstm {meta.raw.get('charlstm_version', '?')}"
    rows = [
        ("checkpoint", str(meta.path)),
        ("saved", saved),
        ("step", f"{meta.step} of {train.steps}"),
        *_where_it_stands(description),
        ("model", f"{model.describe()}, embedding {model.embed_dim}"),
        ("parameters", f"{params:,}"),
        ("vocabulary", _vocabulary(meta.vocab)),
        ("corpus", _corpus_text(meta, description.gone)),
        *_corpus_since(description),
        ("validation text", description.validation),
        ("best validation loss", loss_text(meta.best_val_loss, 4)),
        ("training time", f"{duration(meta.train_seconds)} to this checkpoint"),
        ("training", _wrapped(training_options(train), 4)),
        *_resumed(description.sessions),
    ]
    tokens = meta.corpus.get("tokens")
    if isinstance(tokens, dict):
        rows.append(("token file", f"{tokens.get('path')} ({tokens.get('dtype')})"))
    if meta.init_from is not None:
        base = meta.init_from
        # Its vocabulary's characters, as the row above counts them: its boundary symbol, where it had one, apart.
        before, boundary = base.get("vocab_size"), model.boundary_id
        chars = before - (boundary is not None and boundary < before) if isinstance(before, int) else before
        rows.append(
            (
                "initialised from",
                f"{base.get('checkpoint')} (step {base.get('step')}, {chars} characters, "
                f"trained on {base.get('corpus')})",
            )
        )
    # The run's newest passes, which a best checkpoint older than its latest lacks.
    history = description.latest.history if description.latest is not None else meta.history
    if history:
        last = history[-5:]
        rows.append(
            (
                "validation",
                "; ".join(f"step {h['step']:g}: {fixed(h['val_loss'], 4)}" for h in last) + " (latest passes)",
            )
        )
    for name, value in rows:
        # Paths and dates come from the checkpoint's metadata, which a shared
        # run's author wrote: their escape sequences and bidi controls are shown, not obeyed.
        table.add_row(name, as_text(value, keep="\n"))
    return table


# The last resumes `info` lists; the rest are counted.
RESUMES_SHOWN = 5


def _resumed(sessions: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """Where the run was resumed and what each resume changed (the training
    row shows the options of the checkpoint described, not of every step)."""
    lines = []
    for session in sessions:
        step, changed = session.get("from_step"), session.get("changed")
        if not isinstance(step, int) or step <= 0 or not isinstance(changed, dict):
            continue  # a session that started the run
        said = [
            f"{setting(name, pair[1])} (was {setting(name, pair[0]).partition('=')[2]})"
            for name, pair in changed.items()
            if name != "text" and isinstance(pair, list) and len(pair) == 2
        ]
        if "text" in changed:
            said.append(f"other text ({option('force')})")
        lines.append(f"at step {step}: {', '.join(said) or 'as before'}")
    if not lines:
        return []
    earlier = len(lines) - RESUMES_SHOWN
    shown = lines[-RESUMES_SHOWN:] if earlier > 0 else lines
    return [("resumed", "\n".join(([f"{earlier} times before"] if earlier > 0 else []) + shown))]


def _corpus_since(description: Description) -> list[tuple[str, str]]:
    """The text the run trains on since this checkpoint, where a resume
    was forced past changes to it: the row above is this checkpoint's."""
    latest = description.latest
    if latest is None or latest.corpus_sha256 == description.meta.corpus_sha256:
        return []
    changed = f"{_corpus_text(latest, ())}, changed by a resume given {option('force')}"
    return [(f"corpus at step {latest.step}", changed)]


def _corpus_text(meta: Meta, gone_now: Sequence[str]) -> str:
    """The corpus in words: one file, or how many files from where, and its hash."""
    entry = meta.corpus
    files = entry.get("documents", 1)
    where = meta.corpus_path if files == 1 else f"{files} files from {', '.join(entry.get('sources', []))}"
    if entry.get("sources") and any(Path(p).is_dir() for p in entry["sources"]):
        where += f" ({entry.get('glob')})"
    skipped = f"; {entry['skipped']} left out (not text, or empty)" if entry.get("skipped") else ""
    gone_val = [p for p in gone_now if p in entry.get("val_files", [])]
    gone = [p for p in gone_now if p not in gone_val]
    if gone:
        skipped += (
            f"; not there now ({'moved or deleted?' if len(gone) == 1 else f'{len(gone)} of them'}): resume, eval "
            f"and inspect take {option('corpus')} NEW_PLACE"
        )
    elif gone_val:
        skipped += f"; {option('val_file')} {', '.join(gone_val)}: not there now (moved or deleted?)"
    return f"{where}{skipped} (sha256 {meta.corpus_sha256[:12]}...)"


# From this share of a text left out, eval says its loss is not a whole text's.
SKIPPED_SHARE_NOTED = 0.01


def score_table(text_path: str, where: Path, score: Score) -> Table:
    table = Table(show_header=False, show_edge=False, box=None, padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("text", as_text(text_path))  # paths a shared run's metadata can name: shown, not obeyed
    table.add_row("checkpoint", as_text(str(where)))
    table.add_row("characters scored", f"{score.chars:,}")
    if score.skipped:
        # U+FDD0 may be in the vocabulary, as the symbol that marks documents: in a text it is never scored.
        why = (
            "not in vocabulary, or U+FDD0, which marks documents" if BOUNDARY in score.skipped else "not in vocabulary"
        )
        table.add_row(f"skipped ({why})", f"{sum(score.skipped.values()):,}: {skipped_text(score.skipped)}")
        if score.skipped_share >= SKIPPED_SHARE_NOTED:
            table.add_row(
                "note",
                f"{score.skipped_share:.0%} of the text was left out: the loss is over the rest only, not comparable "
                "with a model that reads all of it",
            )
        if score.other_form is not None:
            table.add_row("note", score.other_form)
    table.add_row("loss", f"{fixed(score.loss, 4)} nats/char")
    table.add_row("bits per char", f"{fixed(score.bits_per_char, 4)}")
    table.add_row("perplexity", f"{fixed(score.perplexity, 3)}")
    return table


def trials_table(results: Sequence[TrialResult]) -> Table:
    """A search's trials, in the order given (best first, from tune.ranked)."""
    spare = ("ended", "params", "train time", "steps", "#")  # a narrow terminal keeps the trial, its point and its loss
    table = SpareTable(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, spare=spare)
    fields = list(results[0].point) if results else []
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("trial", no_wrap=True)
    for name in fields:
        table.add_column(label(name), justify="right", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    table.add_column("val (bpc)", justify="right", no_wrap=True)
    # What a budget counts: its training steps alone (`charlstm runs` counts validation and saves too).
    table.add_column("train time", justify="right", no_wrap=True)
    table.add_column("ended", no_wrap=True)
    for rank, r in enumerate(results, 1):
        table.add_row(
            str(rank),
            Path(r.run_dir).name,
            *(f"{r.point[name]:g}" for name in fields),
            param_count(r.params),
            f"{r.steps}/{r.planned_steps}",
            loss_text(r.val_loss, 4, unit=""),
            trial_seconds(r.train_seconds),
            r.reason,
        )
    return table
