"""JAX's persistent compilation cache, kept in a per-user directory.

Compiling the sampler or the training step takes seconds; with the cache a
second `charlstm sample` on the same model shape loads the compiled program
from disk instead. The CLI turns it on for every command; library users
call `enable_compilation_cache()` themselves if they want it.

    CHARLSTM_CACHE_DIR   where to keep it (default: JAX_COMPILATION_CACHE_DIR,
                         JAX's own, where set; else $XDG_CACHE_HOME/charlstm/jax,
                         else ~/.cache/charlstm/jax)
    CHARLSTM_NO_CACHE=1  turn it off (as does `charlstm --no-cache ...`)
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS
                         cache only programs that took this long to compile
                         (JAX's own setting; charlstm's default is 0.2)
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from charlstm.arguments import path_like

ENV_DIR = "CHARLSTM_CACHE_DIR"
ENV_OFF = "CHARLSTM_NO_CACHE"
JAX_ENV_DIR = "JAX_COMPILATION_CACHE_DIR"
MIN_COMPILE_TIME_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"


def cache_dir() -> Path | None:
    """Where the cache lives, or None when the environment turns it off."""
    if os.environ.get(ENV_OFF, "").strip().lower() not in ("", "0", "false", "no"):
        return None
    for variable in (ENV_DIR, JAX_ENV_DIR):  # a user who moved JAX's cache (a small home quota) meant it here too
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "charlstm" / "jax"


def turn_off() -> None:
    """No persistent cache in this process, not even JAX's own: what
    `--no-cache` and CHARLSTM_NO_CACHE=1 promise (a review, 2026-12-07).
    Before JAX starts, which reads `JAX_COMPILATION_CACHE_DIR` as it does."""
    os.environ.pop(JAX_ENV_DIR, None)


def enable_compilation_cache(directory: str | Path | None = None) -> Path | None:
    """Cache compiled programs in `directory` (default: `cache_dir()`).
    Returns the directory used, or None if caching is off or impossible
    (an unwritable location only costs speed, so it is not an error)."""
    if directory:  # "" is the default, as None is (a CHARLSTM_... variable set empty)
        path_like(directory, "directory")
    directory = Path(directory) if directory else cache_dir()
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError:
        # Read-only (a read-only home, a shared cache): what it holds is
        # still read, and JAX's warning for every program it cannot add
        # (two lines each, between a run's lines) says nothing to act on.
        warnings.filterwarnings("ignore", message="Error writing persistent compilation cache entry")
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    # JAX by default skips programs that compile in under a second; the
    # sampler for a small model is one of those, and it is exactly what a
    # user waits for at every `charlstm sample`. JAX's own environment
    # variable, where set, still decides.
    if MIN_COMPILE_TIME_ENV not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return directory
