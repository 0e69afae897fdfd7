"""What is on disk: the runs (`list_runs`), one checkpoint described from its
metadata (`describe`), texts read (`read_text`, `read_texts`) or found to be
scored in place (`find_texts`), runs plotted (`plot_runs`, `plot_gradients`)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from charlstm.arguments import path_like, paths_given
from charlstm.core.model import count_params_of_shape
from charlstm.errors import CharlstmError, shown
from charlstm.flags import flag
from charlstm.plots import curves, gradients
from charlstm.runtime.jax_settings import holding
from charlstm.text import manifest
from charlstm.text.corpus import Source, resolve_corpus_path
from charlstm.text.corpus import read_texts as read_documents
from charlstm.text.folder import DEFAULT_GLOB
from charlstm.text.saving import save_whole
from charlstm.text.textfile import read_corpus
from charlstm.text.tokens import Corpus, prepare_texts
from charlstm.training import catalog, checkpoint, checkpoint_meta, checkpoint_paths, run_lock, runlog
from charlstm.training.run import RUNS_DIR
from charlstm.training.runlog import METRICS_FILE, read_metrics


@holding
def list_runs(runs_dir: str | Path = RUNS_DIR) -> list[catalog.RunSummary]:
    """Every run under `runs_dir` with a checkpoint, most recently updated
    last; runs that cannot be read say why in `RunSummary.problem`."""
    path_like(runs_dir, "runs_dir")
    return catalog.list_runs(Path(runs_dir))


@dataclasses.dataclass(frozen=True)
class Description:
    """A checkpoint as `charlstm info` shows it (`describe`)."""

    meta: checkpoint_meta.Meta  # configs, vocabulary, corpus, metrics, the stored JSON
    params: int  # parameters of the model it describes
    validation: str  # what its validation text is, in words
    warmup_steps: int  # the warmup its schedule uses: --warmup, at most a tenth of its steps
    # The run's newest latest checkpoint, where resume goes on (None: not a run's checkpoint, or none).
    latest_step: int | None = None
    # That checkpoint's metadata where it is another than `meta` and readable:
    # its step total and validation history are the run's newest.
    latest: checkpoint_meta.Meta | None = None
    training: bool = False  # a process trains the run now (its checkpoints are the newest so far)
    # The files and folders it read (--val-file ones too) that are not where it read them now.
    gone: tuple[str, ...] = ()
    # What each session of its run trained with, oldest first (`runlog.sessions`; none before 2026-12-06).
    sessions: tuple[dict[str, Any], ...] = ()

    def __repr__(self) -> str:
        # The dataclass's own was one line of kilobytes: every array's checksum among the metadata.
        m = self.meta
        loss = "" if m.best_val_loss is None else f", best validation loss {m.best_val_loss:.4f}"
        return (
            f"<charlstm.Description {m.model_config.describe()}, {self.params:,} parameters, "
            f"step {m.step} of {m.train_config.steps}{loss}, from {m.path}>"
        )


@holding
def describe(path: str | Path | None = None) -> Description:
    """A checkpoint's configuration, vocabulary, corpus and metrics, from its
    metadata alone (no arrays are read): a run directory's best checkpoint,
    or one step directory; by default the most recently updated run under ./runs."""
    if path is not None:
        path_like(path, "path")
    meta = checkpoint.describe(Path(path) if path is not None else catalog.most_recent_run(RUNS_DIR), advice=True)
    meta = checkpoint.with_corpus_now(meta)  # a best checkpoint saved before a resume with --corpus
    validation = manifest.describe_validation(meta.corpus, meta.train_config.val_fraction)
    run = checkpoint_paths.run_of(meta.path)
    latest = checkpoint.latest_step(run / "checkpoints" / checkpoint.LATEST) if run is not None else None
    newest = None  # damaged or absent: the step alone, as `runs` shows it
    if run is not None and latest is not None and latest != meta.step:
        with contextlib.suppress(CharlstmError):
            newest = checkpoint.describe(run / "checkpoints" / checkpoint.LATEST / str(latest))
    training = run is not None and run_lock.in_use(run)
    gone = manifest.missing(manifest.source_of(meta.corpus or {"path": meta.corpus_path}))
    sessions = tuple(runlog.read_sessions(run)) if run is not None else ()
    return Description(
        meta,
        count_params_of_shape(meta.model_config),
        validation,
        meta.train_config.warmup_used,
        latest,
        newest,
        training,
        tuple(gone),
        sessions,
    )


def read_text(path: str | Path) -> tuple[Path, str]:
    """A UTF-8 text file (or a shipped corpus by its name) and its text."""
    found, _ = resolve_corpus_path(str(path), "text file")
    return found, read_corpus(found, "the text").text


def write_text(path: str | Path, text: str, name: str | None = None) -> None:
    """`text` into the file `path` (its folders made), whole or not at all:
    a failure (a full disk) leaves an earlier file there as it was. A device
    or a pipe (/dev/stdout) is written through, as it is (`save_whole`).
    CharlstmError names `path` as `name`, where given (how the user gave it:
    "--output PATH")."""
    save_whole(Path(path), text, name=name)


@dataclasses.dataclass(frozen=True)
class Texts:
    """Files and folders read whole (`read_texts`)."""

    sources: tuple[str, ...]  # the files and folders given, as found (a shipped corpus's own path)
    paths: tuple[Path, ...]  # the files read, in order (absolute)
    documents: tuple[str, ...]  # their texts
    left_out: tuple[str, ...]  # "PATH: problem", a file each


def read_texts(
    paths: str | Path | Sequence[str | Path], glob: str | None = None, *, skip_bad_files: bool = False
) -> Texts:
    """UTF-8 text files and folders (the files of a folder that match `glob`,
    default **/*.txt, as `train` picks them), each file a document, for
    `Model.evaluate`. Of several files, empty ones are left out, and with
    `skip_bad_files` those that are not UTF-8 text (named in `left_out`)."""
    sources, source = _source(paths, glob, skip_bad_files)
    files, left_out = read_documents(source)
    return Texts(sources, tuple(Path(f.path) for f in files), tuple(f.text for f in files), left_out)


@dataclasses.dataclass(frozen=True)
class TextFiles:
    """Files and folders found and checked, not held in memory (`find_texts`):
    `Model.evaluate` reads them in place from the corpus cache."""

    sources: tuple[str, ...]  # the files and folders given, as found (a shipped corpus's own path)
    paths: tuple[Path, ...]  # the files to read, in order (absolute)
    left_out: tuple[str, ...]  # "PATH: problem", a file each
    corpus: Corpus  # where they are in the cache: every file a validation document


def find_texts(
    paths: str | Path | Sequence[str | Path],
    glob: str | None = None,
    *,
    skip_bad_files: bool = False,
    progress: Callable[[float], None] | None = None,
) -> TextFiles:
    """What `read_texts` reads, without holding it in memory: each file is
    hashed and, the first time, checked, both in a stream (a later call
    finds the check's results in the corpus cache), and `Model.evaluate`
    then encodes it into the cache under the model's vocabulary and scores
    it in place, so a text of any size can be scored. The same files are
    left out as by `read_texts`, and a file holding U+FDD0 (which charlstm
    reserves to mark documents) is refused as training refuses one.
    `progress(share)` as the files are read: hashing is the first half,
    checking the second (skipped, where the cache has its results)."""
    sources, source = _source(paths, glob, skip_bad_files)

    def halves(phase: str, done: int, total: int) -> None:
        if progress is not None:
            progress((done / max(total, 1) + (phase != "hashing")) / 2)

    corpus = prepare_texts(source, halves)
    left_out = tuple(f"{shown(d.path)}: {d.problem}" for d in corpus.skipped)
    return TextFiles(sources, tuple(Path(d.path) for d in corpus.val), left_out, corpus)


def _source(
    paths: str | Path | Sequence[str | Path], glob: str | None, skip_bad_files: bool
) -> tuple[tuple[str, ...], Source]:
    """The files and folders given, each once, as found; and the Source that reads them."""
    given = paths_given(paths, "paths", "a file or folder name")
    found = (str(resolve_corpus_path(str(p), "text file or folder")[0]) for p in given)
    sources = tuple(dict.fromkeys(found))  # each once, as the files are read once
    return sources, Source(
        tuple(str(p) for p in given), DEFAULT_GLOB if glob is None else glob, skip_bad_files=skip_bad_files
    )


def plot_runs(
    run_dirs: str | Path | Sequence[str | Path] | None, out: str | Path, *, width_px: int = 1200, height_px: int = 450
) -> Path:
    """Training and validation loss of the runs against step and time, overlaid, as a PNG (the plot
    extra); no runs: the most recently updated one under ./runs. A search's folder stands for its
    trials (those with losses logged), a checkpoint's folder for its run; one run may be given alone."""
    path_like(out, flag("out"))
    runs = _runs_to_plot(run_dirs, curves.has_losses)
    return curves.plot_runs(list(runs.items()), Path(out), width_px=width_px, height_px=height_px)


def plot_gradients(
    run_dirs: str | Path | Sequence[str | Path] | None,
    out: str | Path,
    *,
    width_px: int = 1200,
    height_px: int | None = None,
) -> Path:
    """The runs' gradient norms against step, globally and layer by layer, with each run's --clip
    (from its latest checkpoint) and the share of steps clipped: a panel a run, at most
    `gradients.MAX_RUNS`, as a PNG (the plot extra). The runs are found as `plot_runs` finds them."""
    path_like(out, flag("out"))
    runs = _runs_to_plot(run_dirs, gradients.has_gradients)
    return gradients.plot_gradients(
        [(label, records, _clip(Path(label))) for label, records in runs.items()],
        Path(out),
        width_px=width_px,
        height_px=height_px,
    )


def _runs_to_plot(
    run_dirs: str | Path | Sequence[str | Path] | None, drawable: Callable[[list[dict[str, Any]]], bool]
) -> dict[str, list[dict[str, Any]]]:
    """Label -> metrics records of each run named, or of the most recent one."""
    named = paths_given(run_dirs, "run_dirs", "a run's folder") if run_dirs is not None else []
    runs: dict[str, list[dict[str, Any]]] = {}
    for given in named or [catalog.most_recent_run(RUNS_DIR)]:
        found = _plotted(Path(given))
        if found is None:  # a search: its trials, but not one stopped before it logged anything to draw
            trials = {str(d): read_metrics(d) for d in _trials(Path(given))}
            runs |= {label: records for label, records in trials.items() if drawable(records)} or trials
        else:
            runs[str(found)] = read_metrics(found)
    return runs


def _clip(run: Path) -> float | None:
    """The run's --clip as its latest checkpoint has it, or a search's trial
    as the search's record has it (tune keeps only the best trial's
    checkpoints); None where neither can be read."""
    try:
        return checkpoint.describe(run, prefer=checkpoint.LATEST).train_config.grad_clip
    except (CharlstmError, KeyError, TypeError, ValueError, OSError):
        pass
    try:
        trials = checkpoint_paths.search_trials(run.parent)
        return next(float(t["train"]["grad_clip"]) for t in trials if Path(t["run_dir"]).name == run.name)
    except (OSError, ValueError, LookupError, TypeError, StopIteration):
        return None


def _plotted(path: Path) -> Path | None:
    """The run a path given to plot names: a run, or the run of one of its
    checkpoint folders; None for a search's folder."""
    if not path.is_dir():
        raise CharlstmError(f"not a run directory: {path}" if path.exists() else f"run not found: {path}")
    here = path.absolute()  # `plot .` inside RUN/checkpoints/best: the walk needs the parents
    for run in (here, *here.parents[:3]):  # RUN, RUN/checkpoints, RUN/checkpoints/best, RUN/checkpoints/best/60
        is_run = (run / METRICS_FILE).is_file() or (run / "checkpoints").is_dir()
        if is_run and run == here:
            return path
        if is_run and here.is_relative_to(run / "checkpoints"):
            return run if path.is_absolute() else Path(os.path.relpath(run))  # named as the path was
    if _trials(path):
        return None
    raise CharlstmError(f"not a charlstm run (no {METRICS_FILE} or checkpoints/ in it): {path}")


def _trials(search: Path) -> list[Path]:
    return [d for d in sorted(search.iterdir()) if d.is_dir() and (d / METRICS_FILE).is_file()]
