"""Number formats shared by everything that shows losses and times."""

from __future__ import annotations

from charlstm.units import LN2


def loss_text(nats: float | None, digits: int = 3) -> str:
    """A loss in nats per character, with its bits per character."""
    return "-" if nats is None else f"{nats:.{digits}f} ({nats / LN2:.{digits - 1}f} bpc)"


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
