"""`charlstm serve`: the model behind a local HTTP server that batches its clients."""

from __future__ import annotations

import ipaddress
import os
import signal
from typing import Annotated, Any

import typer

from charlstm.arguments import check_api_key, check_port
from charlstm.cli.app import NewestRunArgument, QuietAlone, fail, say, use_cache, user_errors
from charlstm.cli.signals import end_now
from charlstm.config import ServeConfig
from charlstm.flags import option

API_KEY_ENV = "CHARLSTM_API_KEY"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def serve(
    checkpoint: NewestRunArgument = None,
    host: Annotated[
        str, typer.Option(option("host"), help="Address to listen on; 0.0.0.0 is every interface (warned about).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(option("port"), help="Port to listen on.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            option("api_key"),
            envvar=API_KEY_ENV,
            help="Require 'Authorization: Bearer KEY' on every endpoint but /healthz and the page.",
            show_default=False,
        ),
    ] = None,
    max_length: Annotated[
        int, typer.Option(option("max_length"), help="Most characters a sample may ask for.")
    ] = ServeConfig.max_length,
    max_samples: Annotated[
        int, typer.Option(option("max_samples"), help="Most samples (n) one request may ask for.")
    ] = ServeConfig.max_samples,
    max_body: Annotated[
        int, typer.Option(option("max_body_bytes"), help="Largest request body, in bytes.")
    ] = ServeConfig.max_body_bytes,
    timeout: Annotated[
        float, typer.Option(option("timeout_s"), help="Seconds a request may take before it is ended (408).")
    ] = ServeConfig.timeout_s,
    max_batch: Annotated[
        int, typer.Option(option("max_batch"), help="Most rows (samples) generated together in one call.")
    ] = ServeConfig.max_batch,
    chunk: Annotated[
        int,
        typer.Option(
            option("chunk"), help="Characters per call: how often requests join or leave the batch, and stream."
        ),
    ] = ServeConfig.chunk,
    max_waiting: Annotated[
        int, typer.Option(option("max_waiting"), help="Most rows waiting to join the batch; beyond, 503.")
    ] = ServeConfig.max_waiting,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request on stderr.")] = False,
    quiet: QuietAlone = False,
) -> None:
    """Serve the model over HTTP: POST /v1/generate, GET /v1/model, GET /healthz, and a page at /.

    Concurrent requests are generated together, in one batch. SIGTERM or Ctrl-C
    lets the requests in flight finish, then exits 0."""
    with user_errors():
        from charlstm import api

        limits: dict[str, Any] = {
            "max_length": max_length,
            "max_samples": max_samples,
            "max_body_bytes": max_body,
            "timeout_s": timeout,
            "max_batch": max_batch,
            "chunk": chunk,
            "max_waiting": max_waiting,
        }
        ServeConfig(**limits)  # a bad limit or key fails before the model is read
        from_env = os.environ.get(API_KEY_ENV)
        if from_env is not None and not from_env.strip() and (api_key is None or api_key == from_env):
            # Click reads an empty variable as unset: `CHARLSTM_API_KEY=$KEY` with $KEY unset must not serve openly.
            fail(f"{API_KEY_ENV} is set but empty: give it a key, or unset it to serve without one")
        check_api_key(api_key)
        check_port(port)  # before the address is tried: -1 got the resolver's own words
        from charlstm.serving.server import check_address, host_port

        check_address(host, port)  # a host that cannot be listened on is the one line, with no warning before it
        if not _loopback(host) and not quiet:
            unprotected = "" if api_key else f", and without {option('api_key')} anyone can use it"
            say(f"warning: {option('host')} {host} accepts connections from other machines{unprotected}")
        use_cache()
        model = api.load(checkpoint)
        url = f"http://{host_port(host, port)}"
        # Every interface is no address to open: this machine's own is one of them.
        page = {"0.0.0.0": f"http://127.0.0.1:{port}", "::": f"http://[::1]:{port}"}.get(host, url)

        def ready() -> None:
            if not quiet:
                say(
                    f"serving {model.path} ({model.model_config.describe()}) on {url}: POST /v1/generate, "
                    f"GET /v1/model, GET /healthz, a page at {page}/; SIGTERM or Ctrl-C stops after the requests "
                    "in flight"
                )

        signals: list[int] = []

        def stopping(sig: int) -> None:
            signals.append(sig)
            name = signal.Signals(sig).name
            if len(signals) == 1:
                if not quiet:
                    say(f"{name}: finishing the requests in flight, then stopping (again to stop now)")
                return
            if not quiet:
                say(f"{name} again: stopping now, cutting off the requests in flight")
            # At once, with the signal's status (130 for Ctrl-C), the access log and the line
            # just said flushed: uvicorn's forced exit would log a traceback for each request cut off.
            end_now(128 + sig)

        api.serve(model, host, port, api_key=api_key, access_log=access_log, on_ready=ready, on_stop=stopping, **limits)
        if not quiet:
            say("stopped")
