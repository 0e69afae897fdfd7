"""The Python API: train, resume or load a model; sample from it, score text.

    import charlstm

    model = charlstm.train("shakespeare.txt", out="runs/demo", steps=300)
    print(model.sample(200, temperature=0.8, prime="ROMEO."))
    print(model.evaluate(open("hamlet.txt").read()).bits_per_char)
    seen = model.inspect("To be, or not to be")  # gates, c, h, predictions per character
    model = charlstm.load("runs/demo")  # later: its best checkpoint

The `charlstm` command line is a thin layer over these functions: every
command parses its options, calls one of them and renders what comes back.

`model` holds `Model` and `load`; `training` holds `train`, `resume`,
`with_warnings` and `TrainingDiverged`; `tuning` holds `tune`; `serving` the HTTP server (`app`, `serve`); `runs`
what is on disk (`list_runs`, `describe`, `read_text`, `read_texts`, `find_texts`, `plot_runs`, `plot_gradients`). Each
calls into the package's layers below: `charlstm.training` for runs and
checkpoints, `charlstm.core` for the model, `charlstm.serving` for the server.
"""

from charlstm.api.model import Model, load
from charlstm.api.runs import (
    Description,
    TextFiles,
    Texts,
    describe,
    find_texts,
    list_runs,
    plot_gradients,
    plot_runs,
    read_text,
    read_texts,
)
from charlstm.api.serving import app, serve
from charlstm.api.training import TrainingDiverged, resume, train, with_warnings
from charlstm.api.tuning import tune

__all__ = [
    "Description",
    "Model",
    "TextFiles",
    "Texts",
    "TrainingDiverged",
    "app",
    "describe",
    "find_texts",
    "list_runs",
    "load",
    "plot_gradients",
    "plot_runs",
    "read_text",
    "read_texts",
    "resume",
    "serve",
    "train",
    "tune",
    "with_warnings",
]
