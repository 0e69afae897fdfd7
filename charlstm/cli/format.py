"""Number formats shared by everything that shows losses and times."""

from __future__ import annotations

from charlstm.units import bits


def loss_text(nats: float | None, digits: int = 3, unit: str = " bpc") -> str:
    """A loss in nats per character, with its bits per character."""
    return "-" if nats is None else f"{nats:.{digits}f} ({bits(nats):.{digits - 1}f}{unit})"


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
