"""Simple features of a text, and the units whose state follows them.

Karpathy, Johnson and Fei-Fei ("Visualizing and Understanding Recurrent
Networks", 2015) found cells in character LSTMs that track quotes, brackets
and the position in a line. `charlstm inspect` looks for such units
automatically: it correlates every unit's c and h (h alone for a GRU) with
each feature below over the text it read, and ranks the units by the size of
the correlation.

Every feature is a number per character, taken after reading it (the same
convention as the recorded states):

    in_quotes      1 inside a "double-quoted" or “curly-quoted” span, the
                   opening quote included and the closing one not
    in_brackets    1 inside (), [] or {}, at any depth (opening bracket
                   included, the closing one of the outermost pair not)
    line_position  characters read since the last newline (0 at a newline)
    line_start     1 at a newline: the next character starts a line
    in_word        1 at a letter
    in_caps_word   1 in a word of two or more letters, all capitals (a
                   speaker's name such as HAMLET)

A feature that is constant over the text (no quotes at all, say) has no
correlation, and no top units.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from charlstm.introspect.record import Inspection
from charlstm.text.vocab import code_points


def _last_index(marks: np.ndarray) -> np.ndarray:
    """(N,) bool -> (N,) index of the latest mark at or before each position, -1 if none."""
    return np.maximum.accumulate(np.where(marks, np.arange(len(marks)), -1))


def in_quotes(text: str) -> np.ndarray:
    points = code_points(text)
    # A straight quote both opens and closes, so it toggles; curly quotes say which they are.
    straight = np.cumsum(points == ord('"')) % 2 == 1
    opening, closing = points == 0x201C, points == 0x201D
    last = _last_index(opening | closing)
    curly = (last >= 0) & opening[np.maximum(last, 0)]
    return (straight | curly).astype(np.float64)


def in_brackets(text: str) -> np.ndarray:
    depth, values = 0, np.zeros(len(text))
    for t, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)  # a stray closer does not make the depth negative
        values[t] = depth > 0
    return values


def line_position(text: str) -> np.ndarray:
    newline = code_points(text) == ord("\n")
    return (np.arange(len(text)) - _last_index(newline)).astype(np.float64)


def line_start(text: str) -> np.ndarray:
    return (code_points(text) == ord("\n")).astype(np.float64)


def in_word(text: str) -> np.ndarray:
    # A letter, or a mark on one: Devanagari and Thai vowel signs, a virama,
    # Arabic and Hebrew points are part of their words, not gaps in them
    # (isalpha alone split Hindi words into pieces; a walkthrough, 2026-12-06).
    return np.fromiter((ch.isalpha() or unicodedata.category(ch)[0] == "M" for ch in text), np.float64, len(text))


def in_caps_word(text: str) -> np.ndarray:
    values = np.zeros(len(text))
    for word in re.finditer(r"[^\W\d_]{2,}", text):
        if word.group().isupper():
            values[word.start() : word.end()] = 1.0
    return values


@dataclass(frozen=True)
class Feature:
    name: str
    description: str  # short, for tables and the page; the module docstring has the details
    values: Callable[[str], np.ndarray]  # text (N characters) -> (N,) float64


FEATURES: tuple[Feature, ...] = (
    Feature("in_quotes", "inside double quotes", in_quotes),
    Feature("in_brackets", "inside (), [] or {}", in_brackets),
    Feature("line_position", "characters since the newline", line_position),
    Feature("line_start", "at a newline", line_start),
    Feature("in_word", "at a letter", in_word),
    Feature("in_caps_word", "in an ALL-CAPITALS word", in_caps_word),
)


@dataclass(frozen=True)
class UnitScore:
    layer: int
    quantity: str  # "c" or "h"
    unit: int
    r: float  # Pearson correlation of the unit's quantity with the feature

    @property
    def label(self) -> str:
        return f"L{self.layer} {self.quantity}{self.unit}"


def pearson(series: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """series (N, K) and feature (N,) -> (K,) correlations; NaN for every
    column when the feature is constant, 0 for a constant column."""
    x = series.astype(np.float64) - series.mean(axis=0, dtype=np.float64)  # (N, K)
    y = feature - feature.mean()  # (N,)
    y_norm = np.sqrt(y @ y)
    if y_norm == 0:
        return np.full(series.shape[1], np.nan)
    x_norm = np.sqrt((x * x).sum(axis=0))  # (K,)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (y @ x) / (x_norm * y_norm)
    return np.where(x_norm > 0, r, 0.0)


# Characters below which the units' correlations are said to be mostly chance.
SHORT_FOR_CORRELATION = 1_000


def chance_r(units: int, chars: int) -> float:
    """About the strongest |r| that `units` unrelated units reach by chance
    over `chars` characters: sqrt(2 ln K / N), the largest of K correlations
    whose spread is 1/sqrt(N) each (0.12 for 1,024 units over 1,000
    characters; 1 over a handful, where every unit correlates perfectly
    with something)."""
    return min(1.0, math.sqrt(2 * math.log(max(units, 2)) / max(chars, 1)))


def correlations(inspection: Inspection) -> dict[str, dict[str, np.ndarray]]:
    """quantity ("c", "h"; "h" alone for a GRU) -> feature name -> (L, H)
    Pearson correlations over the text; NaN where the feature is constant."""
    values = {f.name: f.values(inspection.text) for f in FEATURES}  # name -> (N,)
    out: dict[str, dict[str, np.ndarray]] = {}
    for quantity, states in inspection.states.items():  # (L, N, H)
        layers, n, hidden = states.shape
        flat = states.transpose(1, 0, 2).reshape(n, layers * hidden)  # (N, L*H)
        out[quantity] = {name: pearson(flat, v).reshape(layers, hidden) for name, v in values.items()}
    return out


def top_units(corr: dict[str, dict[str, np.ndarray]], k: int) -> dict[str, list[UnitScore]]:
    """feature name -> the k units whose c or h correlates most strongly
    with it (by |r|, either sign), strongest first; [] for a feature that
    does not vary over the text."""
    tops: dict[str, list[UnitScore]] = {}
    for feature in FEATURES:
        scored = [
            UnitScore(layer, quantity, unit, float(r))
            for quantity, by_feature in corr.items()
            for (layer, unit), r in np.ndenumerate(by_feature[feature.name])
            if not np.isnan(r)
        ]
        scored.sort(key=lambda s: -abs(s.r))  # stable: ties keep the c, h, layer, unit order
        tops[feature.name] = scored[:k]
    return tops
