"""The JSON half of a checkpoint: what `meta` records of a run, and reading
it back validated (`Meta`). A damaged or hand-edited file gives a
CheckpointError naming what is wrong, never a model of an absurd shape.
Orbax's side, the arrays and the directories, is `checkpoint.py`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from charlstm.config import ModelConfig, TrainConfig, from_dict, to_dict
from charlstm.errors import CheckpointError
from charlstm.text import manifest
from charlstm.text.vocab import Vocab
from charlstm.training.run import Run

FORMAT = "charlstm-checkpoint"
FORMAT_VERSION = 1


def _version() -> str:
    """The installed charlstm's version, recorded in every checkpoint."""
    try:
        return package_metadata.version("charlstm")
    except package_metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def metadata(run: Run, data_windows: int | None = None) -> dict[str, Any]:
    """What a checkpoint of `run` records as its JSON, now."""
    step = int(run.state.step)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "charlstm_version": _version(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "step": step,
        "model": to_dict(run.model_config),
        "train": to_dict(run.train_config),
        "vocab": run.vocab.chars,
        "corpus": run.corpus_entry,
        "best_val_loss": run.best_val_loss,
        "train_seconds": run.train_seconds,
        "history": run.history,
    }
    if run.init_from is not None:
        meta["init_from"] = run.init_from
    if run.devices is not None:
        meta["devices"] = run.devices
    if data_windows is not None:
        # Informational: the window is derived from the step (see text/streams.py).
        meta["data_position"] = {
            "pass": step // data_windows,
            "window": step % data_windows,
            "windows_per_pass": data_windows,
        }
    return meta


@dataclass(frozen=True)
class Meta:
    """What a checkpoint says of itself, validated: enough to describe it,
    rebuild its model and continue its run."""

    path: Path  # the step directory
    step: int
    model_config: ModelConfig
    train_config: TrainConfig
    vocab: Vocab
    corpus_path: str
    corpus_sha256: str
    best_val_loss: float | None
    train_seconds: float
    history: list[dict[str, float]]
    raw: dict[str, Any]  # the JSON object as stored (saved_at, charlstm_version, data_position, ...)
    corpus: dict[str, Any]  # what the run read and how it split it (text/manifest.py)
    init_from: dict[str, Any] | None  # the checkpoint a fine-tuned run started from
    # The devices the run last trained on (all processes); None where the
    # entry is unreadable. Checkpoints saved before it was recorded trained on one.
    devices: int | None


def check_format(meta: Any, where: Path) -> dict[str, Any]:
    """`meta`, the decoded JSON of the checkpoint at `where`, if it is a charlstm
    checkpoint of a format version this charlstm reads."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"not a charlstm checkpoint: {where}")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(
            f"checkpoint {where} has format version {version!r}, which no charlstm wrote (versions are whole "
            "numbers from 1): its metadata is damaged"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {where} has format version {version!r}; this charlstm reads up to "
            f"{FORMAT_VERSION}: upgrade charlstm to load it"
        )
    return meta


def to_meta(meta: dict[str, Any], where: Path) -> Meta:
    """`meta` read into a `Meta`, every field checked (a CheckpointError says what is wrong)."""
    model_config = from_dict(ModelConfig, meta["model"])
    train_config = from_dict(TrainConfig, meta["train"])
    vocab = Vocab(meta["vocab"])
    if vocab.size != model_config.vocab_size:
        raise CheckpointError(
            f"checkpoint {where} is inconsistent: {vocab.size} characters but a model for {model_config.vocab_size}"
        )
    if vocab.boundary_id != model_config.boundary_id:
        raise CheckpointError(f"checkpoint {where} is inconsistent: its vocabulary and model disagree on documents")
    corpus, init_from = meta["corpus"], meta.get("init_from")
    try:
        manifest.check_entry(corpus)
    except ValueError as err:
        raise CheckpointError(f"cannot read checkpoint {where}: {err}") from None
    if not isinstance(init_from, dict | None):
        raise CheckpointError(f"cannot read checkpoint {where}: its init_from entry is not an object")
    # A damaged configuration can describe an absurd model (a billion
    # layers), whose shape alone would take hours to build. No real
    # checkpoint comes near these limits.
    mc = model_config
    if mc.num_layers > 1024 or max(mc.hidden_size, mc.embed_dim) > 1 << 17 or mc.vocab_size > 1 << 21:
        raise CheckpointError(f"checkpoint {where} is invalid: its model is implausibly large ({mc})")
    step = meta["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"checkpoint {where} has an invalid step: {step!r}")
    return Meta(
        path=where,
        step=step,
        model_config=model_config,
        train_config=train_config,
        vocab=vocab,
        corpus_path=str(corpus["path"]),
        corpus_sha256=str(corpus["sha256"]),
        best_val_loss=finite_or_none(meta.get("best_val_loss"), "best_val_loss", where),
        train_seconds=finite_or_none(meta.get("train_seconds", 0.0), "train_seconds", where) or 0.0,
        history=_history(meta.get("history", []), where),
        raw=meta,
        corpus=corpus,
        init_from=init_from,
        devices=_devices(meta.get("devices", 1)),
    )


def _devices(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def finite_or_none(value: Any, name: str, where: Path) -> float | None:
    """A stored number that must be finite or null, as a float or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CheckpointError(f"checkpoint {where} has an invalid {name}: {value!r}")
    return float(value)


def _history(value: Any, where: Path) -> list[dict[str, float]]:
    ok = isinstance(value, list) and all(
        isinstance(entry, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in entry.values())
        for entry in value
    )
    if not ok:
        raise CheckpointError(f"checkpoint {where} has an invalid metrics history")
    return list(value)
