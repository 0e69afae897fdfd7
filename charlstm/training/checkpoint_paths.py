"""Where a checkpoint is: the path a user gives (a run directory, its
checkpoints/ folder, one kind of them, or one step directory) made into the
step directory to read, and what to say where there is none: the runs a
mistyped name is like, a search's best trial, a run stopped before its first
save, a losing trial whose checkpoints tune removed, and for a damaged
checkpoint the run's others to go on from. Reading and writing them is
`checkpoint.py`'s.

    RUN/checkpoints/latest/<step>/   the newest few, for resuming
    RUN/checkpoints/best/<step>/     the one with the lowest validation loss
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charlstm.errors import CheckpointError, shell_word
from charlstm.flags import flag, option
from charlstm.text.folder import RUN_LOG, SEARCH_RECORD
from charlstm.training import run_lock
from charlstm.training.run import complete_steps, saved_steps

TRIAL_NAME = re.compile(r"trial-\d{2,}")  # tune's trial-NN folders


def _diverged_unsaved(path: Path) -> bool:
    """Whether a run's log ends with its divergence before any validation
    pass: a search's trial then saved nothing (it saves with its passes and
    at its end, which a divergence never reaches)."""
    from charlstm.training.runlog import read_metrics  # the error's path only

    records = read_metrics(path)
    return bool(records) and records[-1].get("stopped") == "diverged" and records[-1].get("best_val_loss") is None


def _diverged_trial(path: Path) -> str:
    return (
        f"{path} diverged (its metrics end where the loss stopped being finite) and has no checkpoints; plot "
        f"it, or train its settings again with a lower {flag('learning_rate')}"
    )


def _a_trial(path: Path) -> bool:
    """Whether `path` is a trial of a search (training/tune.py): named
    trial-NN in a folder with the search's record, or, where the search was
    stopped in its first trial before writing one, beside trials alone."""
    if not TRIAL_NAME.fullmatch(path.name):
        return False
    search = path.parent
    return (search / SEARCH_RECORD).is_file() or all(TRIAL_NAME.fullmatch(p.name) for p in search.iterdir())


def not_saved_yet() -> str:
    """A run being trained that has saved nothing yet, as the commands that read one say it."""
    return (
        "is being trained now and has not saved its first checkpoint yet (it comes with the first validation pass, "
        f"{flag('eval_every')}, or at {flag('checkpoint_every')} steps, whichever is sooner); try again then"
    )


LATEST, BEST = "latest", "best"


def _runs_like(path: Path) -> str:
    """The runs beside `path` that its name begins, or nearly spells (a run
    named by hand, its time cut short or mistyped), as a suggestion."""
    try:
        runs = sorted(p.name for p in path.parent.iterdir() if (p / "checkpoints").is_dir())
    except OSError:
        return ""
    like = [name for name in runs if name.startswith(path.name)] or difflib.get_close_matches(path.name, runs, n=3)
    if not like:
        return ""
    shown = ", ".join(str(path.parent / name) for name in like[-3:])  # the newest, where a time is in the name
    return f"; did you mean {shown}?" if len(like) == 1 else f"; runs like it: {shown}"


def locate(path: Path, prefer: str = BEST) -> tuple[Path, int]:
    """A run directory, a checkpoints/{latest,best} directory, or one step
    directory -> (manager directory, step)."""
    if prefer not in (BEST, LATEST):
        raise CheckpointError(f"prefer must be {BEST!r} or {LATEST!r}, got {prefer!r}")
    if not path.exists():
        steps = complete_steps(path.parent) if path.name.isdigit() else []
        there = f" (that folder has step{'s' * (len(steps) > 1)} {', '.join(map(str, steps))})" if steps else ""
        raise CheckpointError(f"checkpoint not found: {path}{there or _runs_like(path)}")
    if path.name in ("", ".."):  # `.` or `..`, named from inside: their real names say what they are
        path = Path(os.path.abspath(path))
    if path.name.isdigit() and (path / "meta").exists():
        return path.parent, int(path.name)
    if path.name == "checkpoints" and all((path / kind).is_dir() for kind in (LATEST, BEST)):
        path = path.parent  # RUN/checkpoints: the run
    if (path / "checkpoints").is_dir():
        order = [prefer, LATEST if prefer == BEST else BEST]
        for kind in order:
            found = latest_step(path / "checkpoints" / kind)
            if found is not None:
                return path / "checkpoints" / kind, found
        if run_lock.in_use(path):  # a new run, still before its first save: not a run that stopped
            raise CheckpointError(f"run directory {path} {not_saved_yet()}")
        emptied = [f"{kind}/{step}" for kind in (LATEST, BEST) for step in saved_steps(path / "checkpoints" / kind)]
        if emptied:  # saved once, since damaged: never the advice to start afresh over them
            raise CheckpointError(
                f"no complete checkpoint in run directory {path}: its checkpoints ({', '.join(emptied)}) have lost "
                "their meta/ folders (deleted or damaged), so none can be read; put them back from a copy"
            )
        trial = _a_trial(path)
        if trial and (path / RUN_LOG).is_file() and _diverged_unsaved(path):  # --keep-all kept its folders
            raise CheckpointError(_diverged_trial(path))
        if trial:  # nobody typed a train command for it (a chaos walkthrough, 2026-12-07)
            raise CheckpointError(
                f"no complete checkpoint in {path}: this trial of the search in {path.parent} stopped before "
                "its first save (a trial saves when it ends or is stopped with Ctrl-C, so a kill loses it); a "
                f"search is not continued: run 'charlstm tune' again with another {option('out')}"
            )
        raise CheckpointError(
            f"no complete checkpoint in run directory {path}: it stopped before its first save; run its "
            f"'charlstm train' command again with the same {option('out')}, which starts afresh there"
        )
    found = latest_step(path)
    searched = (path.parent / SEARCH_RECORD).is_file()
    if found is None and (path / RUN_LOG).is_file() and searched and _diverged_unsaved(path):
        # Not a checkpoint tune took away (--keep-all would have kept none): a walkthrough, 2026-12-06.
        raise CheckpointError(_diverged_trial(path))
    if found is None and (path / RUN_LOG).is_file() and searched:
        # A tune trial other than the best: tune removed its checkpoints.
        raise CheckpointError(
            f"{path} has its metrics but no checkpoints: charlstm tune keeps only the best trial's "
            f"({flag('keep_all')} keeps every trial's); plot it, or train its settings again"
        )
    if found is None and (path / RUN_LOG).is_file():
        raise CheckpointError(
            f"{path} has its metrics but no checkpoints folder: it was deleted or moved, and nothing else can be "
            "sampled or resumed; put it back, or plot the run's log"
        )
    if found is None and path.is_file():
        raise CheckpointError(f"{path} is a file, not a charlstm run or checkpoint directory")
    if found is None and (path / SEARCH_RECORD).is_file():
        raise CheckpointError(f"{path} is a search, not a run: name one of its trials{_best_trial(path)}")
    if found is None and (path / "meta").is_dir():  # a step directory copied under another name
        raise CheckpointError(
            f"{path} is a checkpoint, but its folder must be named by its step, as charlstm saved it "
            "(checkpoints/best/STEP): rename it to its step, or put it in a folder under that name"
        )
    if found is None:
        raise CheckpointError(f"not a charlstm run or checkpoint directory: {path}")
    return path, found


def search_trials(search: Path) -> list[dict[str, Any]]:
    """The trials a search's record lists, best first (training/tune.py
    writes it); OSError, ValueError, LookupError or TypeError where it cannot
    be read as one."""
    trials = json.loads((search / SEARCH_RECORD).read_text(encoding="utf-8"))["trials"]
    if not isinstance(trials, list) or not all(isinstance(t, dict) for t in trials):
        raise TypeError(f"{search / SEARCH_RECORD} lists no trials")
    return trials


def _best_trial(search: Path) -> str:
    """ ", the best is PATH", from the search's record, or "" if it cannot be read."""
    try:
        trials = search_trials(search)
        return f", the best is {search / Path(trials[0]['run_dir']).name}" if trials else ""
    except (OSError, ValueError, LookupError, TypeError):
        return ""


def latest_step(directory: Path) -> int | None:
    steps = complete_steps(directory)
    return steps[-1] if steps else None


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the run has a complete checkpoint, latest or best, to resume or sample from."""
    return any(complete_steps(run_dir / "checkpoints" / kind) for kind in (LATEST, BEST))


def run_of(step_dir: Path) -> Path | None:
    """The run a checkpoint belongs to (RUN/checkpoints/KIND/STEP), or None
    for one that stands alone."""
    return step_dir.parent.parent.parent if step_dir.parent.parent.name == "checkpoints" else None


def checkpoint_name(path: Path) -> str:
    """A checkpoint as the server and exported weights name it: its run's
    name and the checkpoint in it (RUN/checkpoints/best/STEP), or a
    checkpoint standing alone by its folder and step; never the folders
    above, since a server other machines can reach, or weights handed to
    others, should not tell them the disk's layout (a user's name in it)."""
    where = path.resolve()  # `charlstm serve .` inside a run names the run too
    run = run_of(where)
    return where.relative_to(run.parent).as_posix() if run is not None else "/".join(where.parts[-2:])


def others_intact(where: Path, reads: Callable[[Path], bool] | None = None, *, whole: bool = False) -> str:
    """For a damaged checkpoint of a run: the run's other complete ones, and
    which of them the commands take by themselves once the damaged one is
    out of the way: resume the newest latest one (a best one where none is
    left), sample and eval the best. `reads`, where given, tries each (a
    disk error may have reached them too): only those it reads are offered,
    said to be read whole where `whole` (it read their arrays too);
    without it the message does not promise them."""
    run = run_of(where)
    if run is None:
        return ""
    root = run / "checkpoints"
    left = {kind: [s for s in complete_steps(root / kind) if root / kind / str(s) != where] for kind in (LATEST, BEST)}
    others = [f"{kind}/{step}" for kind in (LATEST, BEST) for step in left[kind]]
    if not others:
        return ""
    if reads is not None:
        left = {kind: [s for s in steps if reads(root / kind / str(s))] for kind, steps in left.items()}
    good = [f"{kind}/{step}" for kind in (LATEST, BEST) for step in left[kind]]
    if not good:
        return (
            f"; the run's other checkpoints ({', '.join(others)}) cannot be read either: the run cannot go on "
            "from any of them"
        )

    def newest(*kinds: str) -> str:
        return next(f"{kind}/{max(left[kind])}" for kind in kinds if left[kind])

    resumed, read = newest(LATEST, BEST), newest(BEST, LATEST)
    goes_on = (
        f"every command goes on from {read}"
        if resumed == read
        else f"resume goes on from {resumed}, sample and eval from {read}"
    )
    how = "were read whole just now" if whole and reads else "were saved whole (their arrays are not read here)"
    # The commands take the newest complete step, readable or not: every unreadable one must go aside.
    bad = [name for name in others if name not in good]
    also = f" ({', '.join(bad)} cannot be read either)" if bad else ""
    aside = [where, *(root / name for name in bad)]
    moves = "; ".join(f"mv {shell_word(p)} {shell_word(f'{p}.damaged')}" for p in aside)
    return (
        f"; the run's other checkpoints ({', '.join(good)}) {how}{also}: move {'these' if bad else 'this one'} "
        f"aside ({moves}) and {goes_on}"
    )
