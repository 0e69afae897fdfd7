"""The `charlstm` command line: the only part of the package that prints.

`app` holds the Typer application and what every command shares (consoles,
one-line errors, exit statuses), `usage` what a mistyped command line is
told; `training` (train, resume), `sampling` (sample), `tuning` (tune),
`inspection` (eval, inspect, runs, info, plot), `exporting` (export) and
`serving` (serve) hold the commands, each parsing its options, calling
`charlstm.api` and rendering what comes back, and `running` a training
command's run (joining, signals, how it ended). `display` is the live
training display (`search_display` tune's, `reading_display` the corpus
being read and a text being scored), `tables` and `inspect_tables` the rich
tables, `records` the `--json` output, `format` the number formats,
`signals` the Ctrl-C handling and `outputs` what happens when the output's
reader goes away (`| head`). The commands are registered here, in the
order `--help` lists them.
"""

from charlstm.cli import exporting, inspection, sampling, serving, training, tuning
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
app.command()(exporting.export)
app.command()(serving.serve)

__all__ = ["app", "main"]
