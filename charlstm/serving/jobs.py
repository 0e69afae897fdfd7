"""A request as the batcher serves it, and the handing out of its characters.

A `Job` holds one request's settings and, per sample (row), how far it has
got: characters drawn, characters asked of calls in flight, its stop texts
and whether it has ended. `hand_out` turns one compiled call's characters
into each job's next piece (a text per row) and ends the jobs whose rows
have all ended. Pieces reach the client through `Job.deliver`, an asyncio
queue for the app (`asyncio_delivery`), from the batcher's generation thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from charlstm.config import SampleConfig
from charlstm.core.generation import Completion, StopScanner
from charlstm.text.vocab import Vocab

Piece = list[Completion]  # one text piece and state per sample of a request; None ends the stream


@dataclass(eq=False)
class Job:
    """One request: its settings, and where its pieces go (an asyncio queue,
    filled from the generation thread)."""

    request: SampleConfig
    deliver: Callable[[Piece | None], None]
    # True: one piece with the whole texts when every sample has ended, for
    # a client that waits for the whole answer anyway (fewer hand-offs to
    # the event loop than a piece per chunk).
    whole: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: list[int] = field(default_factory=list)  # characters drawn per row so far
    dispatched: list[int] = field(default_factory=list)  # characters asked of calls so far, per row
    texts: list[str] = field(default_factory=list)  # per row, kept only for a `whole` job
    scanners: list[StopScanner] = field(default_factory=list)
    done: list[bool] = field(default_factory=list)
    error: str | None = None  # why the batcher could not finish it, once its stream has ended
    ended: bool = False  # its stream has ended (None delivered), finished or failed
    ready_at: float | None = None  # time.monotonic() when its prime had been read
    joined_at: float | None = None  # and when its rows joined the batch

    def __post_init__(self) -> None:
        n = self.request.num_samples
        self.generated, self.dispatched, self.texts, self.done = [0] * n, [0] * n, [""] * n, [False] * n

    def cancel(self) -> None:
        """Free the job's rows at the next chunk boundary (its client left, or it timed out)."""
        self.cancelled.set()

    def end(self) -> None:
        """End the job's stream: every sample has ended."""
        self.ended = True
        self.deliver(None)

    def fail(self, error: str) -> None:
        """End the job's stream with `error`: the batcher cannot finish it."""
        self.error = error
        self.end()


def asyncio_delivery(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Piece | None]
) -> Callable[[Piece | None], None]:
    """A `Job.deliver` that hands pieces to `queue` on `loop` from any thread."""

    def deliver(piece: Piece | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, piece)

    return deliver


Row = tuple[Job, int, int]  # (job, row of the job, slot in the batch)


def hand_out(vocab: Vocab, chunk: int, ids: np.ndarray, rows: Sequence[Row]) -> set[int]:
    """Give each job its piece of one call's characters, `ids` (size, chunk),
    whose first rows are `rows` in order (the rest is padding); the slots
    whose rows ended. A row that ended in an earlier call (a stop text found
    after this call had started) or whose client left has its characters
    thrown away."""
    pieces: dict[Job, Piece] = {}
    finished = set()
    for i, (job, r, slot) in enumerate(rows):
        if job.done[r] or job.cancelled.is_set():
            continue
        n_left = job.request.length - job.generated[r]
        text = vocab.decode(ids[i, : min(chunk, n_left)])
        job.generated[r] += len(text)
        scanner = job.scanners[r]
        text = scanner.feed(text)
        if job.generated[r] >= job.request.length:
            text += scanner.finish()
        if scanner.stopped or job.generated[r] >= job.request.length:
            job.done[r] = True
            finished.add(slot)
        # Rows that ended in an earlier chunk have nothing new, and their reason.
        piece = pieces.setdefault(job, [Completion("", s.reason) for s in job.scanners])
        piece[r] = Completion(text, scanner.reason)
    for job, piece in pieces.items():
        if job.whole:
            job.texts = [text + part.text for text, part in zip(job.texts, piece, strict=True)]
            if all(job.done):
                job.deliver([Completion(t, s.reason) for t, s in zip(job.texts, job.scanners, strict=True)])
        else:
            job.deliver(piece)
        if all(job.done):
            job.end()
    return finished
