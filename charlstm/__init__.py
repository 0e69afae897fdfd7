"""charlstm: character-level text generation with an LSTM in JAX.

The public API (see `charlstm.api`):

    train(corpus, out=None, **options) -> Model
    resume(run_dir, **overrides) -> Model
    load(path) -> Model
    Model.sample(length, temperature=..., prime=..., seed=..., top_k=..., top_p=...) -> str
    Model.generate(SampleConfig) -> list[str];  Model.stream(SampleConfig) -> Iterator[list[str]]
    Model.evaluate(text) -> Score (loss, bits_per_char, perplexity, chars, skipped)
    Model.inspect(text) -> Inspection (gates, c, h and predictions per character)

They are imported on first use, so `import charlstm` (and `charlstm --help`)
does not load JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "train": "charlstm.api",
    "resume": "charlstm.api",
    "load": "charlstm.api",
    "Model": "charlstm.api",
    "TrainingDiverged": "charlstm.api",
    "Score": "charlstm.evaluate",
    "Inspection": "charlstm.introspect",
    "ModelConfig": "charlstm.config",
    "TrainConfig": "charlstm.config",
    "SampleConfig": "charlstm.config",
    "CharlstmError": "charlstm.errors",
    "enable_compilation_cache": "charlstm.compile_cache",
    "keep_host_memory": "charlstm.hostmem",
}
__all__ = [
    "CharlstmError",
    "Inspection",
    "Model",
    "ModelConfig",
    "SampleConfig",
    "Score",
    "TrainConfig",
    "TrainingDiverged",
    "__version__",
    "enable_compilation_cache",
    "keep_host_memory",
    "load",
    "resume",
    "train",
]

if TYPE_CHECKING:
    from charlstm.api import Model, TrainingDiverged, load, resume, train
    from charlstm.compile_cache import enable_compilation_cache
    from charlstm.config import ModelConfig, SampleConfig, TrainConfig
    from charlstm.errors import CharlstmError
    from charlstm.evaluate import Score
    from charlstm.hostmem import keep_host_memory
    from charlstm.introspect import Inspection


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'charlstm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
