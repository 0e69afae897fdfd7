"""Continuous batching: every request's rows share the compiled sampler call.

A request is read in (its prime, by `generation.begin`: the very call
`charlstm sample` makes) on a prefill thread, then waits for the next chunk
boundary of the generation thread, which joins its rows to the batch. Each
call of `sample_chunk` advances every active row by `chunk` characters, so
concurrent clients share its matrix products instead of queueing one by one;
rows that reach their length or a stop text, or whose client went away, leave
at the next boundary. The next call starts before the last one's characters
are handed out, so a row that met a stop text has drawn one chunk more than
it needed, thrown away.

A row's characters are drawn with its own request's keys, temperature, top-k
and top-p, at its own position (`sampler.Rows`), so its text does not depend
on which other rows shared the batch. (XLA picks its CPU matrix kernels by
batch size, so logits can differ in the last bits between batch sizes, about
1e-7; that changes a drawn character only where two are tied that closely.)

If either thread fails (an error XLA raises, memory running out), the
batcher is broken for good: every job it holds ends with the error
(`Job.error`), it takes no more, and `failure` says why, so that the app
answers 500 and its health check 503 instead of leaving clients to time
out. A batch that a failed call may have consumed cannot be trusted again.

Nothing here knows about HTTP: `app.py` submits jobs (`jobs.py`: a request,
and the handing out of its characters) and reads their pieces.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from charlstm.config import ModelConfig, SampleConfig
from charlstm.core.generation import StopScanner, begin
from charlstm.core.model import Params
from charlstm.core.sampler import beside_params, filtering_on
from charlstm.errors import CharlstmError
from charlstm.runtime.jax_settings import held
from charlstm.serving import device_batch
from charlstm.serving.jobs import Job, Row, hand_out
from charlstm.text.vocab import BOUNDARY, Vocab

HostRows = device_batch.HostRows


class Batcher:
    """Owns the generation: `submit` jobs from any thread; `start` and `close` it once."""

    def __init__(
        self,
        config: ModelConfig,
        params: Params,
        vocab: Vocab,
        *,
        max_batch: int,
        chunk: int,
        max_waiting: int,
        warm: bool = True,
    ):
        self.config, self.params, self.vocab = config, params, vocab
        self.max_batch, self.chunk, self.max_waiting, self.warm = max_batch, chunk, max_waiting, warm
        self._incoming: collections.deque[Job] = collections.deque()  # to be read in
        self._ready: collections.deque[tuple[Job, HostRows]] = collections.deque()  # read in, waiting
        self._reading: Job | None = None  # being read in, between the two
        self._joining: list[Job] = []  # read in and taken from `_ready`, not yet in the batch
        self._wake = threading.Condition()
        self._closing = False
        self._started = False
        self._failure: str | None = None  # why a thread failed, if one did: no job is taken after
        self._slots: list[Row] = []  # the active rows: (job, row of the job, slot in the batch)
        self._free = list(range(max_batch))  # slots no row holds
        # Every slot's state and settings (the carry (L, C, H), the rest (C, ...)), placed as the parameters
        # are (one program per batch size).
        self._batch = beside_params(params, device_batch.empty_batch(config, max_batch))
        # Since start: compiled calls made, the most rows one call advanced,
        # and rows freed because their client left or timed out.
        self._counts = {"calls": 0, "peak_rows": 0, "cancelled_rows": 0}
        # Rows whose client left before their prime was read: the prefill
        # thread's own count (`_counts` is the generation thread's), added in `load()`.
        self._cancelled_unread = 0
        # Batch sizes whose calls are not compiled yet (`warm`): compiled one
        # at a time, smallest first, whenever no row is generating, so that
        # a client rarely waits on a compilation (about a second each for
        # the default model on the 2-core CPU; the compilation cache keeps
        # them for the next start).
        self._cold = sorted({device_batch.bucket(rows, max_batch) for rows in range(1, max_batch + 1)}) if warm else []
        # The calls compiled so far, by (rows, filtered), and when a
        # compilation was last under way (`compiled_since`): a request that
        # times out behind one should be told so, not to ask for less.
        self._compiled: set[tuple[int, bool]] = set()
        self._compiling_now = False
        self._compiled_at = -math.inf
        self._threads = [
            threading.Thread(target=self._failing(self._prefill_loop), name="charlstm-prefill", daemon=True),
            threading.Thread(target=self._failing(self._generate_loop), name="charlstm-generate", daemon=True),
        ]

    # ---- what the app sees ----
    def start(self) -> None:
        """Start generating; once only (a later call does nothing), never
        after `close` (a closed batcher refuses every job: see `closed`)."""
        with self._wake:
            if self._started or self._closing:
                return
            self._started = True
            # Inside the lock: a `close` that follows finds them alive and joins them.
            for thread in self._threads:
                thread.start()
            # The threads are daemons, so that a batcher nobody closes (an app
            # mounted without its lifespan) never holds the process open. But a
            # daemon thread still inside XLA when the interpreter finalises (it
            # compiles batch sizes ahead after the first request) aborts the
            # process (SIGABRT, status 134): so they are stopped and joined
            # before that, after at most the call under way. (In the lock: a
            # `close` from now on also takes this back.)
            atexit.register(self.close)

    @property
    def closed(self) -> bool:
        """Whether `close` was called: it then takes no more jobs."""
        with self._wake:
            return self._closing

    @property
    def failure(self) -> str | None:
        """Why the batcher stopped generating, if one of its threads failed; None while it works."""
        with self._wake:
            return self._failure

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join()
        atexit.unregister(self.close)

    def load(self) -> dict[str, int]:
        """Rows generating now and waiting to join, the batch sizes not
        compiled ahead yet (`warm`), and the counts since start."""
        with self._wake:
            waiting = sum(j.request.num_samples for j in self._incoming)
            waiting += sum(j.request.num_samples for j, _ in self._ready)
            waiting += self._reading.request.num_samples if self._reading is not None else 0
            load = {"active_rows": len(self._slots), "waiting_rows": waiting, "sizes_to_compile": len(self._cold)}
            counts = {**self._counts, "cancelled_rows": self._counts["cancelled_rows"] + self._cancelled_unread}
            return {**load, **counts}

    def compiled_since(self, when: float) -> bool:
        """Whether the generation thread compiled a call (a batch size or a
        filtering setting new to it) after `when` (time.monotonic), or is now."""
        return self._compiling_now or self._compiled_at >= when

    @contextlib.contextmanager
    def _compiling(self, key: tuple[int, bool]) -> Iterator[None]:
        """Around a call that may compile: marked while it does, if `key` is new."""
        if key in self._compiled:
            yield
            return
        self._compiling_now = True
        try:
            yield
            self._compiled.add(key)  # not after a failure: the next such call compiles again
        finally:
            self._compiling_now, self._compiled_at = False, time.monotonic()

    def submit(self, job: Job) -> bool:
        """Queue `job`; False if too many rows are already waiting (try again
        later) or the batcher is closed or has failed."""
        with self._wake:
            if (
                self._closing
                or self._failure is not None
                or self.load()["waiting_rows"] + job.request.num_samples > self.max_waiting
            ):
                return False
            # Each sample's stop texts, and for a model of several documents the end of its document.
            job.scanners = [StopScanner.of(self.vocab, job.request) for _ in range(job.request.num_samples)]
            self._incoming.append(job)
            self._wake.notify_all()
        return True

    # ---- the two threads ----
    def _failing(self, loop: Callable[[], None]) -> Callable[[], None]:
        """`loop`, made to break the batcher instead of ending silently if it raises."""

        def run() -> None:
            try:
                with held():  # the caller's JAX settings are its own thread's (runtime/jax_settings.py)
                    loop()
            except Exception as err:  # any failure: every client is told, none waits out its timeout
                self._fail(f"the server could not generate: {type(err).__name__}: {err}")

        return run

    def _fail(self, why: str) -> None:
        with self._wake:
            if self._failure is None:
                self._failure = why
            jobs = [*self._incoming, *(job for job, _ in self._ready), *self._joining]
            jobs += [job for job, *_ in self._slots]
            self._incoming.clear()
            self._ready.clear()
            if threading.current_thread() is self._threads[1]:  # the generation thread's own state
                self._slots, self._free, self._joining = [], list(range(self.max_batch)), []
            self._wake.notify_all()  # the other thread ends too
        for job in dict.fromkeys(jobs):  # a job of several rows once
            if not job.ended:  # its rows may all be done and its end not yet delivered
                job.fail(why)

    def _prefill_loop(self) -> None:
        char = next((c for c in self.vocab.chars if c != BOUNDARY), None)
        if self.warm and char is not None:
            # The reading of a prime, one program for every length, compiled
            # before a client needs it (a failure here costs only the warm-up).
            with contextlib.suppress(Exception):
                begin(self.config, self.params, self.vocab, SampleConfig(length=1, prime=char * 2))
        while True:
            with self._wake:
                while not self._incoming and not self._closing and self._failure is None:
                    self._wake.wait()
                if self._closing or self._failure is not None:
                    return
                job = self._incoming.popleft()
                if job.cancelled.is_set():  # its client left before its prime was read: its rows count as freed
                    self._cancelled_unread += job.request.num_samples
                    continue
                self._reading = job  # still waiting, for `load()` and `submit`'s limit
            read: HostRows | None = None
            try:
                # The prime is read as `charlstm sample` reads it (a new
                # number of samples compiles here, while the batch keeps
                # generating; a new prime length compiles nothing). On the
                # host, so that the generation thread joins every waiting
                # request's rows in one call (`device_batch.joined`).
                read = jax.device_get(begin(self.config, self.params, self.vocab, job.request))
            except CharlstmError as err:  # the app checked the request first; never leave a client waiting
                why = str(err)
            except Exception as err:  # this request's alone (its compilation, say): the batch is untouched
                why = f"the server could not read the prime: {type(err).__name__}: {err}"
            with self._wake:
                self._reading = None
                if read is not None and self._failure is None:
                    job.ready_at = time.monotonic()
                    self._ready.append((job, read))
                    self._wake.notify_all()
                    continue
                # Or the generation thread failed while this was read.
                why = self._failure if self._failure is not None else why
            job.fail(why)

    def _generate_loop(self) -> None:
        # One call is kept in flight: the next chunk is dispatched before the
        # last one's characters are decoded and handed out, so that XLA
        # computes while this thread does its Python (on the 2-core CPU, 20%
        # more characters a second at 32 clients; docs/serving.md).
        flight: _Call | None = None
        while True:
            with self._wake:
                while not (self._slots or self._ready or self._closing or self._cold or flight or self._failure):
                    self._wake.wait()
                if self._closing or self._failure is not None:
                    return
                joining = self._admit()
            if not self._slots and not joining and self._cold and flight is None:
                # A size that fails to compile here (memory, say) is left to
                # its first real call: smaller batches may still work.
                with contextlib.suppress(Exception), self._compiling((self._cold[0], False)):
                    self._warm(self._cold[0])
                self._cold.pop(0)  # only now: load() says how many are left to compile, this one included until done
                continue
            self._joining = [job for job, _ in joining]  # until they are in the batch: a failure ends them too
            self._add(joining)
            self._joining = []
            gone = [i for i, (job, *_) in enumerate(self._slots) if job.cancelled.is_set()]
            self._counts["cancelled_rows"] += len(gone)
            self._drop(gone)
            call = self._dispatch()
            if flight is not None:
                self._deliver(flight)
            flight = call

    def _warm(self, size: int) -> None:
        """Compile the calls for `size` rows by making them on free slots
        (a row that joins is written over whole), with the same shapes and
        types as a real call; not counted in `load()`."""
        index = jnp.arange(size, dtype=jnp.int32)
        again = device_batch.joined([jax.device_get(self._batch)], size)  # its first rows again
        self._batch = device_batch.put(self._batch, again, index)
        self._batch, tokens = device_batch.advance(
            self.config, self.params, self._batch, index, length=self.chunk, filtered=False
        )
        tokens.block_until_ready()

    def _admit(self) -> list[tuple[Job, HostRows]]:
        """The waiting requests whose rows fit in the batch now, first come
        first served; those whose clients left meanwhile are dropped here,
        their rows counted as freed, and hold no one up."""
        joining, free = [], len(self._free)
        while self._ready:
            job = self._ready[0][0]
            if job.cancelled.is_set():
                self._ready.popleft()
                self._counts["cancelled_rows"] += job.request.num_samples
                continue
            if job.request.num_samples > free:
                break
            joining.append(self._ready.popleft())
            free -= job.request.num_samples
        return joining

    def _add(self, joining: list[tuple[Job, HostRows]]) -> None:
        admitted, joining = joining, []
        for item in admitted:  # one look at each: a client that leaves now is counted once, either way
            if item[0].cancelled.is_set():
                self._counts["cancelled_rows"] += item[0].request.num_samples
            else:
                joining.append(item)
        if not joining:
            return
        now = time.monotonic()
        slots: list[int] = []
        for job, _ in joining:
            n = job.request.num_samples
            job.joined_at = now
            taken, self._free = self._free[:n], self._free[n:]
            self._slots.extend((job, r, slot) for r, slot in enumerate(taken))
            slots += taken
        size = device_batch.bucket(len(slots), self.max_batch)
        index = jnp.asarray([slots[i % len(slots)] for i in range(size)], jnp.int32)  # padding: the same rows again
        self._batch = device_batch.put(self._batch, device_batch.joined([read for _, read in joining], size), index)

    def _drop(self, gone: list[int]) -> None:
        leaving = set(gone)
        self._free.extend(self._slots[i][2] for i in gone)
        self._slots = [slot for i, slot in enumerate(self._slots) if i not in leaving]

    def _dispatch(self) -> _Call | None:
        """Start one chunk for every active row that has characters left to
        draw (not yet drawn by a call in flight); None if none has."""
        rows = [entry for entry in self._slots if entry[0].dispatched[entry[1]] < entry[0].request.length]
        if not rows:
            return None
        active = len(rows)
        size = device_batch.bucket(active, self.max_batch)
        # Padding repeats the first row; its characters are thrown away.
        slots = [slot for *_, slot in rows]
        filtered = any(filtering_on(j.request.top_k, j.request.top_p, self.config.vocab_size) for j, *_ in rows)
        self._counts["calls"] += 1
        self._counts["peak_rows"] = max(self._counts["peak_rows"], active)
        index = jnp.asarray(slots + slots[:1] * (size - active), jnp.int32)
        with self._compiling((size, filtered)):  # a call's first of its kind compiles as it is made
            self._batch, tokens = device_batch.advance(
                self.config, self.params, self._batch, index, length=self.chunk, filtered=filtered
            )
        for job, r, _ in rows:
            job.dispatched[r] += self.chunk
        return _Call(tokens, rows)

    def _deliver(self, call: _Call) -> None:
        """Wait for `call`'s characters and hand each job its pieces (`jobs.hand_out`)."""
        finished = hand_out(self.vocab, self.chunk, np.asarray(call.tokens), call.rows)  # (size, chunk)
        # A freed slot may take a new row at once: its write is queued after the call in flight.
        self._drop([i for i, (*_, slot) in enumerate(self._slots) if slot in finished])


@dataclass
class _Call:
    """A chunk in flight: its characters (a future until read) and the rows it advanced, in order."""

    tokens: jax.Array  # (size, chunk)
    rows: list[Row]  # (job, row of the job, slot)
