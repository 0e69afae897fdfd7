"""Frozen, typed configuration for the model, training and sampling.

Configs are plain values: they are hashable (so a jitted function can close
over them), they round-trip through JSON (so checkpoints can describe
themselves), and they validate on construction (so a bad value is reported
once, clearly, before any work starts).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from charlstm.arguments import check, real_number, whole_number
from charlstm.errors import ConfigError
from charlstm.flags import flag, on_the_command_line

T = TypeVar("T")


CELLS = ("lstm", "gru")
NORMS = ("none", "layer")
# The norm a model gets when none is asked for: the layer-normalised cell for
# the LSTM (with dropout 0.2 it reached 1.302, without 1.342, against the
# plain cell's 1.352 in the 10-minute CPU benchmark, docs/benchmarks.md),
# none for the GRU, which has no layer-normalised form here.
AUTO_NORM = "auto"


# The longest sample, the widest layer: the compiled programs count
# characters and index sizes in 32 bits.
MAX_COUNT = 2**31 - 1
# Set while `from_dict` reads a saved config: checks added since runs were
# saved (`TrainConfig._check_new_numbers`) must not make them unreadable.
_READING_SAVED: contextvars.ContextVar[bool] = contextvars.ContextVar("_READING_SAVED", default=False)
# float32's smallest normal number: XLA's CPU code flushes smaller ones to 0.
FLOAT32_TINY = 1.1754944e-38
# Rows a server generates together: far past what a GPU's batch gains from.
MAX_BATCH = 65536


def _whole(config: Any, *names: str, optional: bool = False) -> None:
    """Refuse fields that must be whole numbers but are not; `optional` ones may also be None."""
    for name in names:
        value = getattr(config, name)
        if optional and value is None:
            continue
        object.__setattr__(config, name, whole_number(value, flag(name)))


def _real(config: Any, *names: str, optional: bool = False) -> None:
    """Refuse fields that must be numbers but are not; `optional` ones may also be None."""
    for name in names:
        value = getattr(config, name)
        if optional and value is None:
            continue
        object.__setattr__(config, name, real_number(value, flag(name)))


def _at_most(config: Any, limit: int, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        check(value <= limit, f"{flag(name)} must be at most {limit:,}, got {value:,}")


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape. Changing any of these makes a different model."""

    vocab_size: int
    embed_dim: int = 64
    hidden_size: int = 256
    num_layers: int = 2
    forget_bias: float = 1.0  # initial bias of the LSTM's forget gate, or the GRU's update gate
    cell: str = "lstm"  # "lstm" or "gru"
    # "layer": layer normalisation inside the LSTM cell (core/ln_lstm.py);
    # "auto" becomes "layer" for the LSTM and "none" for the GRU on construction.
    norm: str = AUTO_NORM
    # The id of the document boundary symbol (text/vocab.py) in a model of
    # several documents: reading it zeroes the recurrent state. None: no documents.
    boundary_id: int | None = None

    def __post_init__(self) -> None:
        if self.norm == AUTO_NORM:
            object.__setattr__(self, "norm", "layer" if self.cell == "lstm" else "none")
        _whole(self, "vocab_size", "embed_dim", "hidden_size", "num_layers")
        _whole(self, "boundary_id", optional=True)
        _real(self, "forget_bias")
        check(self.vocab_size >= 1, f"vocab_size must be >= 1, got {self.vocab_size}")
        check(self.embed_dim >= 1, f"{flag('embed_dim')} must be >= 1, got {self.embed_dim}")
        check(self.hidden_size >= 1, f"{flag('hidden_size')} must be >= 1, got {self.hidden_size}")
        check(self.num_layers >= 1, f"{flag('num_layers')} must be >= 1, got {self.num_layers}")
        _at_most(self, MAX_COUNT, "vocab_size", "embed_dim", "hidden_size")
        # A bias past this saturates its gate's sigmoid in float32 anyway; a
        # NaN or 1e300 (inf in float32) would make every loss NaN (a fuzzed
        # checkpoint's metadata loaded one, 2026-12-05).
        check(
            -100 <= self.forget_bias <= 100,
            f"{flag('forget_bias')} must be between -100 and 100, got {self.forget_bias}",
        )
        check(self.cell in CELLS, f"{flag('cell')} must be one of {', '.join(CELLS)}, got {self.cell!r}")
        check(self.norm in NORMS, f"{flag('norm')} must be one of {', '.join((AUTO_NORM, *NORMS))}, got {self.norm!r}")
        check(self.norm == "none" or self.cell == "lstm", f"{flag('norm')} layer works with {flag('cell')} lstm only")
        check(
            self.boundary_id is None or 0 <= self.boundary_id < self.vocab_size,
            f"boundary_id must be a vocabulary id (0 to {self.vocab_size - 1}) or None, got {self.boundary_id}",
        )

    def describe(self) -> str:
        """The model's shape in words, as reports show it: "2x256 LSTM"."""
        norm = " with layer norm" if self.norm == "layer" else ""
        return f"{self.num_layers}x{self.hidden_size} {self.cell.upper()}{norm}"


PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. `batch_size`, `seq_len`, `val_fraction` and
    `reset_chars` fix which characters each step reads, so a resumed run keeps them (see
    training.run.RESUMABLE_FIELDS for what may change)."""

    # Chosen so that the schedule ends inside a 10-minute run on a 2-core CPU
    # instead of being cut off; the README gives today's time (7 to 11
    # minutes, by the CPU), docs/benchmarks.md how it was measured.
    steps: int = 2300
    batch_size: int = 64
    seq_len: int = 64
    # Measured on the shipped corpus, 2x256, 10 CPU minutes (2026-11-24): 1e-2
    # reached 1.384 nats/char, 3e-3 1.434 and 2e-2 1.389 (docs/benchmarks.md).
    learning_rate: float = 1e-2
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    # Measured like the learning rate (3000 steps, 2026-11-24): 0.1 reached
    # 1.352, 0.02 1.367 and none 1.381; dropout 0.2 (alone) 1.356, 0.1 1.365.
    weight_decay: float = 0.1
    # On each recurrent layer's output, in training only. With layer norm, 0.2
    # reached 1.302 in 10 CPU minutes against 1.342 without (2026-11-25).
    dropout: float = 0.2
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    # Zero each stream's carried state every this many characters (staggered
    # across streams; 0: only when a pass over the text starts again).
    reset_chars: int = 1024
    eval_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 10
    max_seconds: float | None = None
    seed: int = 0
    # Stop after this many validation passes in a row without a new best
    # (None: train to `steps`); the best checkpoint is the one kept.
    patience: int | None = None
    # "bf16": the training step's matrix products in bfloat16 (accumulated in
    # float32), for GPUs, TPUs and CPUs with bfloat16 instructions; the
    # parameters, the optimizer, the cell state, the loss and validation stay
    # float32 (core/cells.py).
    precision: str = "fp32"

    @property
    def warmup_used(self) -> int:
        """The warm-up the schedule takes: `warmup_steps`, at most a tenth of
        the steps, or short runs (tests, quick tries) would spend most of
        their steps warming up."""
        return min(self.warmup_steps, self.steps // 10)

    def __post_init__(self) -> None:
        _whole(self, "steps", "batch_size", "seq_len", "warmup_steps", "reset_chars", "eval_every")
        _whole(self, "checkpoint_every", "log_every", "seed")
        _whole(self, "patience", optional=True)
        _real(self, "learning_rate", "min_lr_ratio", "weight_decay", "dropout", "grad_clip", "val_fraction")
        _real(self, "max_seconds", optional=True)
        check(self.steps >= 1, f"{flag('steps')} must be >= 1, got {self.steps}")
        check(self.batch_size >= 1, f"{flag('batch_size')} must be >= 1, got {self.batch_size}")
        check(self.seq_len >= 1, f"{flag('seq_len')} must be >= 1, got {self.seq_len}")
        # Not --steps: a time limit's plans may fit billions on a fast GPU, and checkpoints hold them.
        _at_most(self, MAX_COUNT, "batch_size", "seq_len")
        lr = self.learning_rate
        check(0 < lr < math.inf, f"{flag('learning_rate')} must be > 0 and finite, got {lr}")
        check(self.warmup_steps >= 0, f"{flag('warmup_steps')} must be >= 0, got {self.warmup_steps}")
        check(0 <= self.min_lr_ratio <= 1, f"{flag('min_lr_ratio')} must be in [0, 1], got {self.min_lr_ratio}")
        wd = self.weight_decay
        check(0 <= wd < math.inf, f"{flag('weight_decay')} must be >= 0 and finite, got {wd}")
        check(0 <= self.dropout < 1, f"{flag('dropout')} must be in [0, 1), got {self.dropout}")
        check(self.grad_clip > 0, f"{flag('grad_clip')} must be > 0 (inf: no clipping), got {self.grad_clip}")
        check(
            0 < self.val_fraction < 1,
            f"{flag('val_fraction')} must be strictly between 0 and 1, got {self.val_fraction}",
        )
        check(self.reset_chars >= 0, f"{flag('reset_chars')} must be >= 0, got {self.reset_chars}")
        check(self.eval_every >= 1, f"{flag('eval_every')} must be >= 1, got {self.eval_every}")
        check(
            self.checkpoint_every >= 1,
            f"{flag('checkpoint_every')} must be >= 1, got {self.checkpoint_every}",
        )
        check(self.log_every >= 1, f"{flag('log_every')} must be >= 1, got {self.log_every}")
        check(
            self.max_seconds is None or 0 < self.max_seconds < math.inf,
            f"{flag('max_seconds')} must be a finite number of minutes > 0, got {(self.max_seconds or 0) / 60:g} min "
            f"({self.max_seconds or 0:g} s)"
            if on_the_command_line()
            else f"max_seconds must be a finite number of seconds > 0, got {self.max_seconds}",
        )
        check(
            self.patience is None or self.patience >= 1,
            f"{flag('patience')} must be >= 1 validation passes{' (0: none)' * on_the_command_line()}, "
            f"got {self.patience}",
        )
        check(
            self.precision in PRECISIONS,
            f"{flag('precision')} must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
        )
        if not _READING_SAVED.get():  # after the checks above: they name a bad number alone
            self._check_new_numbers()

    def _check_new_numbers(self) -> None:
        """Checks added after runs were saved that break them: a checkpoint
        holding such numbers still reads (`from_dict`), and a resume, which
        builds its config anew, is refused until its --lr is changed."""
        lr, wd = self.learning_rate, self.weight_decay
        # The step computes in float32, where these are 0 (a run at --lr 1e-50
        # learned nothing, with status 0; a walkthrough, 2026-12-06).
        for name in ("learning_rate", "grad_clip"):
            value = getattr(self, name)
            check(
                not 0 < value < FLOAT32_TINY,
                f"{flag(name)} must be at least {FLOAT32_TINY:.2g}, got {value:g}: below that it is 0 in float32, "
                "in which the training step computes",
            )
        # AdamW takes lr x weight-decay of every weight matrix away at each
        # step, besides the gradient's update: from 1 on, it takes all of it
        # or more, and past 2 each step flips and grows every weight until
        # they overflow (--weight-decay 1000 at --lr 0.01 diverged at step
        # 20, and the advice to lower --lr went round in circles; a
        # walkthrough, 2026-12-06).
        check(
            lr * wd < 1,
            f"{flag('weight_decay')} {wd:g} with {flag('learning_rate')} {lr:g} would take {lr * wd:g}x each "
            "weight away at every step (AdamW subtracts lr x weight-decay x the weight): from 1x the weights "
            "collapse, and past 2x they swing and blow up; keep lr x weight-decay well below 1 (the "
            f"defaults: {TrainConfig.learning_rate:g} x {TrainConfig.weight_decay:g} = "
            f"{TrainConfig.learning_rate * TrainConfig.weight_decay:g})",
        )


# The peak learning rate of a run that starts from another's weights
# (`--init-from`) when none is given, whatever a preset says: a new run's.
# Measured (benchmarks/finetune.py, 2026-12-01, 2-core CPU, 300 steps on
# Python source from a Shakespeare model, 2 seeds): 1e-2 ended 0.067
# nats/char below training from scratch, while the lower rates this was
# first set to lost to it (3e-3 by 0.028, 1e-3 by 0.204). A lower rate keeps
# more of the old text (Shakespeare at 1.77 after 1e-3, 2.29 after 1e-2).
FINE_TUNE_LEARNING_RATE = 1e-2
# Validation passes without a new best after which a new run on a short
# text stops, where no --patience was given (training/cadence.py).
SHORT_TEXT_PATIENCE = 10
# The dropout of a new model on a text it reads 35 times or more, where none
# was given; less on one read fewer times (training/cadence.py).
SHORT_TEXT_DROPOUT = 0.5


# Enough for any separator a user would stop at, and small enough that
# looking for them after every piece of text costs nothing.
MAX_STOPS = 16
MAX_STOP_CHARS = 256
# The seeds jax.random.PRNGKey tells apart without 64-bit integers: it keeps
# a seed's low 32 bits, so 2**32 gave seed 0's text and -1 that of 2**32 - 1.
SEEDS = (-(2**31), 2**31 - 1)
# Far past any useful setting (at 100 every character is all but equally
# likely); infinity would be uniform noise, by a division that hides it.
MAX_TEMPERATURE = 100.0


def check_seed(seed: int) -> None:
    """A seed that no other seed stands for (see SEEDS)."""
    low, high = SEEDS
    check(low <= seed <= high, f"{flag('seed')} must be from {low} to {high}, got {seed}")


@dataclass(frozen=True)
class SampleConfig:
    """How to generate text from a trained model.

    Filtering applies in this order: temperature, then top-k, then top-p."""

    length: int = 1000
    temperature: float = 1.0  # 0 means greedy: always the most likely character
    prime: str = ""
    seed: int = 0
    top_k: int = 0  # keep only the k most likely characters; 0 keeps all
    top_p: float = 1.0  # keep the fewest most likely characters holding this much probability; 1 keeps all
    num_samples: int = 1  # independent samples, generated together (generation.ROW_GROUP at a time)
    # End a sample at the first occurrence of any of these texts in what it
    # generates (the stop text itself is left out); () never stops early.
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _whole(self, "length", "seed", "top_k", "num_samples")
        _real(self, "temperature", "top_p")
        check(isinstance(self.prime, str), f"{flag('prime')} must be a text, got {self.prime!r}")
        check(self.length >= 1, f"{flag('length')} must be >= 1, got {self.length}")
        _at_most(self, MAX_COUNT, "length")
        check(self.temperature >= 0, f"{flag('temperature')} must be > 0 (or 0 for greedy), got {self.temperature}")
        check(
            self.temperature <= MAX_TEMPERATURE,
            f"{flag('temperature')} must be at most {MAX_TEMPERATURE:g}, got {self.temperature}",
        )
        check(self.top_k >= 0, f"{flag('top_k')} must be >= 0, got {self.top_k}")
        # p = 0 would keep nothing; NaN fails the comparison and is refused too.
        check(0 < self.top_p <= 1, f"{flag('top_p')} must be in (0, 1], got {self.top_p}")
        check(self.num_samples >= 1, f"{flag('num_samples')} must be >= 1, got {self.num_samples}")
        check_seed(self.seed)
        if isinstance(self.stop, str):  # one text, as Model.sample and the server take it: never its characters
            object.__setattr__(self, "stop", (self.stop,))
        check(isinstance(self.stop, Iterable), f"{flag('stop')} must be a list of texts, got {self.stop!r}")
        object.__setattr__(self, "stop", tuple(self.stop))  # a list from JSON or a caller: frozen like the rest
        check(all(isinstance(s, str) for s in self.stop), f"{flag('stop')} must be texts, got {list(self.stop)!r}")
        check(len(self.stop) <= MAX_STOPS, f"at most {MAX_STOPS} {flag('stop')} texts, got {len(self.stop)}")
        check(all(self.stop), f"{flag('stop')} must not be empty: an empty text would end every sample at once")
        longest = max(map(len, self.stop), default=0)
        check(longest <= MAX_STOP_CHARS, f"a {flag('stop')} text is at most {MAX_STOP_CHARS} characters, got {longest}")


@dataclass(frozen=True)
class ServeConfig:
    """What `charlstm serve` allows a request, and how it batches them."""

    max_length: int = 4000  # characters a sample may ask for
    max_samples: int = 16  # samples (n) one request may ask for
    max_body_bytes: int = 65536  # a request's JSON body
    timeout_s: float = 120.0  # a request still generating after this is ended (408)
    max_batch: int = 64  # rows generated together in one compiled call
    chunk: int = 32  # characters per call: how often rows can join or leave, and stream
    max_waiting: int = 512  # rows queued to join the batch; more and requests get 503

    def __post_init__(self) -> None:
        counts = ("max_length", "max_samples", "max_body_bytes", "max_batch", "chunk", "max_waiting")
        _whole(self, *counts)
        _real(self, "timeout_s")
        for name in counts:
            value = getattr(self, name)
            check(value >= 1, f"{flag(name)} must be >= 1, got {value}")
        # Past these the server started, then failed every request (a walkthrough, 2026-12-06).
        _at_most(self, MAX_COUNT, "max_length", "chunk", "max_waiting", "max_body_bytes")
        _at_most(self, MAX_BATCH, "max_batch")
        check(  # inf: a request's deadline would never come, and the drain on SIGTERM could not be timed
            0 < self.timeout_s < math.inf,
            f"{flag('timeout_s')} must be a finite number of seconds > 0, got {self.timeout_s}",
        )
        check(
            self.max_samples <= self.max_batch,
            f"{flag('max_samples')} ({self.max_samples}) must be at most {flag('max_batch')} ({self.max_batch}): "
            "a request's samples are generated together",
        )
        check(
            self.max_samples <= self.max_waiting,
            f"{flag('max_samples')} ({self.max_samples}) must be at most {flag('max_waiting')} ({self.max_waiting}): "
            "a request's samples wait together to join the batch",
        )


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "float | None": (int, float, type(None)),
    "int | None": (int, type(None)),
    "str": (str,),
}


# Fields added since checkpoint format 1 first shipped, with the value that
# reproduces how a run saved without them was trained (resuming it must read
# exactly what it would have read), not today's default.
_LEGACY: dict[str, dict[str, Any]] = {
    "ModelConfig": {"cell": "lstm", "norm": "none", "boundary_id": None},
    "TrainConfig": {"reset_chars": 0, "dropout": 0.0, "patience": None, "precision": "fp32"},
}


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: Any) -> T:
    """Build a config from untrusted JSON, rejecting unknown or mistyped keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{cls.__name__} has unknown fields: {', '.join(unknown)}")
    legacy = _LEGACY.get(cls.__name__, {})
    missing = sorted(set(fields) - set(data) - set(legacy))
    if missing:
        raise ConfigError(f"{cls.__name__} lacks fields: {', '.join(missing)}")
    data = {**{k: v for k, v in legacy.items() if k not in data}, **data}
    for name, value in data.items():
        expected = str(fields[name].type)  # the annotation's text: "int", "float", "float | None"
        # JSON has no int/bool distinction Python respects (True is an int), so refuse bools outright.
        if isinstance(value, bool) or not isinstance(value, _JSON_TYPES[expected]):
            raise ConfigError(f"{cls.__name__}.{name} should be {expected}, got {value!r}")
    with as_saved():
        return cls(**data)


@contextlib.contextmanager
def as_saved() -> Iterator[None]:
    """Configs made inside are read as a saved run's: without the checks
    added since runs were saved (`TrainConfig._check_new_numbers`)."""
    reading = _READING_SAVED.set(True)
    try:
        yield
    finally:
        _READING_SAVED.reset(reading)
