"""JAX's global settings that charlstm's numbers depend on, held at JAX's
defaults while charlstm computes, whatever the user's shell or notebook set
for their own code.

Each was met in a walkthrough (2026-12-07) with a variable a scientist's
shell may export: `JAX_ENABLE_X64=1` made new weights float64, so every
checkpoint saved without it read back as "damaged" and the default cell's
scan failed on a float32 carry; `JAX_NUMPY_RANK_PROMOTION=raise` refused the
cells' broadcast biases; `JAX_NUMPY_DTYPE_PROMOTION=strict` failed inside
Optax; `JAX_TRANSFER_GUARD=disallow` refused the host's arrays;
`JAX_DISABLE_JIT=1` waited minutes, then could not call a compiled step; and
`JAX_DEBUG_NANS=1` turned a diverged run's message into a traceback; and
another random generator (`JAX_DEFAULT_PRNG_IMPL=rbg`,
`JAX_THREEFRY_PARTITIONABLE=0`) drew other texts from the same seed.

The CLI sets the variables before JAX starts (`for_the_command_line`), so
every thread of a command, a server's included, computes as with JAX's
defaults. The library leaves the caller's global settings alone and holds
its own only while its functions run (`held`, `holding`): JAX keeps these
per thread, so a caller's code between a stream's pieces keeps theirs.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

# The variable, the value charlstm computes with (JAX's default), and the
# config option it sets.
DEFAULTS: tuple[tuple[str, str, str | bool], ...] = (
    ("JAX_ENABLE_X64", "jax_enable_x64", False),
    ("JAX_NUMPY_RANK_PROMOTION", "jax_numpy_rank_promotion", "allow"),
    ("JAX_NUMPY_DTYPE_PROMOTION", "jax_numpy_dtype_promotion", "standard"),
    ("JAX_TRANSFER_GUARD", "jax_transfer_guard", "allow"),
    ("JAX_TRANSFER_GUARD_HOST_TO_DEVICE", "jax_transfer_guard_host_to_device", "allow"),
    ("JAX_TRANSFER_GUARD_DEVICE_TO_DEVICE", "jax_transfer_guard_device_to_device", "allow"),
    ("JAX_TRANSFER_GUARD_DEVICE_TO_HOST", "jax_transfer_guard_device_to_host", "allow"),
    ("JAX_DISABLE_JIT", "jax_disable_jit", False),
    ("JAX_DEBUG_NANS", "jax_debug_nans", False),
    ("JAX_DEBUG_INFS", "jax_debug_infs", False),
    # The random bits behind every key: another generator draws other
    # dropout masks and other samples, and its keys have another shape
    # (a review, 2026-12-07: `rbg` read every checkpoint as damaged).
    ("JAX_DEFAULT_PRNG_IMPL", "jax_default_prng_impl", "threefry2x32"),
    ("JAX_THREEFRY_PARTITIONABLE", "jax_threefry_partitionable", True),
)

# Where a user picks the backend; a failure to start it is theirs to fix.
PLATFORM_VARIABLES = ("JAX_PLATFORMS", "JAX_PLATFORM_NAME")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def for_the_command_line() -> None:
    """Set every variable of DEFAULTS to JAX's default, before JAX is
    imported. The commands say nothing of it: their numbers are the same."""
    for variable, _, value in DEFAULTS:
        os.environ[variable] = str(value).lower() if isinstance(value, bool) else value


@contextlib.contextmanager
def held() -> Iterator[None]:
    """JAX's defaults for DEFAULTS, in this thread, while the block runs."""
    import jax

    with contextlib.ExitStack() as stack:
        for _, option, value in DEFAULTS:
            now = getattr(jax.config, option)  # this thread's: a caller's own block counts
            if now != value and not (now is None and option.startswith("jax_transfer_guard")):  # None: allowed
                stack.enter_context(_context(option, value))
        yield


def _context(option: str, value: str | bool) -> contextlib.AbstractContextManager[Any]:
    import jax

    if option.startswith("jax_transfer_guard"):
        kind = option.removeprefix("jax_transfer_guard").lstrip("_")
        return getattr(jax, f"transfer_guard_{kind}" if kind else "transfer_guard")(value)
    if option == "jax_disable_jit":
        return jax.disable_jit(False)
    state: Callable[[Any], contextlib.AbstractContextManager[Any]] = getattr(jax, option.removeprefix("jax_"))
    return state(value)


def held_pieces(inner: Iterator[T]) -> Generator[T, None, Any]:
    """`inner`'s pieces, each computed under `held()`, so that the caller's
    code between pieces keeps its own settings."""
    try:
        while True:
            with held():
                try:
                    piece = next(inner)
                except StopIteration as done:
                    return done.value
            yield piece
    finally:
        close = getattr(inner, "close", None)
        if close is not None:
            close()


def holding(function: F) -> F:
    """`function` run under `held()`; a generator function's body piece by piece (`held_pieces`)."""
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def pieces(*args: Any, **kwargs: Any) -> Generator[Any, None, Any]:
            return (yield from held_pieces(function(*args, **kwargs)))

        return pieces  # type: ignore[return-value]

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        with held():
            return function(*args, **kwargs)

    return run  # type: ignore[return-value]


def bad_value(err: ValueError) -> str | None:
    """Where `err` is JAX refusing, as it starts, a value the environment
    gives one of its options (`JAX_DEFAULT_MATMUL_PRECISION=bogus`, an empty
    `JAX_NUM_CPU_DEVICES=`: a traceback from `import jax`, a walkthrough of
    2026-12-07), one line naming the variable; None otherwise."""
    # JAX's two wordings: an option's parser, and a yes/no variable's.
    said = re.fullmatch(r'Invalid value "(?:.*)" for JAX flag (\w+)', str(err), re.DOTALL) or re.fullmatch(
        r"invalid truth value (?:.*) for environment '(\w+)'", str(err), re.DOTALL
    )
    if said is None or said[1].upper() not in os.environ:
        return None
    variable = said[1].upper()
    value = os.environ[variable]
    return f"JAX cannot start: {variable}={value!r} in the environment is not a value it takes; correct it, or unset it"


def backend_unavailable() -> str | None:
    """Where the user's JAX_PLATFORMS (or JAX_PLATFORM_NAME) names a backend
    JAX cannot start, one line saying so; None otherwise. Called after an
    error that may have come from there (a bare AssertionError, say, from
    `jax.process_count()` with `JAX_PLATFORMS=cuda` and no CUDA plugin)."""
    chosen = [f"{name}={os.environ[name]}" for name in PLATFORM_VARIABLES if os.environ.get(name)]
    if not chosen:
        return None
    import jax

    try:
        jax.devices()
    except (RuntimeError, AssertionError) as err:
        said = str(err).strip().splitlines()
        why = f" ({said[0]})" if said else ""
        return (
            f"JAX cannot start the backend that {' and '.join(chosen)} asks for{why}; install JAX for it "
            "(a GPU: pip install -e '.[cuda]') or unset the variable to run on the CPU"
        )
    return None
