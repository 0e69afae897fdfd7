"""The one table from configuration fields (and API arguments) to command-line flags.

Every message that names a configuration option (a config's validation
error, the CLI's help and hints, `charlstm tune`'s tables, the progress
line) spells it through this table, so renaming one is a one-line change
here. Options that only one command has and no config holds (`sample`'s
`--prime-file`, `--greedy` and `--output`, `inspect`'s `--text` and
`--top`) are spelt where that command declares them.

A message names an option as its reader gives it: `flag` is the flag
(`--lr`) while a command runs (`command_line`, which the CLI enters for
each command) and the keyword (`learning_rate`) for a Python caller.
`option` is always the flag: the CLI's declarations, and a command line a
message suggests.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

# Whether the messages made now are for a command line (the CLI's) or for a
# Python caller. A context variable, not a global: a test process runs both.
_ON_THE_COMMAND_LINE: ContextVar[bool] = ContextVar("charlstm_on_the_command_line", default=False)

# Config field (ModelConfig, TrainConfig, SampleConfig) or keyword argument of
# the API -> its flag. A name means the same flag wherever it appears
# (`--seed`, `--steps`).
FLAGS: Mapping[str, str] = {
    # ModelConfig
    "hidden_size": "--hidden",
    "num_layers": "--layers",
    "embed_dim": "--embed",
    "cell": "--cell",
    "norm": "--norm",
    # TrainConfig
    "steps": "--steps",
    "batch_size": "--batch-size",
    "seq_len": "--seq-len",
    "learning_rate": "--lr",
    "warmup_steps": "--warmup",
    "min_lr_ratio": "--min-lr-ratio",
    "weight_decay": "--weight-decay",
    "dropout": "--dropout",
    "grad_clip": "--clip",
    "val_fraction": "--val-fraction",
    "reset_chars": "--reset-chars",
    "eval_every": "--eval-every",
    "checkpoint_every": "--checkpoint-every",
    "log_every": "--log-every",
    "max_seconds": "--max-time",  # given in minutes on the command line
    "seed": "--seed",
    "patience": "--patience",
    "precision": "--precision",
    # SampleConfig
    "length": "--length",
    "temperature": "--temp",
    "prime": "--prime",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "num_samples": "--num-samples",
    "stop": "--stop",
    # Arguments of charlstm.train / resume that are not config fields
    "out": "--out",
    "preset": "--preset",
    "fill_time": "--fill-time",
    "devices": "--devices",
    "coordinator": "--coordinator",
    "num_processes": "--num-processes",
    "process_id": "--process-id",
    "force": "--force",
    "corpus": "--corpus",  # resume's, eval's, inspect's and charlstm.load's: where a run's corpus moved to
    "glob": "--glob",
    "val_file": "--val-file",
    "skip_bad_files": "--skip-bad-files",
    "init_from": "--init-from",
    "checkpoint": "--checkpoint",  # the model to sample, as `charlstm sample` names it
    "max_chars": "--max-chars",  # Model.inspect's, as `charlstm inspect` names it
    "streams": "--streams",  # Model.evaluate's, as `charlstm eval` names it
    # charlstm.tune's
    "trials": "--trials",
    "budget_s": "--budget-s",
    "grid": "--grid",
    "keep_all": "--keep-all",
    # charlstm plot (api.plot_runs, api.plot_gradients)
    "width_px": "--width",
    "height_px": "--height",
    # charlstm export
    "html": "--html",
    "half": "--half",
    "weights": "--weights",
    # charlstm serve (ServeConfig and the server's address)
    "host": "--host",
    "port": "--port",
    "api_key": "--api-key",
    "max_length": "--max-length",
    "max_samples": "--max-samples",
    "max_body_bytes": "--max-body",
    "timeout_s": "--timeout",
    "max_batch": "--max-batch",
    "chunk": "--chunk",
    "max_waiting": "--max-waiting",
}


def option(field: str) -> str:
    """The flag that sets config `field` on the command line; a field without one keeps its own name."""
    return FLAGS.get(field, field)


# The keywords that switch something on, as a Python caller turns them on.
_SWITCHES = frozenset({"force", "skip_bad_files", "fill_time", "half", "keep_all", "grid"})


def flag(field: str) -> str:
    """`field` as a message names it to its reader: the flag (`option`) while
    a command runs, the keyword for a Python caller (`force=True` for a switch)."""
    if _ON_THE_COMMAND_LINE.get():
        return option(field)
    return f"{field}=True" if field in _SWITCHES else field


def on_the_command_line() -> bool:
    """Whether messages made now are read on a command line (`command_line`)."""
    return _ON_THE_COMMAND_LINE.get()


@contextmanager
def command_line() -> Iterator[None]:
    """Messages made inside name options by their flags (the CLI's commands)."""
    token = _ON_THE_COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _ON_THE_COMMAND_LINE.reset(token)


def label(field: str) -> str:
    """The flag without its dashes, as a column heading: `lr`, `hidden`."""
    return option(field).lstrip("-")


def as_options(values: Mapping[str, float]) -> str:
    """Config values as the options that would set them: `--lr 0.004 --hidden 256`."""
    return " ".join(f"{option(field)} {value:g}" for field, value in values.items())
