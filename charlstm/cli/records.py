"""What `--json` prints for `runs`, `eval` and `inspect`: plain dicts, one
JSON object each, for scripts. Nothing here prints."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from charlstm.introspect.features import FEATURES, UnitScore
from charlstm.introspect.record import SATURATED_HIGH, SATURATED_LOW, Inspection, Saturation
from charlstm.training.catalog import RunSummary
from charlstm.units import bits

if TYPE_CHECKING:
    from charlstm.core.scorer import Score


def run_record(r: RunSummary) -> dict[str, Any]:
    return {
        "run": str(r.path),
        "corpus": r.corpus,
        "corpus_sources": list(r.corpus_sources),  # every file and folder given, `corpus` first (none: unreadable)
        "model": r.model,
        "params": r.params,
        "step": r.step,
        "total_steps": r.total_steps,
        "state": None if r.state == "unreadable" else r.state,
        "best_val_loss": r.best_val_loss,
        "best_val_bpc": None if r.best_val_loss is None else bits(r.best_val_loss),
        "train_seconds": r.train_seconds,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(r.updated)),
        "problem": r.problem,
        "damaged_best": r.damaged_best,  # why its best checkpoint cannot be read, where it cannot
        "damaged_latest": r.damaged_latest,  # the same for its newest latest one (the row then is its best's)
        "worse_than_guessing": r.guessing is not None,  # its best validation loss above 1.1 ln(vocabulary size)
    }


def score_record(text_path: str, where: Path, score: Score) -> dict[str, Any]:
    return {
        "text": text_path,
        "checkpoint": str(where),
        "chars": score.chars,
        "skipped": sum(score.skipped.values()),
        "skipped_chars": dict(score.skipped),
        "skipped_share": score.skipped_share,
        "other_form": score.other_form,  # null, or what to do: most of those are the model's own in another form
        "loss": score.loss,
        "bits_per_char": score.bits_per_char,
        "perplexity": score.perplexity,
    }


def inspection_record(
    source: str,
    where: Path,
    inspection: Inspection,
    correlations: Mapping[str, Mapping[str, np.ndarray]],
    tops: Mapping[str, Sequence[UnitScore]],
    saturation: Saturation,
    page: Path,
) -> dict[str, Any]:
    """Everything the tables show, per unit, for scripts; correlations of a
    feature that does not vary in the text are null."""
    layers, _, hidden = inspection.h.shape
    return {
        "text": source,
        "checkpoint": str(where),
        "cell": inspection.cell,
        "layers": layers,
        "hidden": hidden,
        "chars": inspection.text_chars,
        "skipped": sum(inspection.skipped.values()),
        "skipped_chars": dict(inspection.skipped),
        "truncated": inspection.truncated,
        "loss": inspection.loss,
        "bits_per_char": inspection.bits_per_char,
        "page": str(page),
        "features": [
            {
                "name": f.name,
                "description": f.description,
                "top": [{"layer": s.layer, "quantity": s.quantity, "unit": s.unit, "r": s.r} for s in tops[f.name]],
            }
            for f in FEATURES
        ],
        # quantity -> feature -> [layer][unit]
        "correlations": {
            quantity: {name: _listed(r) for name, r in by_feature.items()}
            for quantity, by_feature in correlations.items()
        },
        "saturation_thresholds": [SATURATED_LOW, SATURATED_HIGH],
        # gate -> {"left": [layer][unit], "right": [layer][unit]}
        "saturation": {
            gate: {"left": _listed(left), "right": _listed(right)} for gate, (left, right) in saturation.items()
        },
    }


def _listed(values: np.ndarray) -> list[list[float | None]]:
    """(L, H) -> nested lists, 4 decimals, NaN as None (JSON null)."""
    return [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in values]
