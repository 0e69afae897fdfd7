"""Run a model exported by `charlstm export RUN --weights DIR` with NumPy alone.

    python examples/numpy_forward.py DIR --prime "ROMEO." --length 200

prints a greedy continuation of the prime. `load` reads the two files (the
safetensors header is JSON and the data raw little-endian floats: nothing in
them is ever executed); `step` is the whole model for one character. The
tests check its next-character probabilities against the JAX model's.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
from pathlib import Path

import numpy as np

DTYPES = {"F32": "<f4", "F16": "<f2"}


def load(directory: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(the JSON description, {tensor name: float64 array})."""
    meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
    if meta.get("format") != "charlstm-weights" or meta.get("format_version") != 1:
        raise ValueError(f"{directory} does not hold charlstm weights of format version 1")
    raw = (directory / "model.safetensors").read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    data = memoryview(raw)[8 + size :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = array.astype(np.float64)
    return meta, tensors


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def layer_norm(x: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + eps)


def step(meta: dict, t: dict[str, np.ndarray], char_id: int, state: list) -> tuple[np.ndarray, list]:
    """Read one character: (logits (V,), the new state, one (h, c) per layer)."""
    model, eps = meta["model"], meta["layer_norm_epsilon"]
    if char_id == model.get("boundary_id"):  # a model of several documents starts each from a zero state
        state = zero_state(meta)
    x = t["embed.embedding"][char_id]  # (E,)
    new_state = []
    for layer, (h, c) in enumerate(state):
        prefix = f"{model['cell']}_{layer}."
        p = lambda name, prefix=prefix: t[prefix + name]  # noqa: E731
        if model["cell"] == "gru":
            zx = x @ p("w_x") + p("b")  # (3H,): [reset | update | candidate]
            r, u = np.split(sigmoid(zx[: 2 * len(h)] + h @ p("w_h")), 2)
            n = np.tanh(zx[2 * len(h) :] + (r * h) @ p("w_hn"))
            h = (1 - u) * n + u * h
        else:
            if model["norm"] == "layer":
                z = layer_norm(x @ p("w_x"), eps) * p("gain_x") + layer_norm(h @ p("w_h"), eps) * p("gain_h") + p("b")
            else:
                z = x @ p("w_x") + h @ p("w_h") + p("b")  # (4H,): [input | forget | candidate | output]
            i, f, g, o = np.split(z, 4)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            y = layer_norm(c, eps) * p("gain_c") + p("bias_c") if model["norm"] == "layer" else c
            h = sigmoid(o) * np.tanh(y)
        new_state.append((h, c))
        x = h
    return x @ t["head.kernel"] + t["head.bias"], new_state


def zero_state(meta: dict) -> list:
    hidden = meta["model"]["hidden_size"]
    return [(np.zeros(hidden), np.zeros(hidden)) for _ in range(meta["model"]["num_layers"])]


def greedy(meta: dict, tensors: dict[str, np.ndarray], prime: str, length: int) -> str:
    """Up to `length` characters after `prime`; for a model of several
    documents, the prime starts a document and the text ends with it."""
    vocab, boundary = meta["vocab"], meta["model"].get("boundary_id")
    if boundary is not None and not prime.startswith(vocab[boundary]):
        prime = vocab[boundary] + prime
    state = zero_state(meta)
    for ch in prime[:-1]:
        _, state = step(meta, tensors, vocab.index(ch), state)
    char, out = prime[-1], []
    for _ in range(length):
        logits, state = step(meta, tensors, vocab.index(char), state)
        char = vocab[int(np.argmax(logits))]
        if vocab.index(char) == boundary:
            break
        out.append(char)
    return "".join(out)


ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str, parser: argparse.ArgumentParser) -> str:
    """The escapes `charlstm sample --prime` reads: \\n \\t \\r \\\\ \\xHH \\uHHHH."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in ESCAPES:
            return ESCAPES[code]
        if len(code) > 1:
            return chr(int(code[1:], 16))
        parser.error(f"--prime {text!r}: unknown escape \\{code}; use \\n, \\t, \\r, \\xHH, \\uHHHH or \\\\")

    return re.sub(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.?)", one, text, flags=re.DOTALL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path, help="the folder `charlstm export RUN --weights DIR` wrote")
    parser.add_argument("--prime", default="", help='text to continue; escapes as in charlstm sample ("ROMEO.\\n")')
    parser.add_argument("--length", type=int, default=200)
    args = parser.parse_args()
    if not (args.directory / "model.json").is_file():
        parser.error(f"{args.directory} holds no model.json: give the folder `charlstm export RUN --weights DIR` wrote")
    meta, tensors = load(args.directory)
    typed = unescape(args.prime, parser)
    prime = typed or meta["default_prime"]
    unknown = sorted(set(prime) - set(meta["vocab"]))
    if unknown:
        parser.error(f"the prime contains characters the model never saw: {', '.join(map(repr, unknown))}")
    print(typed + greedy(meta, tensors, prime, args.length))  # the default prime is not shown, as by charlstm sample


if __name__ == "__main__":
    main()
