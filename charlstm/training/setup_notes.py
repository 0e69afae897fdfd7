"""What a session is told of its setup before it trains: a short text
whose windows leave part of it unread each pass, and, on a CPU, validation
passes long enough to notice. Advice, not errors: the run trains either way.
"""

from __future__ import annotations

import jax

from charlstm.config import ModelConfig, TrainConfig
from charlstm.core.model import product_weights
from charlstm.flags import flag
from charlstm.text import streams
from charlstm.training import cadence, events
from charlstm.training.run import Run
from charlstm.training.step_setup import Setup

# Held-out characters past which a run of the default model on a CPU is
# warned that its validation passes will be long: at about 50k characters a
# second (the default model on 2 cores, 2026-12-03), 2M characters is 40 s a
# pass. Another model's passes take longer or shorter by its products per
# character (`relative_cost`): a 3x1024 model's 1M characters took minutes,
# unannounced, and the tiny preset's were announced at twice their length (a
# walkthrough, 2026-12-05).
LARGE_VALIDATION = 2_000_000
CPU_SCORING_RATE = 50_000  # characters a second of the default model, as above
RATE_VOCABULARY = 81  # the shipped corpus's characters, over which it was measured
# Held-out characters below which the best checkpoint is picked on noise: a
# mean over N characters of a loss whose spread is about 1.5 nats moves by
# about 1.5 / sqrt(N) from one pass to another by chance (0.05 at 1,000
# characters, more where they are correlated), as much as a run improves in
# its last thousand steps.
SMALL_VALIDATION = 1_000
UNREAD_NOTED = 0.1  # the share of the training text a pass may leave unread before a warning says so


def warnings(run: Run, setup: Setup) -> list[events.Warned]:
    """The warnings for a session of `run` set up as `setup`, at its starting step."""
    tc, step = run.train_config, int(run.state.step)
    found = []
    unread = _unread(setup.train_streams)
    if unread is not None:
        found.append(events.Warned(step, "text", unread))
    held_out = len(setup.val_ids) - 1
    if held_out < SMALL_VALIDATION and step == 0:  # a new run's: a resumed one keeps its split
        more = f"a larger {flag('val_fraction')}" if not run.corpus.val else f"a longer {flag('val_file')}"
        found.append(
            events.Warned(
                step,
                "small validation",
                f"validation scores only {held_out:,} character{'' if held_out == 1 else 's'}: a loss over so few "
                "moves by chance as much as by learning, and the best checkpoint is picked by it; "
                f"{more} gives a steadier measure",
            )
        )
    before, now = setup.devices_before, setup.mesh.size
    if step > 0 and before is not None and before != now:
        # Silent until a walkthrough (2026-12-07): a run trained on 4 forced CPU devices resumed on 2.
        keep = f"; {flag('devices')} {before} keeps its layout where this process has that many" * (
            jax.process_count() == 1
        )
        found.append(
            events.Warned(
                step,
                "devices",
                f"trained on {before} device{'s' * (before != 1)}, this session on {now}: the gradients are summed "
                f"in another order, so the run goes on as it would have to float32 rounding, not bit for bit{keep}",
            )
        )
    if run.short_text is not None and step == 0:
        found.append(events.Warned(step, "short text", _short(run.short_text, tc)))
    if long_passes(setup, run.model_config):
        shorter = (
            f"a shorter {flag('val_file')}"
            if run.corpus.val
            else f"a smaller {flag('val_fraction')} or a {flag('val_file')}"
        )
        rate = CPU_SCORING_RATE / relative_cost(run.model_config)
        seconds = held_out / rate
        about = f"{seconds:.0f} seconds" if seconds < 90 else f"{seconds / 60:.0f} minutes"
        when = (
            f"every {flag('eval_every')} {tc.eval_every} steps and at the end"
            if tc.steps > tc.eval_every
            else "at the end"
        )
        found.append(
            events.Warned(
                step,
                "validation",
                f"each validation pass ({when}) scores all {held_out:,} validation characters: about {about} a pass "
                f"on a 2-core CPU for this model (about {_rounded(rate):,} characters a second); {shorter} keeps "
                "the passes short",
            )
        )
    return found


def _short(short: cadence.ShortText, tc: TrainConfig) -> str:
    """What a new run on a short text was set to, and why (`cadence`)."""
    per_pass, every = short.steps_per_pass, short.eval_every  # a pass is at least one step (`streams.Streams`)
    stops = (
        f", and stops after {short.patience} validation passes ({short.patience * every / per_pass:,.0f} passes over "
        f"the text) without a new best"
        if short.patience is not None
        else ""
    )
    steps = f"{per_pass:,} step{'' if per_pass == 1 else 's'}"
    reads = (
        f"this run reads its text many times over in its time (a pass over it is {steps})"
        if short.fills_time
        else f"this run would read its text about {tc.steps / per_pass:,.0f} times ({tc.steps:,} steps; a "
        f"pass over it is {steps})"
    )
    dropout = (
        f" It trains with dropout {short.dropout:g} instead of {cadence.DEFAULT_DROPOUT:g}, which learns more from "
        "a text read this often."
        if short.dropout is not None
        else ""
    )
    sets_dropout = f"; {flag('dropout')} sets the dropout" if dropout else ""
    return (
        f"{reads}, and a model learns what carries over to new text in its first ten or so passes, then memorises: "
        f"so it validates every {every} steps ({every / per_pass:.2g} passes over the text) instead of every "
        f"{short.chosen_every}{stops}. The best checkpoint, which sample uses, is then "
        f"one from near the lowest validation loss.{dropout} {flag('eval_every')} set by hand validates that often "
        f"and trains all the steps; {flag('patience')} sets when it stops{sets_dropout}"
    )


def _unread(train: streams.Streams) -> str | None:
    """Where a pass leaves UNREAD_NOTED or more of a short training text
    unread, what to do: each stream is read in whole windows, so its last
    characters (fewer than a window) never are. On a megabyte this is a few
    thousandths; on a 16 KB text in 64 streams of 64 it was 23%."""
    text, read = len(train.ids) - 1, train.chars_per_pass
    if read >= (1 - UNREAD_NOTED) * text:
        return None
    tail = (text // train.batch) % train.seq_len
    return (
        f"each pass trains on {read:,} of the {text:,} training characters ({read / text:.0%}): the text is cut "
        f"into {train.batch} streams of whole {train.seq_len}-character windows, so the last {tail} characters of "
        f"each stream are never read; a smaller {flag('batch_size')} or {flag('seq_len')} reads more of a short text"
    )


def _scores_slowly() -> bool:
    """Whether a large validation text takes long to score here: on a CPU."""
    return jax.default_backend() == "cpu"


def long_passes(setup: Setup, model: ModelConfig) -> bool:
    """Whether each validation pass will take long enough to warn about, and announce."""
    return (len(setup.val_ids) - 1) * relative_cost(model) > LARGE_VALIDATION and _scores_slowly()


def relative_cost(model: ModelConfig) -> float:
    """The model's matrix products per character against the default
    model's over the shipped corpus's vocabulary (RATE_VOCABULARY, where
    CPU_SCORING_RATE was measured): what scoring a character costs, about.
    At least half: a smaller model's pass is bound by the work of each
    character besides its products (the tiny preset, a quarter of the
    products, scored 6M characters in 63 s, about 100k a second, on the
    2-core CPU; a walkthrough, 2026-12-05)."""
    return max(0.5, product_weights(model) / product_weights(ModelConfig(vocab_size=RATE_VOCABULARY)))


def _rounded(rate: float) -> int:
    """A rate to two significant figures: it is an estimate."""
    return int(float(f"{rate:.2g}"))
