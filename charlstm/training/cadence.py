"""How often a new run on a short text validates, when it stops, and its dropout.

The default cadence, a validation pass every 250 steps, is about one pass
over a megabyte of text. A short text is read many times over in that
time, and a model learns what carries over to text it has not seen in its
first ten or so passes, then memorises. Measured with the defaults
(2026-12-06, docs/benchmarks.md, "Short texts"): on 30,000 characters of
Shakespeare a pass is 6 steps, the validation loss was lowest at step 70
(1.873) and 3.376 at step 250, the run's first pass and so its best
checkpoint; on 30,000 characters of Python, 1.531 at step 70 and 2.401 at
250; on 100,000 characters of Shakespeare, 1.463 at step 200 and 1.496 at
250, then rising to 1.666 at step 380, where that run was stopped.

So where the user chose no cadence (`--eval-every`, or a preset's), a
new run validates at least every PASSES_BETWEEN passes over its training
text, and where it also chose no `--patience` it stops after PATIENCE
validation passes without a new best: the best checkpoint, the one `sample` uses, is
then the one taken near the lowest loss, and the run ends minutes sooner.
A run that reads its text fewer than FEWEST_READS times is left as it was:
under the defaults (2,300 steps of 64 x 64 characters) a text of about
525,000 characters or more (470,000 of them training text). The `medium`
preset's larger batches read larger texts that often (the shipped 1.2 MB
about 600 times) and fit them too; `large`, whose warm-up outlasts the
patience, is left as it is.

A new model on a text it reads that often also takes more dropout than the
defaults' 0.2, which was tuned on a megabyte (`short_text_dropout`).
Measured (2026-12-07, docs/benchmarks.md, "Short texts: more dropout" and
the section after it): 0.5 kept a better checkpoint on texts of
Shakespeare and Python read 35 times or more (in 9 of 10 pairs of runs,
by up to 0.08 nats a character) and a worse one on a text read 21 times, still
learning when its steps ran out; at 26 reads 0.33, on the line between,
kept a better one than 0.2 on both kinds of text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass

from charlstm.config import SHORT_TEXT_DROPOUT, SHORT_TEXT_PATIENCE, TrainConfig

PASSES_BETWEEN = 2  # passes over the training text between validation passes, at most
FEWEST_STEPS = 10  # but never more often than this: a text of a few windows would validate every step
PATIENCE = SHORT_TEXT_PATIENCE  # validation passes without a new best (20 passes over the text)
# Passes over the text a run must make for any of this to matter: fewer
# end before a model memorises much, or before the patience could end them.
FEWEST_READS = PASSES_BETWEEN * PATIENCE
# Dropout grows from the defaults' at FEWEST_READS to SHORT_DROPOUT at
# MOST_READS and more, in a straight line: a text just under the length
# the defaults leave alone trains with nearly their dropout.
DEFAULT_DROPOUT = TrainConfig.dropout  # raised only where nobody chose another (a preset's is its own)
SHORT_DROPOUT = SHORT_TEXT_DROPOUT
MOST_READS = 35


@dataclass(frozen=True)
class ShortText:
    """What a new run on a short text was set to, for its announcement."""

    steps_per_pass: int  # windows of each stream: a pass over the training text
    eval_every: int  # the cadence it was given instead of `chosen_every`
    chosen_every: int  # the cadence of the defaults or the preset
    patience: int | None  # set here; None where the user chose one (or none was set)
    fills_time: bool = False  # --fill-time: the steps are planned later, and the run takes all its time
    dropout: float | None = None  # set here, instead of the defaults'; None where it was left


def short_text_dropout(reads: float) -> float:
    """The dropout of a new model that reads its text `reads` times: the
    defaults' up to FEWEST_READS, SHORT_DROPOUT from MOST_READS."""
    share = min(max((reads - FEWEST_READS) / (MOST_READS - FEWEST_READS), 0.0), 1.0)
    return round(DEFAULT_DROPOUT + share * (SHORT_DROPOUT - DEFAULT_DROPOUT), 2)


def fitted(
    config: TrainConfig,
    steps_per_pass: int,
    given: Collection[str],
    fills_time: bool = False,
    new_model: bool = True,
) -> tuple[TrainConfig, ShortText | None]:
    """`config` with its validation cadence (and patience) fitted to a
    training text of `steps_per_pass` steps a pass; the ShortText where it
    changed. Left as it is where `given` (the TrainConfig fields the user
    chose) holds `eval_every`, where the text is long enough for the chosen
    cadence, where the run reads it fewer than FEWEST_READS times (its
    steps not yet planned under `fills_time`: every such run is fitted), or
    where PATIENCE passes would be over before the warm-up is (the large
    preset's 2,000 steps against 320 on the shipped corpus: not what this
    was measured on). `fills_time` takes no patience: the user asked for
    all of the time. The dropout is raised (`short_text_dropout`) where the
    cadence is fitted, the user chose no dropout, the run keeps the
    defaults', it is a `new_model` (a fine-tune's was not measured) and it
    has no time limit: one that fills its time, or that a limit cuts short,
    reads its text a number of times not yet known."""
    every = max(FEWEST_STEPS, PASSES_BETWEEN * steps_per_pass)
    too_few_reads = not fills_time and config.steps < FEWEST_READS * steps_per_pass
    if "eval_every" in given or every >= config.eval_every or too_few_reads or PATIENCE * every < config.warmup_used:
        return config, None
    patience = PATIENCE if not fills_time and "patience" not in given and config.patience is None else None
    dropout = None
    planned = not fills_time and config.max_seconds is None  # a time limit may end the run after fewer reads
    if new_model and planned and "dropout" not in given and config.dropout == DEFAULT_DROPOUT:
        raised = short_text_dropout(config.steps / steps_per_pass)
        dropout = raised if raised != config.dropout else None
    fitted = dataclasses.replace(
        config,
        eval_every=every,
        patience=patience or config.patience,
        dropout=config.dropout if dropout is None else dropout,
    )
    return fitted, ShortText(steps_per_pass, every, config.eval_every, patience, fills_time, dropout)
