"""The HTTP server of `charlstm serve`, as an ASGI app to mount (`app`) or
run with uvicorn (`serve`); needs the serve extra."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from charlstm.api.model import Model
from charlstm.arguments import check_api_key, check_port, optional_callable, unknown_fields
from charlstm.config import ServeConfig
from charlstm.errors import CharlstmError, ConfigError
from charlstm.runtime.jax_settings import holding
from charlstm.training import checkpoint_paths

if TYPE_CHECKING:
    from starlette.applications import Starlette


@holding
def app(model: Model, *, api_key: str | None = None, **limits: Any) -> Starlette:
    """The HTTP server for `model` as an ASGI application (Starlette), to
    run under any ASGI server or mount in your own: POST /v1/generate,
    GET /v1/model, GET /healthz and a page at /. `limits` are ServeConfig
    fields (max_length=, max_samples=, timeout_s=, max_batch=, ...);
    with `api_key` every endpoint but /healthz and the page needs
    `Authorization: Bearer KEY`. Needs the serve extra."""
    try:
        from charlstm.serving.app import create_app
    except ImportError as err:
        raise _needs_the_extra(err) from None
    _check_model(model, "app")
    check_api_key(api_key)
    wrong = unknown_fields(limits, ServeConfig)
    if wrong:
        raise ConfigError(f"unknown server option: {wrong}")
    config = ServeConfig(**limits)
    about = {
        "checkpoint": checkpoint_paths.checkpoint_name(model.path),
        "step": model.step,
        "best_val_loss": model.best_val_loss,
    }
    return create_app(model.model_config, model.params, model.vocab, limits=config, api_key=api_key, about=about)


def _check_model(model: Any, function: str) -> None:
    if not isinstance(model, Model):
        raise ConfigError(f"{function} takes a charlstm.Model, such as charlstm.load(RUN), got {type(model).__name__}")


@holding
def serve(
    model: Model,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_key: str | None = None,
    access_log: bool = False,
    on_ready: Callable[[], None] | None = None,
    on_stop: Callable[[int], None] | None = None,
    **limits: Any,
) -> None:
    """Serve `app(model, ...)` with uvicorn on host:port until SIGTERM or
    Ctrl-C, which stop taking connections, let the requests in flight
    finish, and return; a second signal cuts them off (uvicorn's forced
    exit, which logs each one cancelled) and returns: the process goes on.
    `on_ready` is called once it listens, `on_stop` with each signal, before
    it acts on it (`charlstm serve` ends its process there on the second).
    Raises CharlstmError where it cannot listen or its startup fails."""
    try:
        from charlstm.serving import server  # uvicorn: the extra may be half installed

        # Starlette too: a half-installed extra is named before the model is checked (app() builds the app).
        from charlstm.serving.app import create_app  # noqa: F401
    except ImportError as err:
        raise _needs_the_extra(err) from None
    _check_model(model, "serve")
    check_port(port)
    optional_callable(on_ready, "on_ready")
    optional_callable(on_stop, "on_stop")
    application = app(model, api_key=api_key, **limits)

    drain = application.state.limits.timeout_s + 5  # every request in flight can finish
    try:
        server.run(application, host, port, drain_s=drain, access_log=access_log, on_ready=on_ready, on_stop=on_stop)
    finally:
        # Its lifespan closes it, but not after a second signal (uvicorn's
        # forced exit skips the lifespan's end): its threads must not outlive `serve`.
        application.state.batcher.close()


def _needs_the_extra(err: ImportError) -> CharlstmError:
    package = (err.name or "a package").split(".")[0]  # starlette, not starlette.applications
    return CharlstmError(f"serving needs the serve extra ({package} is missing): pip install 'charlstm[serve]'")
