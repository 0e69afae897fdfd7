"""The `charlstm` command line: parse options, call the library, render.

`app.py` holds the Typer application and what all commands share; the other
modules hold the commands: `training` (train, resume), `sampling` (sample),
`tuning` (tune) and `inspection` (eval, inspect, runs, info, plot). They are
registered here, in the order `--help` lists them.
"""

from charlstm.cli import inspection, sampling, training, tuning
from charlstm.cli.app import app, main

app.command()(training.train)
app.command()(training.resume)
app.command()(sampling.sample)
app.command()(tuning.tune)
app.command("eval")(inspection.evaluate)
app.command("inspect")(inspection.inspect_model)
app.command("runs")(inspection.list_runs)
app.command()(inspection.info)
app.command()(inspection.plot)

__all__ = ["app", "main"]
