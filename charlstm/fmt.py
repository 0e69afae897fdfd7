"""Number formats shared by everything that shows losses and times."""

from __future__ import annotations

import math

LN2 = math.log(2.0)


def loss_text(nats: float | None, digits: int = 3) -> str:
    """A loss in nats per character, with its bits per character."""
    return "-" if nats is None else f"{nats:.{digits}f} ({nats / LN2:.{digits - 1}f} bpc)"


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# How a searched value is labelled (`charlstm tune`): its command-line name.
OPTION_NAMES = {"learning_rate": "lr", "hidden_size": "hidden", "num_layers": "layers", "seq_len": "seq-len"}


def point_text(point: dict[str, float]) -> str:
    """A search point as the options that would train it: `--lr 0.004 --hidden 256`."""
    return " ".join(f"--{OPTION_NAMES.get(k, k)} {v:g}" for k, v in point.items())
