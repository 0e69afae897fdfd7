"""The page `charlstm inspect` writes: one self-contained HTML file.

The CSS and the script live in the template `page.html` beside this
module; this module fills in the data, one JSON object in a
`<script type="application/json">` element. Nothing is fetched: the page
opens offline in any browser.

The text never becomes markup. The JSON escapes `<`, `>` and `&` as \\u003c,
\\u003e and \\u0026, so not even `</script>` in the text can end the data
element, and the script puts the characters on the page with textContent.

Size: each activation is one byte, scaled to its unit's range over the text
(at most 1/510 of that range off), base64-encoded: 4/3 bytes per value, so
1.33 x Q x L x H x N bytes for Q quantities (6 for an LSTM: c, h, i, f,
g, o; 4 for a GRU: h, r, u, n), L layers of H units and N characters; 8.2 MB
for a 2x256 LSTM over 2,000 characters.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from charlstm.errors import first_few, named_char
from charlstm.flags import flag
from charlstm.introspect import features
from charlstm.introspect.features import FEATURES, UnitScore
from charlstm.introspect.record import LABELS, SIGMOID_GATES, Inspection, Saturation
from charlstm.text.saving import save_whole
from charlstm.units import LN2

DATA_MARKER = "__CHARLSTM_DATA__"
TOP_PREDICTIONS = 5
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def render_page(
    inspection: Inspection, tops: Mapping[str, Sequence[UnitScore]], *, source: str, checkpoint: str
) -> str:
    """The HTML page for `inspection`, with `tops` (feature name -> top
    units) listed and `source` (where the text came from) and `checkpoint`
    named in its header."""
    template = resources.files("charlstm.introspect").joinpath("page.html").read_text(encoding="utf-8")
    # Characters named as `charlstm sample` names them (JSON.stringify showed a
    # joiner as "" and set a vowel sign on the quote; a walkthrough, 2026-12-06).
    named = resources.files("charlstm.introspect").joinpath("named.js").read_text(encoding="utf-8")
    template = template.replace(NAMED_MARKER, named.strip())
    before, marker, after = template.partition(DATA_MARKER)
    assert marker and DATA_MARKER not in after, "the page template must hold the data marker once"
    return before + script_json(page_data(inspection, tops, source=source, checkpoint=checkpoint)) + after


def write_page(
    path: Path, inspection: Inspection, tops: Mapping[str, Sequence[UnitScore]], *, source: str, checkpoint: str
) -> Path:
    page = render_page(inspection, tops, source=source, checkpoint=checkpoint)
    save_whole(path, page)  # a failed write leaves an earlier page as it was
    return path


@dataclass(frozen=True)
class Report:
    """What `charlstm inspect` shows of an inspection: its page, and the
    figures its tables list."""

    page: Path
    correlations: dict[str, dict[str, np.ndarray]]  # quantity ("c", "h") -> feature -> (L, H); NaN if constant
    tops: dict[str, list[UnitScore]]  # feature -> its `top` strongest units, strongest first
    saturation: Saturation  # sigmoid gate -> (left, right) fractions, each (L, H)


def report(path: Path, inspection: Inspection, *, top: int, source: str, checkpoint: str) -> Report:
    """The features' correlations, the `top` units of each, the gates'
    saturation, and the page at `path` that shows them."""
    correlations = features.correlations(inspection)
    tops = features.top_units(correlations, top)
    written = write_page(path, inspection, tops, source=source, checkpoint=checkpoint)
    return Report(written, correlations, tops, inspection.saturation())


NAMED_MARKER = "/* __CHARLSTM_NAMED__: charlstm/introspect/named.js, the function `named` */"
WRITER_CSS_MARKER = "/* __CHARLSTM_WRITER_CSS__: charlstm/introspect/writer.css, the writing pages' look */"
KEYS_MARKER = "/* __CHARLSTM_KEYS__: charlstm/introspect/keys.js, the function `pressWithKeys` */"
UNKNOWN_MARKER = "/* __CHARLSTM_UNKNOWN__: charlstm/introspect/unknown.js, the function `unknownLine` */"
NUMBERS_MARKER = "/* __CHARLSTM_NUMBERS__: charlstm/introspect/numbers.js, the function `tooSmallToTell` */"


def writing_page(template: str) -> str:
    """`template`, a page that writes with a model (the exported page, the
    server's), with what the two share where its markers stand: their look
    (writer.css), the script function `named` (named.js: a character as
    `charlstm sample` names it), the line a prime's unknown characters get
    (unknown.js, the Unicode form the model knows them in among it), the
    check that a number box is not too small to tell from 0 (numbers.js)
    and their keys (keys.js). One copy of each for both, each page still
    self-contained."""
    shared = (
        (WRITER_CSS_MARKER, "writer.css"),
        (NAMED_MARKER, "named.js"),
        (UNKNOWN_MARKER, "unknown.js"),
        (NUMBERS_MARKER, "numbers.js"),
        (KEYS_MARKER, "keys.js"),
    )
    for marker, name in shared:
        if marker not in template:
            raise ValueError(f"the page template has no place for {name}")
        code = resources.files("charlstm.introspect").joinpath(name).read_text(encoding="utf-8")
        template = template.replace(marker, code.strip())
    return template


def script_json(data: Any) -> str:
    """JSON that is safe inside a script element: no `<`, `>` or `&` at all."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    for ch, escape in _ESCAPES.items():
        text = text.replace(ch, escape)
    return text


def page_data(
    inspection: Inspection, tops: Mapping[str, Sequence[UnitScore]], *, source: str, checkpoint: str
) -> dict[str, Any]:
    layers, _, hidden = inspection.h.shape
    top_ids, top_p = inspection.top_predictions(TOP_PREDICTIONS)  # (N, k) each
    return {
        "title": f"charlstm inspect: {source}",
        "summary": _summary(inspection, checkpoint),
        "text": inspection.text,
        "vocab": inspection.vocab.chars,
        "cell": inspection.cell,
        "layers": layers,
        "hidden": hidden,
        "quantities": [_quantity(name, values, inspection.cell) for name, values in inspection.quantities.items()],
        "bits": _rounded(inspection.losses / LN2, 4),  # (N - 1,)
        "top_ids": top_ids.tolist(),
        "top_p": _rounded(top_p, 3),
        # r to the 2 digits the page shows: rounded once, here, as the CLI's
        # table rounds it (a second rounding in the page moved some by 0.01).
        "features": [
            {
                "name": f.name,
                "description": f.description,
                "top": [
                    {"layer": s.layer, "quantity": s.quantity, "unit": s.unit, "r": round(s.r, 2)}
                    for s in tops.get(f.name, [])
                ],
            }
            for f in FEATURES
        ],
    }


def _summary(inspection: Inspection, checkpoint: str) -> str:
    n = inspection.text_chars
    lines = [
        f"checkpoint {checkpoint}: {inspection.model}",
        f"{n:,} characters, {inspection.bits_per_char:.3f} bits per character "
        f"({inspection.loss:.4f} nats) predicting each from the ones before it",
    ]
    if inspection.skipped:
        # Named, as eval names them: the text shown is the text without them (a walkthrough, 2026-12-06).
        ranked = sorted(inspection.skipped.items(), key=lambda kv: -kv[1])
        names = first_few([f"{named_char(c)} x{n:,}" for c, n in ranked], 10)
        lines.append(f"{sum(inspection.skipped.values()):,} characters the model never saw were left out: {names}")
    if inspection.truncated:
        lines.append(f"{inspection.truncated:,} characters after these were not read ({flag('max_chars')})")
    return "\n".join(lines)


def _quantity(name: str, values: np.ndarray, cell: str) -> dict[str, Any]:
    """values (L, N, H) -> one byte per value, each unit scaled to its own range."""
    # Rounded outward, so that every value stays inside the range the page is told.
    lo = np.floor(values.min(axis=1).astype(np.float64) * 1e4) / 1e4  # (L, H)
    hi = np.ceil(values.max(axis=1).astype(np.float64) * 1e4) / 1e4  # (L, H)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (values.astype(np.float64) - lo[:, None, :]) / span[:, None, :] * 255  # (L, N, H)
    data = np.clip(np.rint(scaled), 0, 255).astype(np.uint8).transpose(0, 2, 1)  # (L, H, N): a unit's series contiguous
    if name == "c":
        kind = "cell"
    elif name in SIGMOID_GATES[cell]:
        kind = "gate"
    else:
        kind = "tanh"  # h and the candidates g, n lie in (-1, 1)
    return {
        "name": name,
        "label": LABELS[name],
        "kind": kind,
        "lo": lo.ravel().tolist(),  # (L * H,)
        "hi": hi.ravel().tolist(),
        "data": base64.b64encode(np.ascontiguousarray(data).tobytes()).decode("ascii"),
    }


def _rounded(values: np.ndarray, digits: int) -> Any:
    return np.round(values.astype(np.float64), digits).tolist()
