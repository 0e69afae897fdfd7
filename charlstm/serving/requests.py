"""What a client may ask `POST /v1/generate` for, checked field by field.

Every refusal names the JSON field it is about, with the HTTP status that
fits: 400 for a body that is not a JSON object, 413 for one too large, 422
for a field of the wrong type or out of range, or a prime or stop text with
characters the model never saw (named).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from charlstm.config import MAX_STOP_CHARS, MAX_STOPS, MAX_TEMPERATURE, SEEDS, SampleConfig, ServeConfig
from charlstm.core.generation import form_hint, unknown_in
from charlstm.errors import CharlstmError, named
from charlstm.text.vocab import Vocab

# The JSON fields: SampleConfig's names, but `n` for num_samples, and `stream`, which is the server's.
FIELDS = ("prime", "length", "temperature", "top_k", "top_p", "seed", "n", "stop", "stream")
DEFAULT_LENGTH = 200  # shorter than `charlstm sample`'s 1000: a request should answer quickly


class RequestError(CharlstmError):
    """A request the server refuses: an HTTP status and one clear message."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.field = status, field

    def __reduce__(self) -> tuple[type, tuple[int, str, str | None], dict[str, Any]]:
        return type(self), (self.status, str(self), self.field), self.__dict__  # as TrainingDiverged's

    def body(self) -> dict[str, Any]:
        # `field` is null where the refusal is about no one field (the body, the key, the load).
        return {"error": {"message": str(self), "status": self.status, "field": self.field}}


@dataclass(frozen=True)
class Generate:
    request: SampleConfig
    stream: bool


# A value a message quotes back is cut to this many characters.
SHOWN_CHARS = 60


def cut(text: str) -> str:
    """What a client sent, as a message quotes it: cut short where long."""
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text):,} characters)"


def shown_value(value: Any) -> str:
    """A client's value as a message quotes it: in JSON, cut short where long."""
    try:
        return cut(json.dumps(value))
    except RecursionError:  # nested as deep as json.loads reads, but not as deep as dumps writes
        return _json_kind(value)


def _integer(data: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(422, f"{name} must be an integer, got {shown_value(value)}", name)
    if not low <= value <= high:
        raise RequestError(422, f"{name} must be from {low} to {high}, got {cut(str(value))}", name)
    return value


def _number(data: dict[str, Any], name: str, default: float, low: float, high: float, open_low: bool = False) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(422, f"{name} must be a number, got {shown_value(value)}", name)
    if isinstance(value, float) and not math.isfinite(value):  # 1e309 parses as infinity; an int is finite
        raise RequestError(422, f"{name} must be a finite number, got {shown_value(value)}", name)
    if not (low < value if open_low else low <= value) or value > high:
        bounds = f"in ({low:g}, {high:g}]" if open_low else f"from {low:g} to {high:g}"
        got = f"{value:g}" if isinstance(value, float) else cut(str(value))  # :g of a huge int overflows
        raise RequestError(422, f"{name} must be {bounds}, got {got}", name)
    return float(value)


def _text_chars(vocab: Vocab, name: str, text: str, what: str) -> None:
    prime = name == "prime"
    unknown = unknown_in(vocab, text, prime)
    if unknown:
        # Named as `charlstm sample` names them: a no-break space or a lone
        # surrogate by its escape, which also keeps the answer encodable.
        hint = form_hint(vocab, text, prime)
        raise RequestError(422, f"{name} contains characters the model never {what}: {named(unknown)}{hint}", name)


JSON_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def _json_kind(value: Any) -> str:
    """What a parsed JSON value was, in JSON's words."""
    return JSON_KINDS.get(type(value), "a number")


def parse_generate(body: bytes, vocab: Vocab, limits: ServeConfig) -> Generate:
    """The request in `body`, or a RequestError saying what is wrong with it."""
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"the body is {len(body):,} bytes; the limit is {limits.max_body_bytes:,}")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, f"the body is not valid JSON: {err}") from None
    except RecursionError:  # arrays or objects nested a thousand deep
        raise RequestError(400, "the body is not valid JSON here: it nests arrays or objects too deeply") from None
    except ValueError:  # Python reads integers of at most 4,300 digits
        raise RequestError(400, "the body is not valid JSON here: a number in it has too many digits") from None
    if not isinstance(data, dict):
        raise RequestError(400, f"the body must be a JSON object, got {_json_kind(data)}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        name = unknown[0]
        # The message quotes it cut short; `field` is what was sent, for a client to match.
        raise RequestError(422, f"unknown field {cut(repr(name))}; the fields are {', '.join(FIELDS)}", name)
    # A field given as null takes its default, as one left out does: clients
    # that send every field of a form send null for those left empty.
    data = {name: value for name, value in data.items() if value is not None}
    prime = data.get("prime", "")
    if not isinstance(prime, str):
        raise RequestError(422, f"prime must be a string, got {shown_value(prime)}", "prime")
    _text_chars(vocab, "prime", prime, "saw")
    stop = data.get("stop", [])
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise RequestError(422, "stop must be a non-empty string or a list of them", "stop")
    if len(stop) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stop):
        raise RequestError(422, f"stop takes at most {MAX_STOPS} texts of at most {MAX_STOP_CHARS} characters", "stop")
    for text in stop:
        _text_chars(vocab, "stop", text, "writes")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(422, f"stream must be true or false, got {shown_value(stream)}", "stream")
    request = SampleConfig(
        length=_integer(data, "length", DEFAULT_LENGTH, 1, limits.max_length),
        temperature=_number(data, "temperature", 1.0, 0.0, MAX_TEMPERATURE),
        prime=prime,
        seed=_integer(data, "seed", 0, *SEEDS),
        top_k=_integer(data, "top_k", 0, 0, 2**31 - 1),
        top_p=_number(data, "top_p", 1.0, 0.0, 1.0, open_low=True),
        num_samples=_integer(data, "n", 1, 1, limits.max_samples),
        stop=tuple(stop),
    )
    return Generate(request, stream)


def settings(request: SampleConfig, default_prime: str) -> dict[str, Any]:
    """The request as the client would write it (every default filled in:
    the prime, where none was given, is `default_prime`, what was read)."""
    return {
        "prime": request.prime or default_prime,
        "length": request.length,
        "temperature": request.temperature,
        "top_k": request.top_k,
        "top_p": request.top_p,
        "seed": request.seed,
        "n": request.num_samples,
        "stop": list(request.stop),
    }
