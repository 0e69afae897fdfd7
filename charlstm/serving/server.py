"""Running the application under uvicorn, and stopping it gently.

SIGTERM, Ctrl-C or SIGHUP (a closed terminal; left ignored under `nohup`)
stops accepting connections, lets the requests in flight
finish (up to the per-request timeout), stops the batcher, and returns: the
process exits 0. (uvicorn would otherwise re-raise the signal once it has
drained, and the process would end with 143.) A second signal while they
finish cuts them off with uvicorn's forced exit and returns; `charlstm
serve` ends its process at once instead (its `on_stop`), since uvicorn's
forced exit logs a traceback for every request it cancels, where the user
only asked to stop now. A library never ends the process it runs in.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from charlstm.errors import CharlstmError
from charlstm.flags import flag

# SIGHUP as training takes it: until 2026-12-05 a closed terminal ended the
# server at once, cutting off its clients (a walkthrough).
HANDLED = (signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else []))


class _Server(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, on_ready: Callable[[], None] | None, on_stop: Callable[[int], None] | None
    ):
        super().__init__(config)
        self._on_ready, self._on_stop = on_ready, on_stop

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        hangup = getattr(signal, "SIGHUP", None)
        kept = {hangup} if hangup is not None and signal.getsignal(hangup) is signal.SIG_IGN else set()  # nohup
        before = {sig: signal.signal(sig, self._stop) for sig in HANDLED if sig not in kept}
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)

    def _stop(self, sig: int, frame: Any) -> None:
        # A closed terminal sends SIGHUP twice (the shell's, then the
        # kernel's): only the first is a stop; only Ctrl-C or SIGTERM mean "now".
        if sig == getattr(signal, "SIGHUP", None) and self.should_exit:
            return
        if self._on_stop is not None:
            self._on_stop(sig)  # told on each signal
        if self.should_exit:  # a second signal: stop now, without the requests in flight
            self.force_exit = True
        self.should_exit = True

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_ready is not None:
            self._on_ready()


def host_port(host: str, port: int) -> str:
    """host:port as a URL writes it: an IPv6 address in brackets, [::1]:8000."""
    try:
        six = ipaddress.ip_address(host).version == 6
    except ValueError:  # a name, or a mistake such as localhost:80, said as given
        six = False
    return f"[{host}]:{port}" if six else f"{host}:{port}"


def check_address(host: str, port: int) -> None:
    """A clear error now, rather than uvicorn's exit, if the address cannot be listened on."""
    if not host.strip():  # an unset "$HOST": getaddrinfo's "Name or service not known" says nothing of it
        raise CharlstmError(
            f"{flag('host')} is {'blank' if host else 'empty'}: give an address, such as 127.0.0.1 "
            "(this machine only) or 0.0.0.0 (every interface)"
        )
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        # `localhost:80`, `[::1]` or a URL, as a browser's address bar takes them.
        alone = any(c in host for c in ":/[]") or host != host.strip()
        hint = f" (the host alone: its port goes in {flag('port')}, an IPv6 address without brackets)" * alone
        raise CharlstmError(f"cannot listen on {host_port(host, port)}: {err.strerror}{hint}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # Not on Windows, whose SO_REUSEADDR binds even a port another socket listens on.
        if os.name != "nt":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as err:
            raise CharlstmError(f"cannot listen on {host_port(host, port)}: {err.strerror}") from None


def run(
    app: Any,
    host: str,
    port: int,
    *,
    drain_s: float,
    access_log: bool = False,
    on_ready: Callable[[], None] | None = None,
    on_stop: Callable[[int], None] | None = None,
) -> None:
    """Serve `app` until a signal. Raises CharlstmError if it never started
    (its lifespan failed, or its socket: uvicorn has logged why)."""
    check_address(host, port)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=_log_config(),
        access_log=access_log,
        timeout_graceful_shutdown=round(drain_s),
        lifespan="on",
        server_header=False,
    )
    server = _Server(config, on_ready, on_stop)
    try:
        server.run()
    except SystemExit as stop:  # uvicorn's way out of a failed startup: a library raises instead
        if stop.code not in (0, None):
            raise _not_started(host, port) from None
        raise
    if not server.started:
        raise _not_started(host, port)


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, on stderr: its warnings and errors, and the access
    log where asked for (`access_log`), but not its start and stop lines,
    which charlstm says in its own words."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    return config


def _not_started(host: str, port: int) -> CharlstmError:
    return CharlstmError(
        f"the server on {host_port(host, port)} did not start: its startup failed (the lines above say why)"
    )
