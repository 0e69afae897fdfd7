"""The model's parameters as a safetensors file, and a JSON file describing them.

safetensors is a simple format: an 8-byte little-endian header length, a
JSON header naming each tensor with its dtype, shape and byte range, then the
raw little-endian data. Reading it runs no code (unlike a pickle), and it is
written here with NumPy alone, so exporting needs no extra dependency.

Tensor names are the parameter tree's paths joined with dots:
`embed.embedding` (V, E); per recurrent layer l, `lstm_l.w_x` (D, 4H),
`lstm_l.w_h` (H, 4H), `lstm_l.b` (4H,), gate blocks in the order
[input | forget | candidate | output], plus `gain_x`, `gain_h` (4H,) and
`gain_c`, `bias_c` (H,) with layer norm; or `gru_l.w_x` (D, 3H), `gru_l.w_h`
(H, 2H), `gru_l.w_hn` (H, H), `gru_l.b` (3H,), blocks [reset | update |
candidate]; and `head.kernel` (H, V), `head.bias` (V,). docs/export.md has
the equations and examples/numpy_forward.py runs them.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from charlstm.config import ModelConfig, to_dict
from charlstm.core import ln_lstm
from charlstm.core.generation import default_prime
from charlstm.errors import CharlstmError
from charlstm.text.saving import write_failure, write_together
from charlstm.text.vocab import Vocab

FORMAT = "charlstm-weights"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
LAYER_NORM_EPSILON = ln_lstm.EPSILON  # as the training cell's layer norm
_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16"}


@dataclass(frozen=True)
class ExportedWeights:
    weights: Path  # the .safetensors file
    meta: Path  # the JSON file beside it
    tensors: int
    parameters: int
    bytes: int  # of the .safetensors file


def named_tensors(params: Mapping[str, Any], dtype: str = "<f4") -> dict[str, np.ndarray]:
    """The parameter tree as {"lstm_0.w_x": array, ...}, little-endian `dtype`, sorted by name."""
    out: dict[str, np.ndarray] = {}

    def walk(tree: Mapping[str, Any], prefix: str) -> None:
        for key, value in tree.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                walk(value, name + ".")
            else:
                out[name] = np.ascontiguousarray(np.asarray(value), dtype=dtype)

    walk(params, "")
    return dict(sorted(out.items()))


def safetensors_bytes(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> bytes:
    """The safetensors encoding of `tensors` (little-endian F32 or F16 arrays)."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name, array in tensors.items():
        header[name] = {
            "dtype": _DTYPES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the format allows space padding; it keeps the data 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(a.tobytes() for a in tensors.values())


def describe(
    config: ModelConfig, vocab: Vocab, tensors: Mapping[str, np.ndarray], source: Mapping[str, Any]
) -> dict[str, Any]:
    """What the JSON file beside the weights says."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": to_dict(config),
        "vocab": vocab.chars,
        "default_prime": default_prime(vocab),
        "layer_norm_epsilon": LAYER_NORM_EPSILON,
        "gate_order": {"lstm": ["input", "forget", "candidate", "output"], "gru": ["reset", "update", "candidate"]},
        "tensors": {name: {"dtype": _DTYPES[a.dtype], "shape": list(a.shape)} for name, a in tensors.items()},
        "source": dict(source),
    }


def write_weights(
    directory: Path, config: ModelConfig, vocab: Vocab, params: Mapping[str, Any], source: Mapping[str, Any]
) -> ExportedWeights:
    """`directory`/model.safetensors and model.json (created, or replaced there)."""
    tensors = named_tensors(params)
    meta = describe(config, vocab, tensors, source)
    data = safetensors_bytes(tensors, {"format": FORMAT, "meta": META_FILE})
    try:
        # Both or neither: new weights never sit beside an earlier export's description.
        description = json.dumps(meta, indent=1, ensure_ascii=False) + "\n"
        write_together({directory / WEIGHTS_FILE: data, directory / META_FILE: description})
    except OSError as err:
        raise CharlstmError(f"cannot write the weights to {directory}: {write_failure(directory, err)}") from None
    count = sum(a.size for a in tensors.values())
    return ExportedWeights(directory / WEIGHTS_FILE, directory / META_FILE, len(tensors), count, len(data))
