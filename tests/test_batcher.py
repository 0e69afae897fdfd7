"""The server's continuous batching without HTTP: jobs submitted together
share compiled calls and still get what `charlstm sample` gives."""

import logging
import queue
import time

import jax
import numpy as np
import pytest

from charlstm.config import ModelConfig, SampleConfig
from charlstm.core.generation import begin, complete
from charlstm.core.model import init_params
from charlstm.serving.batcher import Batcher
from charlstm.serving.device_batch import advance, bucket, put
from charlstm.serving.jobs import Job

from .helpers import COMPILE_LOGGER, compilations
from .test_sample import CFG, VOCAB


def test_a_call_is_padded_to_one_of_a_dozen_sizes_and_at_most_a_third_padding():
    sizes = [bucket(rows, 64) for rows in range(1, 65)]
    assert sorted(set(sizes)) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    assert all(rows <= size and size - rows < size / 3 for rows, size in enumerate(sizes, start=1))
    assert bucket(100, 64) == 64 and bucket(5, 4) == 4  # never past the batch


@pytest.fixture(scope="module")
def params():
    return init_params(CFG, jax.random.PRNGKey(5))


def _answers(batcher: Batcher, jobs: list[tuple[SampleConfig, bool]]) -> list[tuple[list[list[str]], list[str]]]:
    """Every job's pieces (texts per sample) and the reasons its samples
    ended, the jobs submitted at once."""
    inboxes: list[queue.Queue] = []
    for request, whole in jobs:
        inbox: queue.Queue = queue.Queue()
        assert batcher.submit(Job(request, inbox.put, whole=whole))
        inboxes.append(inbox)
    answers = []
    for inbox in inboxes:
        pieces, reasons = [], []
        while (piece := inbox.get(timeout=120)) is not None:
            pieces.append([part.text for part in piece])
            reasons = [part.finish_reason for part in piece]
        answers.append((pieces, reasons))
    return answers


def test_jobs_that_join_together_get_what_sample_gives(params):
    """Eleven requests (one to three samples, greedy or drawn, filtered or
    not, with and without a stop text, whole or streamed) join a batch of 8
    rows as rows free up."""
    jobs = [
        (
            SampleConfig(
                length=9 + 5 * i,
                temperature=(0.0, 0.8, 1.3)[i % 3],
                prime="ab"[: 1 + i % 2],
                seed=i,
                num_samples=1 + i % 3,
                top_k=2 if i == 4 else 0,
                stop=("dd",) if i in (6, 7) else (),
            ),
            i % 2 == 0,
        )
        for i in range(11)
    ]
    batcher = Batcher(CFG, params, VOCAB, max_batch=8, chunk=4, max_waiting=64)
    batcher.start()
    try:
        answers = _answers(batcher, jobs)
    finally:
        batcher.close()
    for (request, whole), (pieces, reasons) in zip(jobs, answers, strict=True):
        expected = complete(CFG, params, VOCAB, request)
        assert ["".join(texts) for texts in zip(*pieces, strict=True)] == [c.text for c in expected], request
        assert reasons == [c.finish_reason for c in expected], request
        # A whole job hands over one piece; a streamed one a piece per chunk it ran in.
        if whole or not request.stop:
            assert len(pieces) == (1 if whole else -(-request.length // 4))
    assert any(reason == "stop" for _, reasons in answers for reason in reasons)  # a stop text was met
    load = batcher.load()
    assert load["active_rows"] == 0 and load["waiting_rows"] == 0
    assert load["peak_rows"] > 3  # calls were shared: no request has more than 3 rows


def test_a_batcher_starts_once_and_refuses_jobs_once_closed(params):
    """The app starts its batcher from its lifespan and, mounted where no
    lifespan runs, from the first request: a second start does nothing.
    A closed batcher's threads have ended; it takes no more jobs (the app
    answers 503) instead of queueing them where nothing will run them."""
    batcher = Batcher(CFG, params, VOCAB, max_batch=8, chunk=4, max_waiting=64, warm=False)
    batcher.start()
    batcher.start()
    job = Job(SampleConfig(length=5, prime="a"), lambda piece: None, whole=True)
    assert batcher.submit(job) and not batcher.closed
    batcher.close()
    assert batcher.closed
    batcher.start()  # nothing to start again
    assert not any(thread.is_alive() for thread in batcher._threads)
    assert not batcher.submit(Job(SampleConfig(length=5, prime="a"), lambda piece: None, whole=True))


def test_requests_joining_at_one_boundary_each_land_in_their_own_slots(params):
    """Three requests (5 rows, padded to 6) written into the batch in one
    call: every slot holds its own request's row, state and settings."""
    batcher = Batcher(CFG, params, VOCAB, max_batch=8, chunk=4, max_waiting=64)  # not started: driven by hand
    requests = [
        SampleConfig(length=5, prime=prime, seed=seed, num_samples=n, temperature=t, top_k=k)
        for prime, seed, n, t, k in [("ab", 1, 2, 0.5, 0), ("a", 2, 1, 1.0, 3), ("ba", 3, 2, 1.5, 0)]
    ]
    read = [jax.device_get(begin(CFG, params, VOCAB, request)) for request in requests]
    batcher._add([(Job(request, lambda piece: None), rows) for request, rows in zip(requests, read, strict=True)])
    (state, rows), count = jax.device_get(batcher._batch), 0
    for job, r, slot in batcher._slots:
        own_state, own_rows = read[requests.index(job.request)]
        for got, own in zip(jax.tree.leaves((state, rows)), jax.tree.leaves((own_state, own_rows)), strict=True):
            axis = 1 if own.ndim == 3 else 0  # the carry is (L, rows, H)
            np.testing.assert_array_equal(np.take(got, slot, axis=axis), np.take(own, r, axis=axis))
        count += 1
    assert count == 5 and sorted(slot for *_, slot in batcher._slots) == list(range(5))


def test_an_idle_batcher_compiles_every_batch_size_before_a_client_needs_one(caplog):
    """And the reading of a prime, once: primes of lengths never seen
    compile nothing. (A model of its own: no program another test compiled
    in this process stands in for the warm-up's.)"""
    config = ModelConfig(vocab_size=VOCAB.size, embed_dim=5, hidden_size=7, num_layers=1)
    params = jax.device_put(init_params(config, jax.random.PRNGKey(2)), jax.devices()[0])  # as a loaded model's
    batcher = Batcher(config, params, VOCAB, max_batch=8, chunk=4, max_waiting=64)
    with caplog.at_level(logging.DEBUG, logger=COMPILE_LOGGER):  # the generation and prefill threads too
        batcher.start()
        try:
            deadline = time.monotonic() + 120

            def reads() -> int:  # compilations of the prime reader so far
                return compilations(caplog.records, "_read")

            while (batcher.load()["sizes_to_compile"] or not reads()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert reads() == 1
            compiled = advance._cache_size(), put._cache_size()
            jobs = [
                (SampleConfig(length=9 + i, seed=i, num_samples=1 + i % 3, temperature=0.8, prime="abc\n" * i), False)
                for i in range(1, 10)
            ]
            _answers(batcher, jobs)
            assert batcher.load()["peak_rows"] > 3  # several sizes were called
            assert (advance._cache_size(), put._cache_size()) == compiled
            assert reads() == 1
        finally:
            batcher.close()


def _ended(inbox: queue.Queue) -> None:
    """Wait for the end of a job's stream (None), whatever came before it."""
    while inbox.get(timeout=120) is not None:
        pass


def test_a_failed_call_ends_every_job_with_its_error_and_takes_no_more(params, monkeypatch):
    """An error inside the batch's call (XLA running out of memory, say)
    must not leave clients waiting out their timeout: every job the
    batcher holds ends with the error, and it refuses new ones."""
    from charlstm.serving import device_batch

    real, calls = device_batch.advance, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(device_batch, "advance", failing)
    batcher = Batcher(CFG, params, VOCAB, max_batch=8, chunk=4, max_waiting=64, warm=False)
    jobs, inboxes = [], []
    for i in range(3):
        inbox: queue.Queue = queue.Queue()
        jobs.append(Job(SampleConfig(length=40, prime="ab", seed=i, num_samples=2), inbox.put, whole=i == 0))
        assert batcher.submit(jobs[-1])
        inboxes.append(inbox)
    batcher.start()
    try:
        for inbox in inboxes:
            _ended(inbox)
        assert all(job.error is not None and "RESOURCE_EXHAUSTED" in job.error for job in jobs)
        assert batcher.failure is not None and "out of memory" in batcher.failure
        assert not batcher.submit(Job(SampleConfig(length=5, prime="a"), lambda piece: None))
        deadline = time.monotonic() + 30
        while any(thread.is_alive() for thread in batcher._threads) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(thread.is_alive() for thread in batcher._threads)  # both threads ended
    finally:
        batcher.close()


def test_a_prime_that_fails_to_read_ends_its_own_job_only(params, monkeypatch):
    """Reading one request's prime is that request's alone (a compilation
    for a new number of samples, say): it fails, the batch goes on."""
    from charlstm.serving import batcher as batching

    def reading(config, params, vocab, request):
        if request.seed == 13:
            raise RuntimeError("compilation failed")
        return begin(config, params, vocab, request)

    monkeypatch.setattr(batching, "begin", reading)
    batcher = Batcher(CFG, params, VOCAB, max_batch=8, chunk=4, max_waiting=64, warm=False)
    batcher.start()
    try:
        bad, bad_inbox = Job(SampleConfig(length=9, prime="a", seed=13), (q := queue.Queue()).put), q
        assert batcher.submit(bad)
        _ended(bad_inbox)
        assert bad.error is not None and "compilation failed" in bad.error
        good = SampleConfig(length=9, prime="a", seed=14, temperature=0.8)
        [(pieces, _)] = _answers(batcher, [(good, True)])
        assert ["".join(texts) for texts in zip(*pieces, strict=True)] == [
            c.text for c in complete(CFG, params, VOCAB, good)
        ]
        assert batcher.failure is None
    finally:
        batcher.close()


def test_a_failure_while_handing_out_a_chunk_still_ends_every_job(params, monkeypatch):
    """The generation thread fails between two jobs of one call: the first
    job's rows are already done, its end not yet handed over; it must end
    too, not hang."""
    batcher = Batcher(CFG, params, VOCAB, max_batch=8, chunk=4, max_waiting=64, warm=False)
    real = type(VOCAB).decode
    calls = []

    def decode(vocab, ids):
        calls.append(1)
        if len(calls) == 2:  # the second row of the call
            raise RuntimeError("decoding failed")
        return real(vocab, ids)

    inboxes = [queue.Queue(), queue.Queue()]
    jobs = [Job(SampleConfig(length=4, prime="a", seed=i), inboxes[i].put, whole=True) for i in range(2)]
    for job in jobs:
        assert batcher.submit(job)
    # Read in by hand, so that both join the first call together.
    while batcher._incoming:
        job = batcher._incoming.popleft()
        batcher._ready.append((job, jax.device_get(begin(CFG, params, VOCAB, job.request))))
    monkeypatch.setattr(type(VOCAB), "decode", decode)
    batcher.start()
    try:
        for inbox in inboxes:
            _ended(inbox)
        assert all(job.ended for job in jobs) and jobs[1].error is not None and "decoding failed" in jobs[1].error
        assert batcher.load()["active_rows"] == 0  # a dead batcher holds no rows
    finally:
        batcher.close()
