"""Losses are kept in nats per character; people also read bits per character."""

from __future__ import annotations

import math

LN2 = math.log(2.0)


def bits(nats: float) -> float:
    """A loss in nats per character as bits per character."""
    return nats / LN2
