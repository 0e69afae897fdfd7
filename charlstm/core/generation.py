"""Texts from the compiled sampler (`sampler.py`): primes, chunks, stop texts.

`charlstm sample`, the API and `charlstm serve` all come through here or
through the same three calls (`start`, `request_rows`, `sample_chunk`), so a
request gives the same text whichever of them asked for it.

A model trained on several documents knows where a document starts and ends
(the boundary symbol, text/vocab.py): its samples start a new document (the
prime is read after the boundary) and end where the model writes the
boundary, as if it were a stop text, so a sample can be shorter than its
length.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from charlstm.arguments import whole_number
from charlstm.config import ModelConfig, SampleConfig
from charlstm.core.model import Params
from charlstm.core.sampler import Rows, SampleState, capacity_for, filtering_on, request_rows, sample_chunk, start
from charlstm.errors import ConfigError, named
from charlstm.text.vocab import BOUNDARY, Vocab

# With stop texts, characters generated between two looks for them: a sample
# that stops early wastes at most this many.
STOP_CHUNK = 256
# The most samples `complete` generates in one batch; more are generated a
# group at a time, in bounded memory. `charlstm sample -N 20000 --length
# 500` with the default model (2-core CPU, 2026-12-03): as one batch 1.76
# GB at most and 93 s; in groups of 6,667, 0.90 GB and 91 s. (Groups of
# 1,000 held 0.46 GB but took 7% longer, and 5-14% at -N 8000.) A row draws with the keys of
# its index in the request, whatever its group, so the texts are those of
# one batch, but for a character drawn from a near-tie that the last bits
# of a product decide (XLA picks its CPU kernels by batch size): with groups
# of 1,000, 1 character of those 10 million differed; with 6,667, none.
ROW_GROUP = 8192
# The most characters of a sample one compiled call draws. The call holds
# its ids for the whole of its capacity (the chunk's length rounded up to a
# power of two), so a long --length is drawn in chunks: bounded memory, one
# compiled sampler for every length beyond this, and no capacity of 2**31,
# past the sampler's 32-bit count. Chunks do not change the text.
LONGEST_CHUNK = 1 << 14
LENGTH = "length"  # why a sample ended: it reached its length ...
STOP = "stop"  # ... or wrote one of its stop texts ...
END = "end"  # ... or ended its document (a model of several documents)


class Completion(NamedTuple):
    """One generated sample and why it ended (`Model.complete`)."""

    text: str  # the generated characters, without the prime or the stop text
    finish_reason: str  # LENGTH, STOP or END


def default_prime(vocab: Vocab) -> str:
    """The start of a document for a model of several documents; else a new
    line if the corpus has one (text then starts like a new line of the
    corpus), else its first character."""
    if vocab.boundary_id is not None:
        return BOUNDARY
    return "\n" if "\n" in vocab.chars else vocab.chars[0]


def unknown_in(vocab: Vocab, text: str, prime: bool) -> list[str]:
    """The characters of a prime (`prime`) or a stop text that the model
    never saw, sorted. The document boundary U+FDD0 is one of them: it marks
    where a model's files meet and is no character of any (training refuses
    a file holding it); a prime may start with it only, where it means what
    an empty one means to a model of several documents, a document's start."""
    unknown = vocab.unknown(text)
    inner = text[1:] if prime else text
    if BOUNDARY in inner and BOUNDARY not in unknown:
        unknown = sorted([*unknown, BOUNDARY])
    return unknown


def check_request(vocab: Vocab, request: SampleConfig) -> None:
    """Refuse a prime or stop text the model can never read or write."""
    unknown = unknown_in(vocab, request.prime, prime=True)
    if unknown:
        raise ConfigError(
            f"the prime contains characters the model never saw: {named(unknown)}; {_write_them(vocab, request.prime)}"
        )
    for stop in request.stop:
        unknown = unknown_in(vocab, stop, prime=False)
        if unknown:
            raise ConfigError(
                f"the stop text {stop!r} contains characters the model never writes: {named(unknown)}"
                + form_hint(vocab, stop, prime=False)
            )


def known_form(vocab: Vocab, text: str, prime: bool = True) -> str | None:
    """Where `text` (a prime, or a stop text) has characters the model never
    saw but knows written in another of Unicode's forms ('é' as e and a
    combining accent, as its text had them; they look the same): that form,
    in words, else None."""
    for form in ("NFC", "NFD"):
        if not unknown_in(vocab, unicodedata.normalize(form, text), prime):
            how = "composed, one character each" if form == "NFC" else "decomposed, letters and accents apart"
            return f"the model knows them written in Unicode's {form} form ({how}): write them so"
    return None


def skipped_form(vocab: Vocab, skipped: Mapping[str, int]) -> str | None:
    """Where most of the characters a text had and the model never saw are
    its own, written in another of Unicode's forms (a text saved on macOS
    has its accents and Hangul apart, NFD, where the model's text had them
    composed, NFC; they look the same, and `eval` left 77% of such a text
    out without a word; a walkthrough, 2026-12-06): what to do, in words."""
    total = sum(skipped.values())
    known = set(vocab.chars)
    for text_form, model_form, how in (("NFD", "NFC", "letters and marks apart"), ("NFC", "NFD", "composed")):
        if text_form == "NFD":  # pieces of the model's composed characters
            pieces = {p for k in known for p in unicodedata.normalize("NFD", k) if p not in known}
            explained = sum(n for c, n in skipped.items() if c in pieces)
        else:  # composed characters whose pieces the model knows
            explained = sum(
                n
                for c, n in skipped.items()
                if unicodedata.normalize("NFD", c) != c and set(unicodedata.normalize("NFD", c)) <= known
            )
        if total and explained >= total / 2:
            return (
                f"{explained / total:.0%} of the characters left out are the model's own written another way: this "
                f"text has them in Unicode's {text_form} form ({how}), the model's text in {model_form}; convert it "
                f"first (python3 -c \"import sys, unicodedata as u; sys.stdout.write(u.normalize('{model_form}', "
                'sys.stdin.read()))" < FILE > NEW)'
            )
    return None


def form_hint(vocab: Vocab, text: str, prime: bool) -> str:
    """`known_form`'s words after a "; ", to end a message naming `text`'s
    unknown characters with; nothing where no other form helps."""
    form = known_form(vocab, text, prime)
    return f"; {form}" if form else ""


def _write_them(vocab: Vocab, prime: str) -> str:
    """What to do about a prime's unknown characters."""
    form = known_form(vocab, prime)
    return f"{form}, or remove them" if form else "remove them"


def prime_ids(vocab: Vocab, request: SampleConfig) -> np.ndarray:
    """The request's prime as (P,) ids. A model of several documents reads a
    prime as the start of a document."""
    check_request(vocab, request)
    prime = request.prime or default_prime(vocab)
    if vocab.boundary_id is not None and not prime.startswith(BOUNDARY):
        prime = BOUNDARY + prime
    return np.asarray(vocab.encode(prime), np.int32)


def begin(
    config: ModelConfig, params: Params, vocab: Vocab, request: SampleConfig, rows: range | None = None
) -> tuple[SampleState, Rows]:
    """A request's rows (`rows` of its samples; default all), with its prime
    read: ready for `sample_chunk`."""
    rows = range(request.num_samples) if rows is None else rows
    if rows.step != 1:
        raise ValueError(f"rows must be consecutive samples, got {rows}")
    state = start(config, params, prime_ids(vocab, request)[None])  # every sample has the same prime: read once
    n = len(rows)
    state = state._replace(
        token=jnp.repeat(state.token, n),  # (N,)
        carry=jax.tree.map(lambda x: jnp.repeat(x, n, axis=1), state.carry),  # (L, N, H) each
        position=jnp.repeat(state.position, n),  # (N,)
    )
    settings = request.temperature, request.top_k, request.top_p
    return state, request_rows(config, request.seed, n, *settings, first=rows.start)


def stops_of(vocab: Vocab, request: SampleConfig) -> tuple[str, ...]:
    """What ends a sample of `request`: its stop texts, and the end of the
    document for a model of several documents."""
    return (*request.stop, BOUNDARY) if vocab.boundary_id is not None else request.stop


def first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """Where the stop text that `text` completes first begins, and which one
    it is (of two that end together, the longer), or None: generation ends
    as soon as one is written, so the first to end wins."""
    found = [(i + len(s), i, s) for s, i in ((s, text.find(s)) for s in stops) if i >= 0]
    return min(found)[1:] if found else None


class StopScanner:
    """One sample's text as it arrives, cut where `first_stop` says.

    A stop text can straddle two pieces, so up to (longest stop - 1)
    characters are held back until the next piece shows whether they begin
    one."""

    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(stops)
        self.hold = max(map(len, self.stops), default=1) - 1
        self.pending = ""
        self.matched: str | None = None  # the stop text the sample ended at

    @classmethod
    def of(cls, vocab: Vocab, request: SampleConfig) -> StopScanner:
        """The scanner of one sample of `request` (see `stops_of`)."""
        return cls(stops_of(vocab, request))

    @property
    def stopped(self) -> bool:
        return self.matched is not None

    @property
    def reason(self) -> str:
        """Why the sample ended, once it has: LENGTH, STOP or END."""
        return LENGTH if self.matched is None else END if self.matched == BOUNDARY else STOP

    def feed(self, piece: str) -> str:
        """The text that is now certain to be part of the sample."""
        if self.stopped:
            return ""
        text = self.pending + piece
        found = first_stop(text, self.stops)
        if found is not None:
            cut, self.matched = found
            self.pending = ""
            return text[:cut]
        keep = min(self.hold, len(text))
        self.pending = text[len(text) - keep :]
        return text[: len(text) - keep]

    def finish(self) -> str:
        """What was held back, once the sample has reached its length."""
        rest, self.pending = self.pending, ""
        return rest


def stream_completions(
    config: ModelConfig,
    params: Params,
    vocab: Vocab,
    request: SampleConfig,
    chunk: int = 256,
    samples: range | None = None,
) -> Iterator[list[Completion]]:
    """`request.num_samples` samples (or the `samples` of them asked for), a
    piece of each at a time as it is generated (`chunk` characters, at most
    LONGEST_CHUNK): joining a sample's pieces
    gives its text, and the last piece of each sample says why it ended. A
    sample that has stopped gets empty pieces until every sample has (then
    generation ends early) or the length is reached. Rows of `samples` past
    the request's (a last group's padding, `complete`) are drawn but get no
    pieces.

    The request is checked here, before the first piece is asked for."""
    if whole_number(chunk, "chunk") < 1:
        raise ConfigError(f"chunk must be >= 1, got {chunk}")
    samples = range(request.num_samples) if samples is None else samples
    state, rows = begin(config, params, vocab, request, samples)
    kept = len(range(samples.start, min(samples.stop, request.num_samples)))  # the rows handed out
    filtered = filtering_on(request.top_k, request.top_p, config.vocab_size)
    size = min(chunk, request.length, LONGEST_CHUNK)
    # One compiled sampler for every chunk, the last and shorter one too, and
    # for every other length up to the same capacity.
    capacity = capacity_for(size)

    def run(state: SampleState, count: int) -> tuple[SampleState, jax.Array]:
        return sample_chunk(config, params, state, rows, count, length=capacity, filtered=filtered)

    def count_from(done: int) -> int:  # the characters of the chunk that starts after `done`
        return min(size, request.length - done)

    def pieces() -> Iterator[list[Completion]]:
        scanners = [StopScanner.of(vocab, request) for _ in range(kept)]
        pending = run(state, count_from(0))
        for done in range(0, request.length, size):
            current, tokens = pending
            count = count_from(done)
            last = done + size >= request.length
            if not last:
                # Dispatched before this chunk is decoded: JAX runs it
                # asynchronously while the caller handles this piece.
                pending = run(current, count_from(done + size))
            texts = [vocab.decode(row) for row in np.asarray(tokens)[:kept, :count]]
            out = []
            for scanner, text in zip(scanners, texts, strict=True):
                piece = scanner.feed(text) + (scanner.finish() if last else "")
                out.append(Completion(piece, scanner.reason))
            yield out
            if all(s.stopped for s in scanners):
                return

    return pieces()


def complete(config: ModelConfig, params: Params, vocab: Vocab, request: SampleConfig) -> list[Completion]:
    """`request.num_samples` samples of at most `request.length` new
    characters each, following `request.prime` (not included), generated in
    one batch (or groups of `ROW_GROUP`), each with the reason it ended."""
    # Without stop texts the whole length is one compiled call (up to
    # LONGEST_CHUNK); with them, chunks, so that generation ends once every
    # sample has stopped.
    chunk = STOP_CHUNK if stops_of(vocab, request) else request.length
    n = request.num_samples
    texts, reasons = [""] * n, [LENGTH] * n
    # Groups of one size, so that one compiled sampler serves them all; the
    # last group's rows beyond n (fewer than the groups) are drawn and dropped.
    size = -(-n // -(-n // ROW_GROUP))
    for first in range(0, n, size):
        for piece in stream_completions(config, params, vocab, request, chunk, range(first, first + size)):
            for i, (text, reason) in enumerate(piece, start=first):
                texts[i] += text
                reasons[i] = reason
    return [Completion(t, r) for t, r in zip(texts, reasons, strict=True)]


def sample_texts(config: ModelConfig, params: Params, vocab: Vocab, request: SampleConfig) -> list[str]:
    """The texts of `complete`."""
    return [c.text for c in complete(config, params, vocab, request)]


def sample_text(config: ModelConfig, params: Params, vocab: Vocab, request: SampleConfig) -> str:
    """The first of `sample_texts`: with the same seed, the same text whatever
    `request.num_samples` is."""
    return sample_texts(config, params, vocab, request)[0]


def stream_texts(
    config: ModelConfig, params: Params, vocab: Vocab, request: SampleConfig, chunk: int = 256
) -> Iterator[list[str]]:
    """The texts of `sample_texts`, `chunk` characters (at most LONGEST_CHUNK)
    of every sample at a time: joining each sample's pieces gives exactly
    `sample_texts(...)`."""
    pieces = stream_completions(config, params, vocab, request, chunk)
    return ([c.text for c in piece] for piece in pieces)
