"""The HTTP face of the server: a Starlette (ASGI) application.

    POST /v1/generate   {prime, length, temperature, top_k, top_p, seed, n, stop, stream}
    GET  /v1/model      the model, the limits and the current load
    GET  /healthz       {"status": "ok"} (503 once generation failed or stopped): for load balancers; no key
    GET  /              a page to write with the model (static: it holds no model data)

Requests become `jobs.Job`s; the batcher generates them together. With
`"stream": true` the answer is server-sent events: one `piece` event per
chunk, then `done` with the whole answer (or `error`). A client that goes
away frees its rows at the next chunk boundary, streamed or not.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from charlstm.config import ModelConfig, SampleConfig, ServeConfig, to_dict
from charlstm.core.generation import default_prime
from charlstm.core.model import Params
from charlstm.introspect.page import writing_page
from charlstm.serving.batcher import Batcher
from charlstm.serving.jobs import Job, Piece, asyncio_delivery
from charlstm.serving.requests import RequestError, cut, parse_generate, settings
from charlstm.text.vocab import BOUNDARY, Vocab

OPEN_PATHS = ("/healthz", "/")  # answered without the API key: neither says anything about the model


class _AsciiJSON(JSONResponse):
    """JSON with every non-ASCII character escaped: an error may quote what
    the client sent, a lone surrogate in a field's name among it, which
    UTF-8 cannot encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


def error_response(error: RequestError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
    if error.status == 503:
        headers["Retry-After"] = "1"
    return _AsciiJSON(error.body(), status_code=error.status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such path, wrong method) in the same
    JSON as every other error, so a client reads one format."""
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {cut(request.url.path)}"  # a path of thousands of characters is not said back whole
    if exc.status_code == 404:
        at = request.scope.get("root_path", "").rstrip("/")  # where a user's service mounted it
        message = (
            f"no such endpoint: {where} (there are POST {at}/v1/generate, GET {at}/v1/model, GET {at}/healthz "
            f"and GET {at}/)"
        )
    elif exc.status_code == 405:
        message = f"{where} is not allowed: use {(exc.headers or {}).get('Allow', 'another method')}"
    else:
        message = str(exc.detail)
    response = error_response(RequestError(exc.status_code, message))
    response.headers.update(exc.headers or {})
    return response


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A failure the server did not foresee, answered in the same JSON as every
    other error; Starlette then raises it again, so the traceback goes to the log."""
    return error_response(
        RequestError(500, f"the server failed on {request.method} {cut(request.url.path)}; its log has the details")
    )


class Generation:
    """One request in flight: its job, its pieces, the texts so far."""

    def __init__(
        self,
        request: SampleConfig,
        batcher: Batcher,
        timeout_s: float,
        default_prime: str,
        *,
        stream: bool,
        arrived: float | None = None,
    ):
        self.request, self.batcher = request, batcher
        self.default_prime = default_prime  # the settings' prime where the request gave none, as `sample --json`'s
        self.queue: asyncio.Queue[Piece | None] = asyncio.Queue()
        self.job = Job(request, asyncio_delivery(asyncio.get_running_loop(), self.queue), whole=not stream)
        self.texts = [""] * request.num_samples
        self.started = time.monotonic() if arrived is None else arrived  # when the request arrived
        self.deadline = self.started + timeout_s
        self.timeout_s = timeout_s

    def submit(self) -> None:
        # Started by the app's lifespan; where that never runs (an app
        # mounted in another Starlette or FastAPI app, whose lifespan does
        # not run its mounts'), by the first request.
        self.batcher.start()
        if not self.batcher.submit(self.job):
            if self.batcher.failure is not None:
                raise RequestError(500, self.batcher.failure)
            if self.batcher.closed:
                raise RequestError(503, "the server is shutting down")
            raise RequestError(503, "the server is busy: too many samples are waiting; try again shortly")

    async def next_piece(self) -> Piece | None:
        """The next piece, or None when every sample has ended; RequestError
        408 past the deadline, 500 if the server could not finish it."""
        left = self.deadline - time.monotonic()
        try:
            piece = await asyncio.wait_for(self.queue.get(), timeout=max(left, 0.0))
        except TimeoutError:
            self.job.cancel()
            # A server compiles its sampler for each batch size (in its first
            # seconds) and top-k / top-p setting once: a short --timeout can end
            # a request behind that, which its length did not cause.
            # Nor its length where it spent most of its time waiting behind
            # other clients: for its prime to be read (one request's at a
            # time), or, read, for room in the batch.
            now, ready, joined = time.monotonic(), self.job.ready_at, self.job.joined_at
            waited = None if ready is None else (joined if joined is not None else now) - ready  # for room
            if self.batcher.compiled_since(self.started):
                advice = (
                    "the server was compiling its sampler meanwhile (once for each batch size and top-k/top-p "
                    "setting, mostly in its first seconds): try again shortly"
                )
            elif waited is None:
                advice = (
                    f"the server was busy: it had not read the request's prime after {now - self.started:.1f} s; "
                    "try again shortly"
                )
            elif waited > self.timeout_s / 2:
                advice = (
                    f"the server was busy: the request waited {waited:.1f} s for room in the batch; try again shortly"
                )
            else:
                advice = "ask for fewer characters or samples"
            raise RequestError(
                408,
                f"generation took longer than this server's per-request limit of {self.timeout_s:g} s (timeout); "
                + advice,
            ) from None
        if piece is None and self.job.error is not None:
            raise RequestError(500, self.job.error)
        if piece is not None:
            for i, part in enumerate(piece):
                self.texts[i] += part.text
        return piece

    def answer(self) -> dict[str, Any]:
        reasons = [s.reason for s in self.job.scanners]
        return {
            "samples": [{"text": t, "finish_reason": r} for t, r in zip(self.texts, reasons, strict=True)],
            "settings": settings(self.request, self.default_prime),
            "seconds": round(time.monotonic() - self.started, 4),
        }


def create_app(
    config: ModelConfig,
    params: Params,
    vocab: Vocab,
    *,
    limits: ServeConfig = ServeConfig(),
    api_key: str | None = None,
    about: dict[str, Any] | None = None,
) -> Starlette:
    """The ASGI application serving this model. `about` is added to what
    GET /v1/model says (the checkpoint, its step...). The batcher's threads
    run while the application's lifespan does; mounted in another app,
    which does not run a mount's lifespan, from the first request on, and
    they end with the process (forward the lifespan to drain them)."""
    batcher = Batcher(
        config, params, vocab, max_batch=limits.max_batch, chunk=limits.chunk, max_waiting=limits.max_waiting
    )
    page = writing_page(resources.files("charlstm.serving").joinpath("page.html").read_text(encoding="utf-8"))
    # What a sample reads first when no prime is given, as text: a new line,
    # or none for a model of documents (their start, the boundary symbol).
    default_text = default_prime(vocab).replace(BOUNDARY, "")
    page_headers = {**_NO_CACHE, "Content-Security-Policy": _page_policy(page)}

    def authorised(request: Request) -> None:
        if api_key is None or request.url.path in OPEN_PATHS:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise RequestError(401, "this server needs an API key: send the header 'Authorization: Bearer KEY'")
        # Starlette reads a header's bytes as Latin-1. A key beyond ASCII
        # (`clé`) comes as its UTF-8 (curl) or, from a browser or urllib, as
        # Latin-1: either matches. Only HTTP's own blanks are stripped (a
        # Unicode strip would eat the \xa0 that ends the UTF-8 of `à`).
        token = token.strip(" \t")
        key = api_key.encode()
        if not (hmac.compare_digest(token.encode("latin-1"), key) | hmac.compare_digest(token.encode(), key)):
            raise RequestError(401, "wrong API key")

    async def read_body(request: Request) -> bytes:
        """The body, refused (413) as soon as it grows past the limit, whatever Content-Length claimed."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise RequestError(413, f"the body is {int(declared):,} bytes; the limit is {limits.max_body_bytes:,}")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limits.max_body_bytes:
                raise RequestError(413, f"the body is over the limit of {limits.max_body_bytes:,} bytes")
        return bytes(body)

    async def generate(request: Request) -> Response:
        arrived = time.monotonic()
        try:
            authorised(request)
            try:
                # The limit counts from the request's arrival: a client that
                # stops sending its body holds nothing past it (nor a drain).
                body = await asyncio.wait_for(read_body(request), timeout=limits.timeout_s)
            except TimeoutError:
                raise RequestError(
                    408, f"the request's body did not arrive within this server's limit of {limits.timeout_s:g} s"
                ) from None
            asked = parse_generate(body, vocab, limits)
            generation = Generation(
                asked.request, batcher, limits.timeout_s, default_text, stream=asked.stream, arrived=arrived
            )
            generation.submit()
        except RequestError as err:
            return error_response(err)
        except ClientDisconnect:
            return Response(status_code=400)
        if asked.stream:
            return StreamingResponse(_events(generation), media_type="text/event-stream", headers=_NO_CACHE)
        return await _whole(generation, request)

    async def model_info(request: Request) -> Response:
        try:
            authorised(request)
        except RequestError as err:
            return error_response(err)
        return JSONResponse(
            {
                "model": config.describe(),
                "config": to_dict(config),
                "vocab": vocab.chars,
                "default_prime": default_text,
                **(about or {}),
                "limits": to_dict(limits),
                "load": batcher.load(),
                "failure": batcher.failure,  # why generation stopped for good, or null
            }
        )

    async def health(request: Request) -> Response:
        if batcher.failure is not None:  # broken for good: a supervisor should restart the server
            # Why is for those with the key (GET /v1/model): this path needs none.
            return JSONResponse({"status": "failed"}, status_code=503)
        if batcher.closed:  # its lifespan has ended (a mounted app whose host serves on): it generates no more
            return JSONResponse({"status": "stopped"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def home(request: Request) -> Response:
        return HTMLResponse(page, headers=page_headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if batcher.closed:  # its threads have ended: they cannot run again
            raise RuntimeError("this app has served and stopped: build a new one with charlstm.app(model)")
        batcher.start()
        try:
            yield
        finally:
            batcher.close()

    routes = [
        Route("/v1/generate", generate, methods=["POST"]),
        Route("/v1/model", model_info, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/", home, methods=["GET"]),
    ]
    handlers = {HTTPException: _http_error, Exception: _internal_error}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.state.batcher, app.state.limits = batcher, limits
    return app


_NO_CACHE = {"Cache-Control": "no-store"}


def _page_policy(page: str) -> str:
    """The page may talk to this server only, and run only its own script (by hash)."""
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode("ascii")
    return (
        f"default-src 'none'; connect-src 'self'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


async def _whole(generation: Generation, request: Request) -> Response:
    """Wait for the answer (one piece, the job being `whole`); a client that
    hangs up meanwhile frees its rows (looked for every quarter second)."""
    try:
        while True:
            waiting = asyncio.ensure_future(generation.next_piece())
            while not waiting.done():
                await asyncio.wait({waiting}, timeout=0.25)
                if not waiting.done() and await request.is_disconnected():
                    waiting.cancel()
                    # It may have ended meanwhile (408): retrieve that, nobody is listening.
                    waiting.add_done_callback(lambda task: task.cancelled() or task.exception())
                    generation.job.cancel()
                    return Response(status_code=499)
            if waiting.result() is None:
                return JSONResponse(generation.answer())
    except RequestError as err:
        return error_response(err)
    except asyncio.CancelledError:  # the server is stopping now (a second signal): free the rows
        generation.job.cancel()
        raise


# Characters that JSON leaves as they are but that many line readers end a
# line at (Python's str.splitlines, and so requests' iter_lines; JavaScript's
# "." and "$"): an event's data stays on its one line as their escapes.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False).translate(_LINE_BREAKS)}\n\n"


async def _events(generation: Generation) -> AsyncIterator[str]:
    """Server-sent events; Starlette cancels this when the client disconnects."""
    try:
        while True:
            piece = await generation.next_piece()
            if piece is None:
                yield _event("done", generation.answer())
                return
            yield _event("piece", {"texts": [p.text for p in piece]})
    except RequestError as err:
        yield _event("error", err.body())
    finally:
        generation.job.cancel()  # a no-op once it has ended; frees the rows if the client left
