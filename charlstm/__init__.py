"""charlstm: character-level text generation with an LSTM in JAX.

The public API (see `charlstm.api`):

    train(corpus, out=None, **options) -> Model
    resume(run_dir, **overrides) -> Model
    load(path) -> Model
    Model.sample(length, temperature=..., prime=..., seed=..., top_k=..., top_p=..., stop=...) -> str
    Model.generate(SampleConfig) -> list[str];  Model.stream(SampleConfig) -> Iterator[list[str]]
    Model.evaluate(text or [documents]) -> Score (loss, bits_per_char, perplexity, chars, skipped)
    Model.inspect(text) -> Inspection (gates, c, h and predictions per character)
    Model.complete(SampleConfig) -> list[Completion] (text, finish_reason)
    Model.export_html(path, half=False);  Model.export_weights(directory)
    app(model, api_key=None, **ServeConfig fields) -> ASGI app;  serve(model, host, port, ...)
    tune(corpus, ...) -> Search;  list_runs(runs_dir) -> [RunSummary]
    describe(path) -> Description (meta, params, validation)

They are imported on first use, so `import charlstm` (and `charlstm --help`)
does not load JAX.
"""

from __future__ import annotations

import importlib

# Not typing's: `charlstm` (the command) imports this package before its
# Ctrl-C handler is in place (`__main__.py`), so it imports nothing that
# takes time (typing brings re and enum). Type checkers read the name
# TYPE_CHECKING as true wherever it is defined.
TYPE_CHECKING = False

__version__ = "0.1.0"

_EXPORTS = {
    "train": "charlstm.api",
    "resume": "charlstm.api",
    "load": "charlstm.api",
    "tune": "charlstm.api",
    "with_warnings": "charlstm.api",
    "list_runs": "charlstm.api",
    "describe": "charlstm.api",
    "app": "charlstm.api",
    "serve": "charlstm.api",
    "Model": "charlstm.api",
    "TrainingDiverged": "charlstm.api",
    "Score": "charlstm.core.scorer",
    "Completion": "charlstm.core.generation",
    "Description": "charlstm.api.runs",
    "Texts": "charlstm.api.runs",
    "TextFiles": "charlstm.api.runs",
    "ExportedPage": "charlstm.export.page",
    "ExportedWeights": "charlstm.export.weights",
    "Report": "charlstm.introspect.page",
    "RunSummary": "charlstm.training.catalog",
    "Search": "charlstm.training.tune",
    "TrialResult": "charlstm.training.events",
    "Inspection": "charlstm.introspect.record",
    "ModelConfig": "charlstm.config",
    "TrainConfig": "charlstm.config",
    "SampleConfig": "charlstm.config",
    "ServeConfig": "charlstm.config",
    "CharlstmError": "charlstm.errors",
    "CharlstmWarning": "charlstm.errors",
    "ConfigError": "charlstm.errors",
    "CorpusError": "charlstm.errors",
    "CheckpointError": "charlstm.errors",
    "deterministic_gpu_ops": "charlstm.runtime.gpu_determinism",
    "enable_compilation_cache": "charlstm.runtime.compile_cache",
    "keep_host_memory": "charlstm.runtime.hostmem",
    "split_the_cpu": "charlstm.runtime.cpu_devices",
}
__all__ = [
    "CharlstmError",
    "CharlstmWarning",
    "CheckpointError",
    "Completion",
    "ConfigError",
    "CorpusError",
    "Description",
    "ExportedPage",
    "ExportedWeights",
    "Inspection",
    "Model",
    "ModelConfig",
    "Report",
    "RunSummary",
    "SampleConfig",
    "Score",
    "Search",
    "ServeConfig",
    "TextFiles",
    "Texts",
    "TrainConfig",
    "TrainingDiverged",
    "TrialResult",
    "__version__",
    "app",
    "describe",
    "deterministic_gpu_ops",
    "enable_compilation_cache",
    "keep_host_memory",
    "list_runs",
    "load",
    "resume",
    "serve",
    "split_the_cpu",
    "train",
    "tune",
    "with_warnings",
]

if TYPE_CHECKING:
    from typing import Any

    from charlstm import api as api
    from charlstm.api import (
        Model,
        TrainingDiverged,
        app,
        describe,
        list_runs,
        load,
        resume,
        serve,
        train,
        tune,
        with_warnings,
    )
    from charlstm.api.runs import Description, TextFiles, Texts
    from charlstm.config import ModelConfig, SampleConfig, ServeConfig, TrainConfig
    from charlstm.core.generation import Completion
    from charlstm.core.scorer import Score
    from charlstm.errors import CharlstmError, CharlstmWarning, CheckpointError, ConfigError, CorpusError
    from charlstm.export.page import ExportedPage
    from charlstm.export.weights import ExportedWeights
    from charlstm.introspect.page import Report
    from charlstm.introspect.record import Inspection
    from charlstm.runtime.compile_cache import enable_compilation_cache
    from charlstm.runtime.cpu_devices import split_the_cpu
    from charlstm.runtime.gpu_determinism import deterministic_gpu_ops
    from charlstm.runtime.hostmem import keep_host_memory
    from charlstm.training.catalog import RunSummary
    from charlstm.training.events import TrialResult
    from charlstm.training.tune import Search


# The package's layer of the library, reached as `charlstm.api` after a
# plain `import charlstm` (the docs name `charlstm.api.read_texts`), as the
# names above are.
_SUBMODULES = {"api"}

# Hidden from type checkers, which would otherwise read any name at all as
# charlstm's (of type Any): `charlstm.lod(...)` would pass `mypy --strict`.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name in _SUBMODULES:
            return importlib.import_module(f"charlstm.{name}")  # the import sets it on the package
        if name not in _EXPORTS:
            raise AttributeError(f"module 'charlstm' has no attribute {name!r}")
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
