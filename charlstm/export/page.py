"""The page `charlstm export --html` writes: one HTML file that runs the model.

The template `page.html` beside this module holds the CSS and the script: a
forward pass of the LSTM, layer-normalised LSTM and GRU cells in JavaScript
(float64 arithmetic on the float32 or float16 weights), the sampler
(temperature, top-k, top-p, a seeded generator) and the controls. This
module fills in the model: one JSON object in a `<script
type="application/json">` element, with the weights as one base64 string of
little-endian floats.

Nothing is fetched: the page opens from file:// with no network. Its
Content-Security-Policy allows no connection at all and only its own script
(named by its sha256), so even a `<script>` that got into the page some other
way would not run. The vocabulary and summary are escaped as the inspect
page's data is (`introspect.page.script_json`: no `<`, `>` or `&`), and the
script puts text on the page with textContent only.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import numpy as np

from charlstm.config import ModelConfig
from charlstm.core.generation import default_prime
from charlstm.core.model import count_params
from charlstm.errors import CharlstmError
from charlstm.export.weights import LAYER_NORM_EPSILON, named_tensors
from charlstm.flags import flag
from charlstm.introspect.page import script_json, writing_page
from charlstm.text.saving import save_whole
from charlstm.text.vocab import Vocab

MODEL_MARKER = "__CHARLSTM_MODEL__"
HASH_MARKER = "__CHARLSTM_SCRIPT_HASH__"
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)  # the page's one executable script


@dataclass(frozen=True)
class ExportedPage:
    path: Path
    bytes: int  # of the whole page
    weight_bytes: int  # of the weights before base64
    dtype: str  # "f32" or "f16"
    parameters: int


def render_page(
    config: ModelConfig, vocab: Vocab, params: Mapping[str, Any], *, half: bool, title: str, summary: str
) -> str:
    """The page: its template with the model's data and its script's hash filled in."""
    largest = float(np.finfo(np.float16).max)
    # Checked before the cast, which would warn of the overflow it makes (NaN fails the test too).
    if half and any(not np.all(np.abs(np.asarray(a)) <= largest) for a in jax.tree_util.tree_leaves(params)):
        raise CharlstmError(f"some weights do not fit in float16 (beyond +-65504): export without {flag('half')}")
    tensors = named_tensors(params, "<f2" if half else "<f4")
    offset, table = 0, []
    for name, array in tensors.items():
        table.append({"name": name, "shape": list(array.shape), "offset": offset, "size": int(array.size)})
        offset += int(array.size)
    blob = b"".join(a.tobytes() for a in tensors.values())
    data = {
        "title": title,
        "summary": summary,
        "config": {
            "cell": config.cell,
            "norm": config.norm,
            "num_layers": config.num_layers,
            "hidden_size": config.hidden_size,
            "embed_dim": config.embed_dim,
            # A model of several documents: the symbol that starts one from a zero state.
            "boundary_id": config.boundary_id,
        },
        "vocab": vocab.chars,
        "default_prime": default_prime(vocab),
        "layer_norm_epsilon": LAYER_NORM_EPSILON,
        "dtype": "f16" if half else "f32",
        "tensors": table,
        "weights": base64.b64encode(blob).decode("ascii"),
    }
    template = writing_page(resources.files("charlstm.export").joinpath("page.html").read_text(encoding="utf-8"))
    script = _SCRIPT.findall(template)
    assert len(script) == 1 and template.count(MODEL_MARKER) == 1, "the template holds one script and one data marker"
    digest = base64.b64encode(hashlib.sha256(script[0].encode("utf-8")).digest()).decode("ascii")
    page = template.replace(HASH_MARKER, f"sha256-{digest}").replace(MODEL_MARKER, script_json(data))
    return page


def write_page(
    path: Path,
    config: ModelConfig,
    vocab: Vocab,
    params: Mapping[str, Any],
    *,
    half: bool,
    title: str,
    describe: str,
) -> ExportedPage:
    """Write the page to `path`; `describe` is the model in words for its summary."""
    count = count_params(params)
    weight_bytes = count * (2 if half else 4)
    summary = (
        f"{describe}, {count:,} parameters, {vocab.characters} characters; "
        f"weights in {'float16' if half else 'float32'}, {weight_bytes / 1e6:.1f} MB. "
        "It runs in this page: nothing is sent anywhere."
    )
    page = render_page(config, vocab, params, half=half, title=title, summary=summary)
    save_whole(path, page)  # a failed write leaves an earlier page as it was
    return ExportedPage(path, len(page.encode("utf-8")), weight_bytes, "f16" if half else "f32", count)
