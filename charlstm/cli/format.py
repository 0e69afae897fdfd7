"""Formats shared by everything that shows losses, times and skipped characters (a skipped file's line is
`events.left_out_line`, which a Python caller's warnings say too)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from charlstm.errors import named_char
from charlstm.flags import label
from charlstm.training.health import best_pass
from charlstm.units import bits, fixed

if TYPE_CHECKING:
    from charlstm.api.model import Model
    from charlstm.config import TrainConfig


def param_count(n: int) -> str:
    """A parameter count in a few characters: 1.05M, 0.23M, 3.36k, 810 (a
    tiny model's 3,360 read 0.00M; a walkthrough, 2026-12-06)."""
    if n >= 9_995:
        return f"{n / 1e6:.2f}M"
    if n >= 1000:
        return f"{n / 1e3:.3g}k"
    return str(n)


def loss_text(nats: float | None, digits: int = 3, unit: str = " bpc") -> str:
    """A loss in nats per character, with its bits per character."""
    return "-" if nats is None else f"{fixed(nats, digits)} ({fixed(bits(nats), digits - 1)}{unit})"


def checkpoint_text(model: Model) -> str:
    """The checkpoint a command reads, as sample and export name it: "PATH
    (step N, validation loss X)", and the run's best beside it where that
    was another step's (a latest checkpoint named, or the best one damaged)."""
    best = model.best_val_loss
    if model.step == 0 and not (model.init_from or {}).get("trained", model.init_from is not None):
        return f"{model.path} (step 0: saved before its run trained, so it writes noise)"
    if best is None:
        return f"{model.path} (step {model.step})"
    own = next((h["val_loss"] for h in model.history if int(h["step"]) == model.step), None)
    best_at = best_pass(model.history)
    if best_at is None:
        return f"{model.path} (step {model.step}, the run's best validation loss {fixed(best, 3)})"
    best_step = int(model.history[best_at]["step"])
    if best_step == model.step:
        return f"{model.path} (step {model.step}, validation loss {fixed(best if own is None else own, 3)})"
    here = "not validated" if own is None else f"validation loss {fixed(own, 3)}"
    return f"{model.path} (step {model.step}, {here}; the run's best {fixed(best, 3)} at step {best_step})"


def size(n: float) -> str:
    """A number of bytes in B, KB, MB or GB (powers of 1,000)."""
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def trial_seconds(seconds: float) -> str:
    """A tune trial's training time: to a tenth of a second under a minute,
    where trials on one time budget differ by a step or so."""
    return f"{seconds:.1f}s" if seconds < 60 else duration(seconds)


def skipped_text(skipped: Mapping[str, int], most: int = 10) -> str:
    """Characters left out (not in the vocabulary), the most frequent first,
    each with its count; past `most`, how many more there are."""
    ranked = sorted(skipped.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{named_char(c)} x{n}" for c, n in ranked[:most])
    rest = ranked[most:]
    return shown if not rest else f"{shown} and {len(rest)} more ({sum(n for _, n in rest):,} occurrences)"


def setting(field: str, value: object) -> str:
    """A training option as the command line spells it: `lr=0.01`, `max-time=10min`."""
    if field == "max_seconds" and isinstance(value, int | float):
        value = f"{value / 60:g}min"  # --max-time is given in minutes
    return f"{label(field).replace('_', '-')}={'none' if value is None else value}"  # as --help's defaults say it


def training_options(config: TrainConfig) -> list[str]:
    """Every training option, as `setting` spells it; the warm-up with what
    the schedule takes of it, where --warmup is more than a tenth of the steps."""
    shown = []
    for field, value in dataclasses.asdict(config).items():
        text = setting(field, value)
        if field == "warmup_steps" and value != config.warmup_used:
            text += f" ({config.warmup_used} used)"
        shown.append(text)
    return shown
