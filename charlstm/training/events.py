"""What the training loop reports. Plain values: the loop yields them, the
progress display (or a test, or a notebook) decides what to do with them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charlstm.config import ModelConfig, TrainConfig
from charlstm.errors import first_few, shown
from charlstm.flags import flag
from charlstm.units import bits


@dataclass(frozen=True)
class Reading:
    """The corpus is being read: hashed (every run), checked (the first time
    its content is seen) or encoded (the first time under a vocabulary)."""

    phase: str  # "hashing", "reading" or "encoding"
    done: int  # bytes read so far in this phase
    total: int  # bytes in all


@dataclass(frozen=True)
class Skipped:
    """A file left out of the corpus (`--skip-bad-files`)."""

    path: str
    problem: str


@dataclass(frozen=True)
class SkippedEmpty:
    """Files left out of the corpus for holding no text (never refused: a
    source tree's empty __init__.py files are normal), reported together."""

    paths: tuple[str, ...]

    def summary(self) -> str:
        """'3 empty files (a, b, c)', the first three named."""
        what = "1 empty file" if len(self.paths) == 1 else f"{len(self.paths)} empty files"
        return f"{what} ({first_few([shown(p) for p in self.paths], 3)})"


@dataclass(frozen=True)
class SkippedNotFiles:
    """A folder's entries that are neither files nor folders (links to
    nothing or in a loop, pipes, sockets), and its links to folders that
    '**' does not go through (text/folder.py), left out, reported
    together: a tree may hold many."""

    entries: tuple[tuple[str, str], ...]  # (path, why)

    def summary(self) -> str:
        """'2 entries that are not files (a: why; b: why)', the first three named."""
        n = len(self.entries)
        what = "1 entry that is not a file" if n == 1 else f"{n} entries that are not files"
        return f"{what} ({first_few([f'{shown(p)}: {why}' for p, why in self.entries], 3, '; ')})"


@dataclass(frozen=True)
class SkippedOtherCase:
    """Files of a folder that the default --glob ('**/*.txt', case-sensitive
    as a shell's) leaves out only for the case of their extension
    (NOTES.TXT), reported together, with the pattern that reads them too."""

    paths: tuple[str, ...]

    def summary(self) -> str:
        """'2 files ending in .TXT, not .txt (a, b): ...', the first three named."""
        n = len(self.paths)
        endings = sorted({Path(p).suffix for p in self.paths})
        what = f"{n} file{'s' if n > 1 else ''} ending in {' or '.join(endings)}, not .txt"
        both = "{" + ",".join(["txt", *(e.lstrip(".") for e in endings)]) + "}"
        return (
            f"{what} ({first_few([shown(p) for p in self.paths], 3)}): the default {flag('glob')} is "
            f"case-sensitive; {flag('glob')} '**/*.{both}' reads {'them' if n > 1 else 'it'} too"
        )


@dataclass(frozen=True)
class CorpusReady:
    """The corpus is read and its token file mapped."""

    path: str  # the first file or folder given
    files: int  # training documents (held-out ones included)
    val_files: int  # --val-file documents
    chars: int  # characters of the training documents (a held-out share included), not the --val-file ones
    size: int  # bytes of the training documents
    vocab_size: int  # symbols: the characters, and the document boundary where there is one
    validation: str  # the validation text, in words
    tokens: str  # the token file
    encoded_seconds: float | None  # how long encoding took; None: the token file was in the cache
    checked: bool  # whether the files were checked now (False: their first reading was cached)
    val_chars: int = 0  # characters of the --val-file documents
    val_size: int = 0  # their bytes
    boundary: bool = False  # whether the vocabulary holds the documents' boundary symbol (several files)
    # Characters of the --val-file documents that the vocabulary lacks, left
    # out of the validation loss: how often each occurred.
    skipped: Mapping[str, int] = field(default_factory=dict)
    sources: tuple[str, ...] = ()  # every file and folder given (`path` is the first)


@dataclass(frozen=True)
class Opened:
    """A run is ready to train: new, or picked up again from its checkpoint."""

    run_dir: Path
    corpus: str  # the corpus file it reads
    model_config: ModelConfig
    train_config: TrainConfig
    params: int
    resumed: bool = False
    shipped_corpus: bool = False  # the corpus was named, not found here, and the shipped one was used
    # A fine-tuned run's start (checkpoint, step, vocab_size, ...; training/session.py), else None.
    init_from: dict[str, Any] | None = None


@dataclass(frozen=True)
class Started:
    step: int
    total_steps: int
    backend: str
    devices: list[str]  # the devices the batch is split over, in every process
    train_chars: int  # characters seen per pass over the training split
    val_chars: int  # characters scored by each validation pass
    windows_per_pass: int
    processes: int = 1  # processes taking part (each feeding its own share of the streams)
    trains: bool = True  # any step left to train (not: a finished run, or one its --patience stopped, resumed)
    val_loss: float | None = None  # the latest validation pass's loss before this session (a resume's)
    local_devices: int = 0  # the devices this process has, used or not (0: as many as it uses)


@dataclass(frozen=True)
class Compiled:
    seconds: float


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    loss: float  # mean training loss (nats/char) since the last report
    grad_norm: float  # global gradient norm before clipping, last step
    lr: float
    chars_per_sec: float
    elapsed: float  # training wall time over all sessions of the run
    layer_grad_norms: dict[str, float] = field(default_factory=dict)  # per top-level layer, last step
    clipped_fraction: float = 0.0  # share of steps since the last report whose gradients were clipped
    time_left: float | None = None  # seconds until --max-time stops this session, if it has one
    # Seconds to the last step and its validation passes at this session's
    # pace so far (`loop.TrainingLoop._time_to_end`); None before it has one.
    time_to_end: float | None = None


def left_out_line(event: object) -> str | None:
    """The line for a file (or entry) a corpus left out, as every display
    and a caller's warnings (api.training) say it; None for any other event."""
    if isinstance(event, Skipped):
        return f"skipped {shown(event.path)}: {event.problem}"
    if isinstance(event, SkippedEmpty):
        return f"skipped {event.summary()}: nothing to learn from"
    if isinstance(event, SkippedNotFiles | SkippedOtherCase):
        return f"skipped {event.summary()}"
    return None


@dataclass(frozen=True)
class Warned:
    """Something about training that needs the user's attention (see `health.py`)."""

    step: int
    # "exploding", "clipping", "vanishing", "loss rising", "corpus changed", "schedule", "validation",
    # "small validation", "preset", "fine-tune", "text", "checkpoint", "overfitting", "worse than guessing"
    # "devices" (a resumed run on another device count), or "options" (a resume's options that change nothing)
    kind: str
    message: str


@dataclass(frozen=True)
class Validating:
    """A validation pass begins (`done` 0), or goes on: on a large text it
    takes a while (a Ctrl-C stops it), and says how far it is about every
    PASS_PROGRESS_SECONDS."""

    step: int
    chars: int  # characters it scores
    large: bool  # long enough that a run was warned about it at its start
    done: float = 0.0  # the share of them scored so far


PASS_PROGRESS_SECONDS = 1.0


@dataclass(frozen=True)
class Evaluated:
    step: int
    val_loss: float  # nats/char on the validation split
    best: bool


@dataclass(frozen=True)
class Sampled:
    """A short text generated after a validation pass (fixed prime, seed and
    temperature, so samples from different steps are comparable)."""

    step: int
    text: str


@dataclass(frozen=True)
class Saved:
    step: int
    path: str
    best: bool


@dataclass(frozen=True)
class Saving:
    """A checkpoint of `step` is about to be written (the run's log writes
    out the lines it holds first: a kill during or just after the save would
    otherwise leave a checkpoint whose step the resumed run never logs)."""

    step: int


@dataclass(frozen=True)
class Rescheduled:
    """The time limit moved the end of the learning rate schedule to `steps`
    from `was`: shortened, where the limit would stop the run before its last
    step (decaying fully instead of being cut off near its peak), or
    lengthened to fill the time (`--fill-time`)."""

    step: int
    steps: int
    was: int
    max_seconds: float
    budget: bool = False  # a tune trial's budget of training, refitted at every report (it may lengthen)


@dataclass(frozen=True)
class Finished:
    step: int
    # "done", "time limit", "interrupted", "patience" (no new best in --patience
    # validation passes) or "diverged" (a loss, gradients or parameters not finite)
    reason: str
    best_val_loss: float | None
    train_seconds: float
    best_step: int | None = None  # the step of the best validation loss, if any
    detail: str = ""  # why it stopped, in words, when the reason alone does not say ("patience")
    earlier_seconds: float = 0.0  # of train_seconds, what the run's earlier sessions trained (a resume)
    # Of this session's time, its training steps alone: no validation passes,
    # samples or saves (what a tune's time budget counts).
    step_seconds: float = 0.0


@dataclass(frozen=True)
class SearchPlanned:
    """A hyperparameter search (`charlstm tune`) is about to run its trials."""

    directory: Path
    trials: int
    kind: str  # "random" or "grid"
    note: str = ""  # something the user should know about the plan ("" if nothing)


@dataclass(frozen=True)
class TrialStarted:
    """A search's trial begins (`charlstm.tune`); `point` holds its searched values."""

    index: int
    total: int
    point: dict[str, float]
    steps: int
    params: int
    name: str = ""  # its run directory's name in the search's folder (trial-00: the first)
    budget_s: float | None = None  # its time budget, where `steps` is fitted to one (and refitted as it runs)


@dataclass(frozen=True)
class TrialResult:
    """One trial of a hyperparameter search (`charlstm.tune`)."""

    trial: int
    run_dir: str
    point: dict[str, float]  # the searched values, by config field
    model: dict[str, Any]  # the whole model shape it trained
    steps: int  # steps it completed
    planned_steps: int
    val_loss: float | None  # best validation loss, nats/char (None: diverged before any)
    train_seconds: float  # of training steps: what a time budget counts (no compilation, validation or saving)
    params: int
    reason: str  # why it stopped: done, time limit, interrupted, diverged
    train: dict[str, Any] = field(default_factory=dict)  # the TrainConfig it used

    @property
    def bits_per_char(self) -> float | None:
        return None if self.val_loss is None else bits(self.val_loss)


@dataclass(frozen=True)
class TrialFinished:
    index: int
    total: int
    result: TrialResult


Event = (
    Reading
    | Skipped
    | SkippedEmpty
    | CorpusReady
    | Opened
    | Started
    | Compiled
    | Progress
    | Warned
    | Rescheduled
    | Validating
    | Evaluated
    | Sampled
    | Saving
    | Saved
    | Finished
)

# What a caller passes to hear the events as they come (a display, a log,
# a list's append), and to ask for a stop, polled between steps.
EventHandler = Callable[[Any], None]
StopCheck = Callable[[], bool]
