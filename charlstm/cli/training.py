"""`charlstm train` and `charlstm resume`: their options, and the ones the
user gave passed on to `charlstm.train` / `charlstm.resume` by the same
names. Running them, and saying how the run ended, is `cli/running.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from charlstm.cli.app import Quiet, Verbose, given, path_given, verbosity
from charlstm.cli.running import start
from charlstm.config import (
    AUTO_NORM,
    CELLS,
    FINE_TUNE_LEARNING_RATE,
    NORMS,
    PRECISIONS,
    SHORT_TEXT_DROPOUT,
    SHORT_TEXT_PATIENCE,
)
from charlstm.config import ModelConfig as _M
from charlstm.config import TrainConfig as _T
from charlstm.flags import option
from charlstm.presets import PRESETS

# Where training runs (see charlstm/training/distributed.py and processes.py); shared by train and resume.
Devices = Annotated[
    int | None,
    typer.Option(
        option("devices"),
        help="Split each batch over this many of this process's devices [default: all of them; "
        "on a CPU, 2 where the batch splits evenly]; the batch size must divide by the total over all processes.",
    ),
]
ResumeDevices = Annotated[
    int | None,
    typer.Option(
        option("devices"),
        help="Split each batch over this many of this process's devices [default: all of them; on a CPU, 2, or 1 "
        "if the run trained on 1 (give the run's own count to keep a larger one)]; the batch size must divide by "
        "the total over all processes.",
    ),
]
Coordinator = Annotated[
    str | None,
    typer.Option(
        option("coordinator"),
        envvar="CHARLSTM_COORDINATOR",
        help="HOST:PORT of process 0, to train in several processes (every process names the same); "
        "'auto': let JAX find it on a cluster.",
    ),
]
NumProcesses = Annotated[
    int | None,
    typer.Option(option("num_processes"), envvar="CHARLSTM_NUM_PROCESSES", help="Processes in a multi-process run."),
]
ProcessId = Annotated[
    int | None,
    typer.Option(option("process_id"), envvar="CHARLSTM_PROCESS_ID", help="This process's index, 0 to N-1."),
]
_MAX_TIME = (
    "Stop after this many minutes of training even if steps remain; a run of at least ten times "
    f"{option('warmup_steps')} steps that this would cut short gets its learning rate schedule fitted to end by then."
)
_FILL_TIME = (
    f"With {option('max_seconds')}: train for all of it, the step count fitted to the time (more steps than "
    f"{option('steps')}'s default where they fit, as on a GPU), the learning rate decayed by the end."
)
_DROPOUT = (
    "Drop this share of each recurrent layer's outputs in training (0: none) [default: "
    f"{_T.dropout:g}, raised up to {SHORT_TEXT_DROPOUT:g} on a short text, where the run's start says so]."
)
_EVAL_EVERY = "Steps between validation passes."
# A new run's: where none is given, a short text is validated more often (training/cadence.py).
_EVAL_EVERY_NEW = (
    "Steps between validation passes; where none is given, a short text is validated every two passes over it "
    f"instead, and its run stops after {SHORT_TEXT_PATIENCE} validation passes ({2 * SHORT_TEXT_PATIENCE} passes "
    f"over it) without a new best unless {option('patience')} or {option('fill_time')} says otherwise."
)
_CHECKPOINT_EVERY = "Steps between checkpoints."
_LOG_EVERY = "Steps between progress reports and metrics.jsonl lines."


# What a shell's Tab offers for the options that take one of a few words
# (Click's Choice would also change their error messages).
def words(*values: str) -> Callable[[], list[str]]:
    return lambda: list(values)


_PRECISION = (
    "fp32 or bf16. bf16: the training step's matrix products in bfloat16 with float32 results, for GPUs, TPUs "
    "and CPUs with bfloat16 instructions (avx512_bf16) (the parameters, optimizer, cell state and loss stay "
    "float32; sampling and validation are float32)."
)
_PATIENCE = (
    "Stop after this many validation passes in a row without a new best validation loss; the best checkpoint "
    f"is the one kept; 0: none [default: train for all {option('steps')}; on a short text, {SHORT_TEXT_PATIENCE}]."
)
_PATIENCE_RESUMED = (
    "Stop after this many validation passes in a row without a new best validation loss; 0: none [default: the "
    "run's own]."
)

# The parameters of `train` that are not charlstm.train's keyword arguments
# by the same name; every other one is passed on where the user set it.
_NOT_PASSED_ON = frozenset(
    ("ctx", "corpus", "out", "max_time", "devices", "coordinator", "num_processes", "process_id", "quiet", "verbose")
)


# What to read: `train` and `tune` take the same files, folders and options.
CorpusArgument = Annotated[
    list[str],
    typer.Argument(
        metavar="CORPUS",
        help="UTF-8 text files or folders to learn from, each file a document of its own; a shipped corpus's "
        "name (shakespeare.txt) works from any directory.",
        show_default=False,
    ),
]
GlobOption = Annotated[
    str | None,
    typer.Option(
        option("glob"),
        help="Which files of a folder to read, as a pattern relative to it ('**/*.py': every .py file at any "
        f"depth; '**/*.{{txt,md}}': both kinds, in one {option('glob')}); hidden files and folders are left out. "
        "[default: **/*.txt]",
        show_default=False,
    ),
]
ValFileOption = Annotated[
    list[Path] | None,
    typer.Option(
        option("val_file"),
        help="Validate on this file, or a folder's files, instead of holding out a share of the corpus (repeat it "
        "for several); a training folder's files given here are left out of training.",
        show_default=False,
        metavar="<Path>",  # one at a time, repeated; Typer would write <list[Path]>
        parser=path_given,
    ),
]
SkipBadFilesOption = Annotated[
    bool,
    typer.Option(
        option("skip_bad_files"),
        help="Leave out files that are not UTF-8 text, cannot be read, or whose names are not UTF-8, naming each, "
        "instead of stopping.",
    ),
]
MovedCorpusOption = Annotated[
    list[Path] | None,
    typer.Option(
        option("corpus"),
        help="Where the run's corpus is now, if it was moved or renamed (repeat it for a run that read several "
        f"files or folders, in their order, then for its {option('val_file')} ones if they moved apart); its text "
        "must still be the run's.",
        show_default=False,
        metavar="<Path>",
        parser=path_given,
    ),
]


def train(
    ctx: typer.Context,
    corpus: CorpusArgument,
    glob: GlobOption = None,
    val_file: ValFileOption = None,
    skip_bad_files: SkipBadFilesOption = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            option("init_from"),
            help="Fine-tune: start from this run's best checkpoint (or a checkpoint directory), with a fresh "
            "optimizer and schedule. The model keeps its shape; characters it never saw get new rows. The "
            f"learning rate defaults to {FINE_TUNE_LEARNING_RATE:g}, a new run's: measured, lower rates learned "
            "new text more slowly than training from scratch; "
            f"a lower {option('learning_rate')} keeps more of what the model knew.",
            show_default=False,
            parser=path_given,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(option("out"), "-o", help="Run directory [default: runs/<corpus>-<time>].", parser=path_given),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            option("preset"),
            autocompletion=words(*PRESETS),
            help="Start from a named size: "
            + "; ".join(f"{p.name} ({p.purpose})" for p in PRESETS.values())
            + ". Options given here override it.",
        ),
    ] = None,
    hidden_size: Annotated[
        int, typer.Option(option("hidden_size"), help="Hidden size (units per recurrent layer).")
    ] = _M.hidden_size,
    num_layers: Annotated[
        int, typer.Option(option("num_layers"), help="Number of stacked recurrent layers.")
    ] = _M.num_layers,
    cell: Annotated[
        str,
        typer.Option(
            option("cell"),
            autocompletion=words(*CELLS),
            help="Recurrent cell: lstm, or gru (lighter: two gates and a candidate, no cell state).",
        ),
    ] = _M.cell,
    norm: Annotated[
        str,
        typer.Option(
            option("norm"),
            autocompletion=words(*NORMS, AUTO_NORM),
            help="layer: layer normalisation inside the LSTM cell (learns faster per step, each step about 1.35x "
            "the plain cell's on a CPU), or none; auto is layer for the LSTM, none for the GRU.",
        ),
    ] = _M.norm,
    embed_dim: Annotated[int, typer.Option(option("embed_dim"), help="Character embedding size.")] = _M.embed_dim,
    steps: Annotated[int, typer.Option(option("steps"), help="Optimizer steps to train for.")] = _T.steps,
    max_time: Annotated[float | None, typer.Option(option("max_seconds"), help=_MAX_TIME)] = None,
    fill_time: Annotated[bool, typer.Option(option("fill_time"), help=_FILL_TIME)] = False,
    batch_size: Annotated[
        int, typer.Option(option("batch_size"), "-b", help="Parallel text streams per step.")
    ] = _T.batch_size,
    seq_len: Annotated[
        int, typer.Option(option("seq_len"), help="Characters per window (backprop truncation length).")
    ] = _T.seq_len,
    learning_rate: Annotated[
        float,
        typer.Option(
            option("learning_rate"),
            help="Peak learning rate (after warmup, before cosine decay); "
            f"{FINE_TUNE_LEARNING_RATE:g} when fine-tuning ({option('init_from')}).",
        ),
    ] = _T.learning_rate,
    warmup_steps: Annotated[
        int,
        typer.Option(
            option("warmup_steps"), help=f"Learning-rate warmup steps (at most a tenth of {option('steps')})."
        ),
    ] = _T.warmup_steps,
    min_lr_ratio: Annotated[
        float,
        typer.Option(
            option("min_lr_ratio"),
            help=f"Where the cosine decay ends, as a share of {option('learning_rate')} (0 to 1).",
        ),
    ] = _T.min_lr_ratio,
    weight_decay: Annotated[
        float,
        typer.Option(
            option("weight_decay"),
            help="AdamW decoupled weight decay on the recurrent and head weights (not the embedding, biases or gains).",
        ),
    ] = _T.weight_decay,
    dropout: Annotated[
        float,
        typer.Option(option("dropout"), help=_DROPOUT, show_default=False),
    ] = _T.dropout,
    grad_clip: Annotated[
        float, typer.Option(option("grad_clip"), help="Clip the global gradient norm to this (inf: no clipping).")
    ] = _T.grad_clip,
    val_fraction: Annotated[
        float, typer.Option(option("val_fraction"), help="Share of the text, from its end, held out for validation.")
    ] = _T.val_fraction,
    reset_chars: Annotated[
        int,
        typer.Option(
            option("reset_chars"),
            help="Restart each stream's carried state from zero every this many characters (staggered), as "
            "sampling starts; 0: only at each new pass over the text.",
        ),
    ] = _T.reset_chars,
    eval_every: Annotated[int, typer.Option(option("eval_every"), help=_EVAL_EVERY_NEW)] = _T.eval_every,
    checkpoint_every: Annotated[
        int, typer.Option(option("checkpoint_every"), help=_CHECKPOINT_EVERY)
    ] = _T.checkpoint_every,
    log_every: Annotated[int, typer.Option(option("log_every"), help=_LOG_EVERY)] = _T.log_every,
    seed: Annotated[
        int,
        typer.Option(option("seed"), help="Random seed (-2147483648 to 2147483647): the initial weights and dropout."),
    ] = _T.seed,
    patience: Annotated[int | None, typer.Option(option("patience"), help=_PATIENCE, show_default=False)] = None,
    precision: Annotated[
        str, typer.Option(option("precision"), autocompletion=words(*PRECISIONS), help=_PRECISION)
    ] = _T.precision,
    devices: Devices = None,
    coordinator: Coordinator = None,
    num_processes: NumProcesses = None,
    process_id: ProcessId = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Train a new model on CORPUS (files and folders) and save checkpoints in a run directory."""
    level = verbosity(quiet, verbose)
    options = given(ctx, (name for name in ctx.params if name not in _NOT_PASSED_ON))
    if options.get("patience") == 0:  # none: train for all the steps, a short text's too
        options["patience"] = None
    if max_time is not None:
        options["max_seconds"] = max_time * 60
    start(
        level,
        (coordinator, num_processes, process_id, devices),
        lambda api, watch, stop: api.train(corpus, out, on_event=watch, should_stop=stop, devices=devices, **options),
    )


def resume(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN", help="Run directory to continue (from its latest checkpoint).", parser=path_given
        ),
    ],
    steps: Annotated[
        int | None, typer.Option(option("steps"), help="New total step count, to extend a finished run.")
    ] = None,
    max_time: Annotated[float | None, typer.Option(option("max_seconds"), help=_MAX_TIME)] = None,
    learning_rate: Annotated[
        float | None,
        typer.Option(option("learning_rate"), help="New peak learning rate (changes the schedule from here on)."),
    ] = None,
    eval_every: Annotated[int | None, typer.Option(option("eval_every"), help=_EVAL_EVERY)] = None,
    checkpoint_every: Annotated[int | None, typer.Option(option("checkpoint_every"), help=_CHECKPOINT_EVERY)] = None,
    log_every: Annotated[int | None, typer.Option(option("log_every"), help=_LOG_EVERY)] = None,
    patience: Annotated[
        int | None, typer.Option(option("patience"), help=_PATIENCE_RESUMED, show_default=False)
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            option("precision"),
            autocompletion=words(*PRECISIONS),
            help=_PRECISION + " [default: the run's]",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(option("force"), help="Resume even if the corpus's files changed since the run started.")
    ] = False,
    moved_to: MovedCorpusOption = None,
    devices: ResumeDevices = None,
    coordinator: Coordinator = None,
    num_processes: NumProcesses = None,
    process_id: ProcessId = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Continue a run exactly where its latest checkpoint left it (on any
    number of devices and processes the batch splits evenly over)."""
    level = verbosity(quiet, verbose)
    changes = {
        "steps": steps,
        "max_seconds": None if max_time is None else max_time * 60,
        "learning_rate": learning_rate,
        "eval_every": eval_every,
        "checkpoint_every": checkpoint_every,
        "log_every": log_every,
        "patience": patience,
        "precision": precision,
    }
    overrides: dict[str, Any] = {name: value for name, value in changes.items() if value is not None}
    if patience == 0:  # none from here on
        overrides["patience"] = None
    start(
        level,
        (coordinator, num_processes, process_id, devices),
        lambda api, watch, stop: api.resume(
            run_dir, force=force, on_event=watch, should_stop=stop, devices=devices, corpus=moved_to, **overrides
        ),
    )
