"""A training run: what it trains and where it lives on disk."""

from __future__ import annotations

import os
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax

from charlstm.config import MAX_COUNT, ModelConfig, TrainConfig
from charlstm.core.model import count_params_of_shape, product_weights
from charlstm.core.state import TrainState, init_state, state_shapes
from charlstm.errors import CharlstmError, ConfigError, shell_word
from charlstm.flags import flag
from charlstm.runtime import memory
from charlstm.text import manifest, streams
from charlstm.text.scan import Progress, no_progress
from charlstm.text.tokenfile import Tokens, open_tokens
from charlstm.text.tokens import Corpus
from charlstm.text.vocab import BOUNDARY, Vocab
from charlstm.training import health, processes, run_lock, runlog
from charlstm.training.cadence import ShortText

RUNS_DIR = Path("runs")


@dataclass
class Run:
    """Everything a training run needs, fresh or restored from a checkpoint."""

    model_config: ModelConfig
    train_config: TrainConfig
    vocab: Vocab
    corpus: Corpus
    tokens: Tokens  # the corpus's ids, mapped from the cache
    state: TrainState
    history: list[dict[str, float]] = field(default_factory=list)
    best_val_loss: float | None = None
    train_seconds: float = 0.0  # wall time spent training, over all sessions
    corpus_entry: dict[str, Any] = field(default_factory=dict)  # what checkpoints record (text/manifest.py)
    init_from: dict[str, Any] | None = None  # the checkpoint a fine-tuned run started from
    # The devices (all processes) the batch was split over when last trained,
    # which a resume on a CPU keeps so that it continues bit for bit; None
    # for a new run. Runs saved before it was recorded trained on one.
    devices: int | None = None
    # Whether copies of one text are held out together (streams.split_documents):
    # a new run's; one made before that keeps the split it trained on.
    copies_together: bool = True
    # What this session's resume changed: each option's [before, after], and
    # "text" ([sha256 before, after]) where it was forced past a changed
    # corpus; None for a run that starts here. For the run's log (`runlog`).
    resumed_with: dict[str, list[Any]] | None = None
    # Where a new run's cadence and patience were fitted to its short text
    # (`cadence.fitted`), for the warning that says so; None otherwise.
    short_text: ShortText | None = None

    def layout(self) -> streams.Layout:
        """The training streams and validation ids, as the config lays them out."""
        tc = self.train_config
        hashes = [d.sha256 for d in self.corpus.train]
        return streams.layout(
            self.tokens, hashes, tc.batch_size, tc.seq_len, tc.val_fraction, tc.reset_chars, self.copies_together
        )


# Options a resumed run may change; the rest would make it a different run.
RESUMABLE_FIELDS = (
    *("steps", "max_seconds", "learning_rate", "eval_every", "checkpoint_every", "log_every", "patience"),
    "precision",  # the arithmetic, not what is learned: a run may move between a GPU and a CPU
)
# What must match for a run to start from another's weights (`--init-from`).
SHAPE_FIELDS = ("cell", "norm", "hidden_size", "num_layers", "embed_dim")


def passes_since_best(history: list[dict[str, float]]) -> int:
    """Validation passes after the one with the lowest loss (0 if it was the last, or none yet)."""
    best_at = health.best_pass(history)
    return 0 if best_at is None else len(history) - 1 - best_at


def validated(history: list[dict[str, float]], step: int) -> bool:
    """Whether a run's history has a validation pass at `step` (a stop
    during the pass leaves none: a resumed run then owes it)."""
    return any(h["step"] == step for h in history)


def owes_pass(step: int, train_config: TrainConfig, history: list[dict[str, float]]) -> bool:
    """Whether a run stopped at `step` before its last owes that step's
    validation pass (a stop during the pass cut it short): a resume makes
    it before training on, and it may be a new best."""
    tc = train_config
    return 0 < step < tc.steps and step % tc.eval_every == 0 and not validated(history, step)


def why_ended(step: int, train_config: TrainConfig, history: list[dict[str, float]]) -> str | None:
    """Why a run at `step` has nothing left to do: "done" (its step total,
    or where its --max-time fitted its schedule to end, and that step's
    validation pass made) or "patience" (no new best in --patience
    passes, and no pass owed); None where a resume would train on, or make
    a pass it owes."""
    tc = train_config
    if step >= tc.steps:
        return "done" if validated(history, step) else None
    patience_spent = tc.patience is not None and passes_since_best(history) >= tc.patience
    if patience_spent and not owes_pass(step, tc, history):
        return "patience"
    return None


def default_run_dir(corpus_path: Path, when: float | None = None) -> Path:
    """runs/<corpus>-<time>; `when` (unix seconds, default now) lets the
    processes of a multi-process run agree on one name."""
    return RUNS_DIR / f"{corpus_name(corpus_path)}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}"


def corpus_name(path: Path) -> str:
    """What a run or search on `path` is named after: a file's stem, a
    folder's own name (`train .` in ~/poems: poems), never starting with
    "-", which a command line would read as an option. Characters a
    listing cannot show on one line (a newline, a tab) and those the
    checkpoint library reads as a pattern become '_': a file may be named
    anything, and a run named after it was split over two lines in `runs`."""
    name = path.resolve().name if path.is_dir() else path.stem
    # Control characters and line breaks only: a Persian name's zero-width non-joiner stays.
    name = "".join("_" if c in "[]*?" or unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in name)
    return name.lstrip("-") or "corpus"


def pattern_characters(path: Path) -> list[str]:
    """The glob characters in `path`. Orbax finds a checkpoint's parts with a
    glob on its directory, which reads these as a pattern: a checkpoint under
    such a path is written and can never be read back."""
    return sorted(set("[]*?") & set(str(path.absolute())))


def check_writable_path(run_dir: Path, *, resuming: bool = False) -> None:
    """Refuse to write checkpoints where they could not be read back."""
    odd = pattern_characters(run_dir)
    if not odd:
        return
    read_as = f"run directory {run_dir}: its path contains {' '.join(odd)}, which the checkpoint library reads as a"
    if resuming:  # a run there already (sample and eval read it): its folder is what to rename
        raise ConfigError(
            f"{read_as} pattern when it saves, so the run's new checkpoints could not be read back; rename it (or "
            "the folder it is in) without them to train it on"
        )
    raise ConfigError(
        f"{read_as} pattern, so its checkpoints could not be read back; pick another folder for {flag('out')}"
    )


def refuse_links(run_dir: Path, *, resuming: bool = True) -> None:
    """Refuse to train in a run directory that holds a symbolic link, as a
    run unpacked or downloaded from elsewhere can: a run rewrites, appends
    to and deletes its own files and folders, and through a link it would
    do so to whatever the link names, outside the run (Orbax deletes the
    older numbered folders of whatever folder checkpoints/latest names). The
    run directory itself may be a link: it is what it holds that is written."""
    for folder, folders, files in os.walk(run_dir):  # never into a linked folder
        for name in sorted([*folders, *files]):
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            way_on = (
                f"copy the run with its links replaced by what they name (cp -rL {shell_word(run_dir)} COPY) and "
                "train the copy"
                if resuming
                else f"remove the link, or pick another folder for {flag('out')}"
            )
            raise ConfigError(
                f"run directory {run_dir} holds a symbolic link, {path} (to {target}): a run rewrites and deletes "
                f"its own files, which through a link would happen outside it; {way_on}"
            )


def check_run_dir(run_dir: Path, search: bool = False) -> None:
    """Refuse a run directory (a `search`'s directory of runs) that is a
    file, already holds something, or could not be read back."""
    check_writable_path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{flag('out')} {run_dir} is a file, not a directory")
    if search and run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(
            f"search directory {run_dir} already exists and is not empty; pick another folder for {flag('out')} "
            f"(a search is not continued; its best trial is a run of its own, which 'charlstm resume' trains further)"
        )
    if run_dir.exists() and run_lock.in_use(run_dir):
        raise ConfigError(
            f"run directory {run_dir} is being trained by another process now; pick another folder for {flag('out')}"
        )
    if run_dir.exists() and not left_by_failed_start(run_dir):
        raise ConfigError(
            f"run directory {run_dir} already exists and is not empty; "
            f"pick another folder for {flag('out')}, or continue it with 'charlstm resume'"
        )
    if run_dir.exists():  # a start that failed, to start again in it
        refuse_links(run_dir, resuming=False)


def _step_folders(directory: Path) -> list[Path]:
    """The step folders in `directory` (a run's checkpoints/latest or checkpoints/best)."""
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir() if p.name.isdigit() and p.is_dir()]


def saved_steps(directory: Path) -> list[int]:
    """The steps saved in `directory`, in order, complete now or not: Orbax
    renames a step folder into place only once its save is done, so one
    without its items (`complete_steps`) was damaged or emptied since."""
    return sorted(int(p.name) for p in _step_folders(directory))


def complete_steps(directory: Path) -> list[int]:
    """The steps of `saved_steps` whose items are still there: the finished checkpoints, in order."""
    return sorted(int(p.name) for p in _step_folders(directory) if (p / "meta").is_dir())


# What a run writes besides its checkpoints: its record, lock and logs.
_RUN_FILES = (run_lock.LOCK_FILE, manifest.FILES, runlog.METRICS_FILE, runlog.SAMPLES_FILE, processes.SHARED_TOKEN)


def left_by_failed_start(run_dir: Path) -> bool:
    """Whether the directory holds nothing a run could lose: no complete
    checkpoint, only what a run that stopped before its first one leaves
    (its record, lock and logs, a save cut short), and no process trains
    there. The same command may then start in it again, as its messages
    say (a damaged token file, a text too short, a kill or a full disk
    before the first save); the new run's log starts afresh."""
    for entry in run_dir.iterdir():
        if entry.name in _RUN_FILES and entry.is_file():
            continue
        checkpoints = entry.name == "checkpoints" and entry.is_dir()
        if checkpoints and all(kind.is_dir() and not saved_steps(kind) for kind in entry.iterdir()):
            continue
        return False
    run_lock.refuse_if_held(run_dir)  # a start still under way, before its first checkpoint
    return True


def prepare_run_dir(run_dir: Path, checked: bool = False, search: bool = False) -> None:
    """Create the run directory (a `search`'s), refusing one in use unless `checked` already."""
    if not checked:
        check_run_dir(run_dir, search)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _cannot_create(run_dir, err) from None


def _cannot_create(run_dir: Path, err: OSError) -> CharlstmError:
    where = f"give another place with {flag('out')}"
    return CharlstmError(f"cannot create run directory {run_dir}: {err.strerror}; {where}")


def claim_default_dir(run_dir: Path) -> Path:
    """A default-named run directory made for this run alone: `run_dir`, or
    `run_dir`-2, -3, ... where a run started in the same second made it
    first. Each is made by one `mkdir`, which only one process can win, so
    runs started together (a shell loop over seeds) never share one."""
    check_writable_path(run_dir)
    for number in range(1, 10_000):
        candidate = run_dir if number == 1 else run_dir.with_name(f"{run_dir.name}-{number}")
        try:
            candidate.mkdir(parents=True)
        except FileExistsError:
            continue
        except OSError as err:
            raise _cannot_create(candidate, err) from None
        return candidate
    raise CharlstmError(f"every name from {run_dir} to {run_dir}-9999 is taken; give a place with {flag('out')}")


def corpus_vocab(corpus: Corpus, base: Vocab | None = None) -> Vocab:
    """A new run's vocabulary: the corpus's characters, sorted, with the
    boundary symbol if it has several documents; a fine-tuned run's: its
    base model's, with the characters it lacks appended."""
    chars = corpus.charset + (BOUNDARY if corpus.boundary else "")
    return Vocab("".join(sorted(chars))) if base is None else base.grown(chars)


def with_tokens(
    corpus: Corpus,
    vocab: Vocab,
    model_config: ModelConfig,
    config: TrainConfig,
    state: TrainState,
    progress: Progress,
    copies_together: bool = True,
) -> Run:
    """A run of `state` on `corpus`, its token file opened (written first if
    new); `copies_together`: see `Run.copies_together`."""
    tokens = open_tokens(corpus, vocab, progress)
    run = Run(model_config, config, vocab, corpus, tokens, state, copies_together=copies_together)
    # Fail on a too-short text now, before compiling anything.
    layout = run.layout()
    run.corpus_entry = manifest.summary(corpus, tokens, layout.split, config.val_fraction, copies_together)
    return run


# float32 weights, their gradients and AdamW's two moments.
BYTES_PER_PARAMETER = 16
# Far past any stack that trains (char-rnn's deepest were 3 or 4 layers):
# building a model traces each layer, about 10 ms a layer before anything
# compiles, so 20,000 layers sat minutes in silence (a walkthrough, 2026-12-06).
MAX_LAYERS = 100


def refuse_too_deep(model_config: ModelConfig) -> None:
    """Refuse a new model deeper than MAX_LAYERS, before anything traces it.
    New ones only: a checkpoint keeps the shape it was trained with."""
    layers = model_config.num_layers
    if layers > MAX_LAYERS:
        raise ConfigError(f"{flag('num_layers')} must be at most {MAX_LAYERS}, got {layers:,}")


def refuse_too_large(
    model_config: ModelConfig, train_config: TrainConfig, free: int | None = None, *, resuming: bool = False
) -> None:
    """Refuse a model that cannot train in the memory free here (`free`, by
    default what `memory.free_bytes` finds on the first local device), by a
    low estimate of what training it takes: BYTES_PER_PARAMETER, and a
    batch's activations, so that no run that would fit is refused. Over all
    local devices, as a run splits its batch by default: on a CPU split in
    devices each holds its own copy of the weights in the one host memory;
    each GPU holds a copy and its share of the batch. Not in a run of
    several processes, which would each decide alone (one refusing would
    leave the others waiting for it). `resuming`: a run keeps its shape, so
    the message says where it can go on instead of what to shrink."""
    if jax.process_count() > 1:
        return
    free = memory.free_bytes() if free is None else free
    if free is None:
        return
    # Each character of a batch keeps at least 10 H floats a layer for the
    # backward pass (the gates, c and h; the GRU's measured 1.02x this), and
    # its logits, their softmax and its gradient (3 V).
    per_char = 4 * (10 * model_config.num_layers * model_config.hidden_size + 3 * model_config.vocab_size)
    devices, host = jax.local_device_count(), jax.local_devices()[0].platform == "cpu"
    copies = devices if host else 1
    batch = train_config.batch_size * train_config.seq_len * per_char // (1 if host else devices)
    # Counted first, then traced (exact) where the count fits: tracing a
    # model of 2**31 units ran into JAX's 32-bit indices.
    params = product_weights(model_config) + model_config.vocab_size * model_config.embed_dim
    counted = copies * BYTES_PER_PARAMETER * params + batch > free
    if not counted:
        params = count_params_of_shape(model_config)
    weights = copies * BYTES_PER_PARAMETER * params
    need = weights + batch
    if need <= free:
        return
    gb = lambda n: f"{n / 1e9:,.1f} GB"  # noqa: E731
    # A search checks its trials before the text is read: a vocabulary of one stands for the one to come.
    chars = f", {model_config.vocab_size:,} characters" if model_config.vocab_size > 1 else ""
    held = f"{copies} copies of its weights (one a device)" if copies > 1 else "its weights"
    if resuming:
        remedy = "resume it where there is more memory free (a run keeps its shape and batch when resumed)"
    else:
        remedy = f"give a smaller {flag('hidden_size')}, {flag('num_layers')} or {flag('embed_dim')}" + (
            f", or a smaller {flag('batch_size')} or {flag('seq_len')}" if batch > need / 2 else ""
        )
    raise ConfigError(
        f"a {model_config.describe()} (embedding {model_config.embed_dim}{chars}) has {'over ' * counted}{params:,} "
        "parameters: "
        f"training it takes at least {gb(need)} ({gb(weights)} for {held}, their gradients and AdamW's moments, "
        f"{gb(batch)} for a batch), more than the {gb(free)} free here; {remedy}"
    )


def planned_run(
    corpus: Corpus, model_kwargs: dict[str, Any], train_config: TrainConfig, progress: Progress = no_progress
) -> Run:
    """A new run with every refusal `new_run` gives, its state only shapes:
    nothing is allocated (a search checks each trial's this way first)."""
    vocab = corpus_vocab(corpus)
    model_config = ModelConfig(vocab_size=vocab.size, boundary_id=vocab.boundary_id, **model_kwargs)
    refuse_too_deep(model_config)
    if product_weights(model_config) > MAX_COUNT:
        # Past 32-bit counts, one too large for the memory here is refused by
        # its count before anything traces it: tracing it printed JAX's
        # warning on 64-bit indices above the error.
        refuse_too_large(model_config, train_config)
    # A text too short for the layout is the error to give before a model too large.
    run = with_tokens(
        corpus,
        vocab,
        model_config,
        train_config,
        state_shapes(model_config, train_config.batch_size),
        progress,
    )
    refuse_too_large(model_config, train_config)
    return run


def new_run(
    corpus: Corpus, model_kwargs: dict[str, Any], train_config: TrainConfig, progress: Progress = no_progress
) -> Run:
    run = planned_run(corpus, model_kwargs, train_config, progress)
    run.state = init_state(run.model_config, run.train_config)
    return run
