"""Training: a new run (`train`) and one continued (`resume`), each
returning the model it trained. A search of hyperparameters is `tuning.py`'s."""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from charlstm import presets
from charlstm.api.model import Model, load
from charlstm.arguments import check, check_callbacks, path_like, paths_of, true_or_false, unknown_fields
from charlstm.config import FINE_TUNE_LEARNING_RATE, ModelConfig, TrainConfig, check_seed
from charlstm.core.model import count_params
from charlstm.errors import CharlstmError, CharlstmWarning, CheckpointError, ConfigError
from charlstm.flags import flag
from charlstm.runtime.jax_settings import holding
from charlstm.training import checkpoint, checkpoint_meta, checkpoint_paths, distributed, events, processes, session
from charlstm.training.events import EventHandler, StopCheck
from charlstm.training.run import Run
from charlstm.training.timefit import TimeUse


class TrainingDiverged(CharlstmError):
    """Training stopped because a loss, the gradients or the parameters stopped
    being finite. The run directory keeps its last good checkpoint."""

    def __init__(
        self, step: int, run_dir: Path, learning_rate: float, steps: int, last_good: Path | None, last_good_step: int
    ):
        kept = (
            f"the newest checkpoint in {run_dir} (step {last_good_step}) is the last good one"
            if last_good is not None
            else f"it diverged before its first checkpoint, so {run_dir} has none to continue from"
        )
        super().__init__(f"training diverged at step {step}; {kept}")
        self.step = step
        self.run_dir = run_dir
        self.learning_rate = learning_rate  # the peak learning rate it diverged with
        self.steps = steps  # the run's planned total
        self.last_good = last_good  # the newest checkpoint's step directory; None if it diverged before one
        self.last_good_step = last_good_step

    def __reduce__(self) -> tuple[type, tuple[int, Path, float, int, Path | None, int], dict[str, Any]]:
        # Made again from its arguments (Exception's way passes the message
        # alone to __init__, which fails), then given its attributes, notes
        # included: a process pool's worker can raise it.
        fields = (self.step, self.run_dir, self.learning_rate, self.steps, self.last_good, self.last_good_step)
        return type(self), fields, self.__dict__


@holding
def train(
    corpus: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    *,
    preset: str | None = None,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    embed_dim: int | None = None,
    cell: str | None = None,
    norm: str | None = None,
    glob: str | None = None,
    val_file: str | Path | Sequence[str | Path] | None = None,
    skip_bad_files: bool = False,
    init_from: str | Path | Model | None = None,
    fill_time: bool = False,
    on_event: EventHandler | None = None,
    should_stop: StopCheck | None = None,
    devices: int | None = None,
    **options: Any,
) -> Model:
    """Train a new model on `corpus` and return its best checkpoint.

    `corpus`: a UTF-8 text file, a folder (its files matching `glob`,
    default "**/*.txt"), or a list of them; each file is a document of its
    own. `val_file` (one or several files or folders) is the validation text
    instead of a held-out share (`val_fraction`); a training folder's files
    among it are left out of training. Files that are not UTF-8 text stop
    the run, each named, unless `skip_bad_files`. `init_from` (a run
    directory or checkpoint, or a Model) fine-tunes that model: its weights, with new
    characters added, a fresh optimizer and schedule, and a peak learning
    rate of FINE_TUNE_LEARNING_RATE (a new run's; see config.py for the
    measurements) unless one is given.

    `preset` ("tiny", "small", "medium", "large"; see `charlstm.presets`)
    sets the sizes the other arguments leave out; the model's shape is
    otherwise ModelConfig's defaults (or, with `init_from`, that model's).
    `options` are TrainConfig fields (steps=, batch_size=, seq_len=,
    learning_rate=, max_seconds=, patience=, ...); on a short text, the
    validation cadence, patience and dropout not given may be fitted to
    it as `charlstm train` fits them, said by a "short text" warning
    (`training/cadence.py`). `fill_time` trains for
    all of `max_seconds`: the step count is fitted to the time, more steps
    than the defaults' where they fit (a time limit alone only ever
    shortens a run). `on_event` receives the
    run's events (see `charlstm.training.events`): the corpus's reading,
    `Opened` once the run directory exists, then the loop's. `should_stop`
    is polled between steps, and when it returns True the run saves and
    stops (resume it later). `devices`: how many local devices to split the
    batch over (default: all). Raises TrainingDiverged if a loss, the
    gradients or the parameters stop being finite."""
    check_callbacks(on_event, should_stop)
    on_event = _warnings_after_opening(_warned_if_unwatched(on_event))
    if isinstance(init_from, Model):  # the model in hand: its checkpoint
        init_from = init_from.path
    for path in corpus if isinstance(corpus, list | tuple) else [corpus]:
        path_like(path, "corpus")
    for name, path in (("out", out), ("init_from", init_from)):
        if path is not None:
            path_like(path, flag(name))
    shape = {"hidden_size": hidden_size, "num_layers": num_layers, "embed_dim": embed_dim, "cell": cell, "norm": norm}
    given = {k: v for k, v in shape.items() if v is not None}
    if val_file is not None and "val_fraction" in options:
        raise ConfigError(
            f"give {flag('val_file')} or {flag('val_fraction')}, not both: with a validation file nothing is held out"
        )
    if init_from is not None and not Path(init_from).exists():  # before any warning about what it would keep
        raise ConfigError(f"{flag('init_from')} {init_from}: not found; give a run directory or a checkpoint")
    if init_from is not None and not Path(init_from).is_dir():  # a text given there by mistake, say
        raise ConfigError(f"{flag('init_from')} {init_from} is a file: give a run directory or a checkpoint")
    _check_fill_time(fill_time, options)
    chosen = set(options)  # the user's own, which a short text never overrides (training/cadence.py)
    tuned = init_from is not None and "learning_rate" not in options
    model, options = presets.apply(preset, given, options)
    asked = set(options)  # the training options given, or a preset's
    # Reading a checkpoint is a collective in a run of several processes: one
    # that reads a base the others do not read waits for them forever (a walkthrough, 2026-12-06).
    processes.agree({"init_from": init_from is not None})
    base = _base_run(Path(init_from)) if init_from is not None and on_event is not None else None
    if init_from is not None:
        model = given  # the shape is the base model's: only what was asked explicitly must match it
        if preset and base is not None and on_event is not None:
            _warn_of_preset(preset, given, base.model_config, tuned, on_event)
        if tuned:
            options["learning_rate"] = FINE_TUNE_LEARNING_RATE
    unknown = unknown_fields(options, TrainConfig, also=_TRAIN_KEYWORDS)
    if unknown:
        raise ConfigError(f"unknown training option: {unknown}")
    config = TrainConfig(**options)
    check_seed(config.seed)  # a new run's; a stored run keeps the seed it was trained with
    if base is not None and on_event is not None:
        _warn_of_regularisation(config, asked, base.train_config, on_event)
        # Saved as its run was interrupted before its first step; a fine-tune's holds its own base's weights.
        if base.step == 0 and (base.init_from is None or base.init_from.get("trained") is False):
            on_event(
                events.Warned(
                    0,
                    "fine-tune",
                    f"{flag('init_from')} {base.path} was saved at step 0, before its run trained: this run starts "
                    "from untrained weights, as a new one would (with its vocabulary)",
                )
            )
    # A batch the devices cannot share fails here, before any file is written.
    distributed.make_mesh(config.batch_size, devices)
    run, run_dir, shipped = session.new(
        corpus,
        out,
        model,
        config,
        glob=glob,
        val_file=val_file,
        skip_bad_files=skip_bad_files,
        init_from=init_from,
        on_event=on_event,
        chosen=chosen,
        fills_time=fill_time,
    )
    time_use: TimeUse = "fill" if fill_time else "limit"
    return _trained_model(run, run_dir, on_event, should_stop, devices, shipped=shipped, time_use=time_use)


def _check_fill_time(fill_time: bool, options: Mapping[str, Any]) -> None:
    """`fill_time` fits the steps to a time limit: it needs the limit, and
    a step count given as well would be silently overridden."""
    true_or_false(fill_time, "fill_time")
    if fill_time and options.get("max_seconds") is None:
        raise ConfigError(f"{flag('fill_time')} trains for all of a time limit: give {flag('max_seconds')} too")
    if fill_time and "steps" in options:
        raise ConfigError(
            f"{flag('fill_time')} fits the step count to {flag('max_seconds')}: give {flag('steps')} or "
            f"{flag('fill_time')}, not both"
        )


def _base_run(base: Path) -> checkpoint_meta.Meta | None:
    """The run a fine-tune starts from, as its warnings compare it, or None
    where it is not one (session.new says so)."""
    try:
        return checkpoint.describe(base)
    except CharlstmError:
        return None


# The fields of a model's size that every preset stands for: the sizes it
# sets, else the defaults' ("small" sets none); a preset's norm only where it sets one.
_SIZE_FIELDS = ("hidden_size", "num_layers", "embed_dim")


def _warn_of_preset(
    preset: str, given: Mapping[str, Any], kept: ModelConfig, tuned: bool, on_event: EventHandler
) -> None:
    """Say what of `preset` a fine-tune from a model shaped `kept` leaves
    out: the model sizes where they differ from the base model's (which is
    kept), and the learning rate where no --lr was given (a fine-tune starts
    lower)."""
    # A preset that leaves the size alone ("small") stands for the defaults' size.
    size = {**{k: getattr(ModelConfig, k) for k in _SIZE_FIELDS}, **presets.get(preset).model}
    sizes = {k: v for k, v in size.items() if k not in given and getattr(kept, k) != v}
    left_out = []
    if sizes:
        left_out.append(
            f"its model size ({', '.join(f'{flag(k)} {v}' for k, v in sizes.items())}) does not apply, as "
            f"{flag('init_from')} keeps the base run's model"
        )
    if tuned and "learning_rate" in presets.get(preset).train:
        left_out.append(
            f"its learning rate gives way to the fine-tuning one ({FINE_TUNE_LEARNING_RATE:g}; "
            f"{flag('learning_rate')} sets another)"
        )
    if left_out:
        on_event(events.Warned(0, "preset", f"{flag('preset')} {preset}: {'; '.join(left_out)}"))


def _warn_of_regularisation(config: TrainConfig, asked: set[str], trained: TrainConfig, on_event: EventHandler) -> None:
    """Say where a fine-tune's dropout and weight decay, a new run's unless
    given (or a preset's), differ from what the base run `trained` with (a
    base trained without dropout is fine-tuned with it, else, without a word)."""
    fields = [f for f in ("dropout", "weight_decay") if f not in asked and getattr(trained, f) != getattr(config, f)]
    if fields:
        now = " and ".join(f"{flag(f)} {getattr(config, f):g}" for f in fields)  # TrainConfig's defaults
        before = " and ".join(f"{getattr(trained, f):g}" for f in fields)
        on_event(
            events.Warned(
                0,
                "fine-tune",
                f"fine-tuning with {now}, a new run's, where the base run trained with {before}: "
                f"give {' and '.join(flag(f) for f in fields)} to choose",
            )
        )


# What `train` takes besides the configs' fields, which a resumed run keeps.
_SET_WHEN_STARTED = frozenset({"out", "preset", "glob", "val_file", "skip_bad_files", "init_from", "fill_time"})


@holding
def resume(
    run_dir: str | Path | Model,
    *,
    force: bool = False,
    on_event: EventHandler | None = None,
    should_stop: StopCheck | None = None,
    devices: int | None = None,
    corpus: str | Path | Sequence[str | Path] | None = None,
    **overrides: Any,
) -> Model:
    """Continue the run in `run_dir` from its latest checkpoint, exactly.

    `overrides` may change the fields in `training.run.RESUMABLE_FIELDS`
    (steps=, learning_rate=, max_seconds=, ...); `force` resumes even if
    the corpus file changed. `run_dir` may be a Model of the run. `devices`
    need not be the count the run started with: the batch only has to split
    evenly over it. `corpus`: where the
    run's corpus is now, if it was moved or renamed (a file or folder for
    each the run read, in order, then for each of its `val_file` ones if
    they moved apart); its text must still be the run's."""
    if isinstance(run_dir, Model):  # the model in hand: its run
        owner = checkpoint_paths.run_of(run_dir.path)
        if owner is None:
            raise ConfigError(f"{run_dir.path} is a checkpoint of its own, not a run's: there is no run to resume")
        run_dir = owner
    path_like(run_dir, "run_dir")
    force = true_or_false(force, "force")
    moved_to = paths_of(corpus, "corpus")
    check_callbacks(on_event, should_stop)
    started = sorted(set(overrides) & _SET_WHEN_STARTED)
    if started:  # train's own keywords: not unknown, nor "did you mean" a field resume cannot change either
        text = {"glob", "val_file", "skip_bad_files"} & set(started)
        raise ConfigError(
            f"{', '.join(started)}: train's, set when a run starts; resume keeps what the run started with"
            + ("; corpus= says where a moved text is now" if text else "")
        )
    unknown = unknown_fields(overrides, ModelConfig, TrainConfig)
    if unknown:  # before "cannot change" names a field that is not one
        raise ConfigError(f"unknown training option: {unknown}")
    path = Path(run_dir)
    on_event = _warnings_after_opening(_warned_if_unwatched(on_event))
    run = session.resumed_run(path, overrides, force=force, on_event=on_event, moved_to=moved_to)
    distributed.make_mesh(run.train_config.batch_size, devices, before=run.devices or 1)  # a resumed run's batch stands
    return _trained_model(run, path, on_event, should_stop, devices, resumed=True)


def with_warnings(on_event: EventHandler) -> EventHandler:
    """`on_event`, and what a caller should not miss raised as Python
    warnings besides (CharlstmWarning), as a run given no handler raises
    them: the run's warnings (health, schedule, validation) and the files
    it left out. A handler of one's own that prints progress in a notebook
    and passes over `Warned` events hid them (a walkthrough, 2026-12-06):
    `train(..., on_event=charlstm.with_warnings(show))` keeps both."""
    check(callable(on_event), f"on_event must be a function, got {on_event!r}")

    def both(event: events.Event) -> None:
        on_event(event)
        _warn_of(event)

    return both


def _warned_if_unwatched(on_event: EventHandler | None) -> EventHandler:
    """`on_event`; or, where none is given, Python warnings (CharlstmWarning)
    for what a caller should not miss: the run's warnings and the files it
    left out, which the command line shows on its display."""
    return on_event if on_event is not None else _warn_of


def _warn_of(event: events.Event) -> None:
    """A CharlstmWarning for `event` where it is one a caller should not miss."""
    text = f"step {event.step}: {event.message}" if isinstance(event, events.Warned) else events.left_out_line(event)
    if text is not None:
        warnings.warn(text, CharlstmWarning, stacklevel=_callers_level())


_PACKAGE = str(Path(__file__).resolve().parents[1])


def _callers_level() -> int:
    """The `stacklevel` that points a warning at the line of the caller's
    own code that called charlstm (its `train(...)`), past the library's
    frames: it pointed inside the library."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _warnings_after_opening(on_event: EventHandler | None) -> EventHandler | None:
    """`on_event`, with the warnings raised while a run is set up (a preset
    that does not apply, a resume's new schedule) held back until its
    `Opened` event has passed: a run's first line names its directory."""
    if on_event is None:
        return None
    handler = on_event
    held: list[events.Event] = []
    opened = False

    def handle(event: events.Event) -> None:
        nonlocal opened
        if not opened and isinstance(event, events.Warned):
            held.append(event)
            return
        handler(event)
        if isinstance(event, events.Opened):
            opened = True
            for warning in held:
                handler(warning)
            held.clear()

    return handle


def _trained_model(
    run: Run,
    run_dir: Path,
    on_event: EventHandler | None,
    should_stop: StopCheck | None,
    devices: int | None,
    *,
    resumed: bool = False,
    shipped: bool = False,
    time_use: TimeUse = "limit",
) -> Model:
    """Announce the run, train it (`session.train`) and load what it
    gives: its best checkpoint, or on divergence a TrainingDiverged that
    names the last good one."""
    if on_event is not None:
        params = count_params(run.state.params)
        base = None if resumed else run.init_from  # a resumed fine-tuned run is just resumed
        opened = events.Opened(
            run_dir, run.corpus.path, run.model_config, run.train_config, params, resumed, shipped, base
        )
        on_event(opened)
    finished = session.train(run, run_dir, on_event, should_stop, devices, time_use)
    if finished.reason == "diverged":
        try:
            directory, good_step = checkpoint.locate(run_dir, prefer=checkpoint.LATEST)
            last_good: Path | None = directory / str(good_step)
        except CheckpointError:  # diverged before its first save
            last_good, good_step = None, 0
        tc = run.train_config
        raise TrainingDiverged(finished.step, run_dir, tc.learning_rate, tc.steps, last_good, good_step)
    try:
        model = load(run_dir)
    except CheckpointError as err:  # the best checkpoint damaged (a disk error): training itself went well
        if on_event is not None:
            on_event(events.Warned(finished.step, "checkpoint", f"{err}; returning the latest checkpoint"))
        model = load(run_dir, prefer=checkpoint.LATEST)
    return dataclasses.replace(model, ended=finished.reason)


# train's own keyword arguments, which a misspelt option may have meant.
_TRAIN_KEYWORDS = tuple(name for name in inspect.signature(train).parameters if name != "options")
