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
