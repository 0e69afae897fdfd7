"""Watching a run's health: when exploding or vanishing gradients, a
rising training loss, or a validation loss rising from its best
(overfitting), are worth a warning.

A warning a user learns to ignore is worse than none, so one fires only when
the signal means something:

- after warm-up: the first steps of every healthy run clip (their gradients
  are large while the loss falls from ln(V)), and the learning rate is still
  climbing; on the shipped corpus the default run clipped on every one of its
  first 10 steps and on none after step 30 (2026-12-01, 2-core CPU);
- sustained: the condition holds at SUSTAINED reports in a row, not at one
  unlucky report;
- measured against the run itself: gradients count as exploding when most
  steps clip, or when their norm has grown to GROWTH times the run's own
  typical norm after warm-up (which catches a blow-up under a generous
  `--clip` too); vanishing when the first recurrent layer's norm stays below
  VANISHING_RATIO of the output layer's; the loss rising when the training
  loss stays above LOSS_RISE times the lowest it reached.

What a run at `--lr 1` looked like (default model, shipped corpus,
2026-12-01, 2-core CPU): its training loss fell to 2.42 by step 80, jumped
to 3.56 at step 140 and 5.89 at 150, and stayed above 3.1 from there (8.5
and more by step 230), while most of its steps stopped clipping until then; over all 2,300 steps of the default
run, the 10-step losses after warm-up never rose more than 2.8% above their
best, and it clipped on its first 10 steps only.

Each kind warns once per episode: again only after it has cleared, and of
at most EPISODES episodes a session.

Reports are judged a window of at least WINDOW steps at a time, however
often the run reports (`--log-every`): one step's loss on one batch is
noisy, and at `--log-every 1` a long tiny run (20,000 steps) warned 1,504
times against 22 at the default 10 (a walkthrough, 2026-12-06).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, replace

from charlstm.flags import flag
from charlstm.training import events
from charlstm.units import fixed

SUSTAINED = 3  # reports in a row
# Clipping on most steps means the gradients keep exceeding --clip: the
# optimizer only moves as far as the clip allows.
EXPLODING_CLIPPED_SHARE = 0.5
GROWTH = 10.0
# Gradients reaching the first recurrent layer this far below the output
# layer's: the bottom of the network has stopped learning.
VANISHING_RATIO = 1e-3
_BASELINE_REPORTS = 5  # post-warm-up reports before the run's typical norm counts
LOSS_RISE = 1.25
# Most steps clipping while the loss stays within STILL_FALLING of its lowest
# and the norm within STEADY times its median since warm-up: a --clip below
# the run's usual norm (0.01 on the tiny preset: every step clipped at |g|
# about 0.18, the loss falling as at 1.0), not an explosion.
STILL_FALLING = 1.05
STEADY = 3.0
# The two readings of most steps clipping (see Health.observe).
_PAIRED = {"clipping": "exploding", "exploding": "clipping"}
WINDOW = 10  # steps a judged report covers at least: the default --log-every
# Episodes of one kind a session warns of: a tiny model (1x16, batch 4)
# clipping on and off through 20,000 steps warned of exploding gradients
# 20 times (a walkthrough, 2026-12-06); the last says it is the last.
EPISODES = 3


class RunningMedian:
    """The median of every value added so far, as `statistics.median` gives
    it, at a cost that stays flat as a run grows: sorting all of a long
    run's norms at every report took 14 ms a report at 100,000 of them,
    more than the step it watched (a walkthrough, 2026-12-06)."""

    def __init__(self) -> None:
        self._low: list[float] = []  # the smaller half, negated (a max-heap); one more than the larger at an odd count
        self._high: list[float] = []  # the larger half (a min-heap)

    def __len__(self) -> int:
        return len(self._low) + len(self._high)

    def add(self, value: float) -> None:
        heapq.heappush(self._low, -value)
        heapq.heappush(self._high, -heapq.heappop(self._low))
        if len(self._high) > len(self._low):
            heapq.heappush(self._low, -heapq.heappop(self._high))

    def median(self) -> float:
        if len(self._low) > len(self._high):
            return -self._low[0]
        return (-self._low[0] + self._high[0]) / 2  # statistics.median's sum, in its order


@dataclass
class Health:
    """Feed it every Progress event of a run (a session of it that started
    at step `start`); it says when to warn."""

    warmup_steps: int = 0
    start: int = 0
    _norms: RunningMedian = field(default_factory=RunningMedian)  # the global norm at each judged report after warm-up
    _best_loss: float = float("inf")  # the lowest training loss judged
    _streak: dict[str, int] = field(default_factory=dict)  # kind -> judged reports in a row showing it
    _warned: set[str] = field(default_factory=set)  # kinds warned of in the current episode
    _grown_streak: int = 0  # judged reports in a row whose norm grew past GROWTH times its median
    _pending: list[tuple[int, events.Progress]] = field(default_factory=list)  # (steps, report) not judged yet
    _reported: int | None = None  # the step of the last report
    _episodes: dict[str, int] = field(default_factory=dict)  # kind -> episodes warned of this session
    _starts: list[int] = field(default_factory=list)  # the step before each of the last SUSTAINED judged windows

    def observe(self, event: events.Progress) -> list[events.Warned]:
        """The warnings this report starts, if any: it is judged together
        with those before it not judged yet, once they cover WINDOW steps."""
        done = self.start if self._reported is None else self._reported
        self._reported = event.step
        if not self._pending:
            self._starts = [*self._starts, done][-SUSTAINED:]
        self._pending.append((max(event.step - done, 1), event))
        steps = sum(n for n, _ in self._pending)
        if steps < WINDOW:
            return []
        # Their losses and clipped shares over all their steps; the last step's norms.
        event = replace(
            event,
            loss=sum(n * e.loss for n, e in self._pending) / steps,
            clipped_fraction=sum(n * e.clipped_fraction for n, e in self._pending) / steps,
        )
        self._pending.clear()
        return self._judged(event)

    def _judged(self, event: events.Progress) -> list[events.Warned]:
        if event.step <= self.warmup_steps:
            self._best_loss = min(self._best_loss, event.loss)
            return []
        clip_low = self._clip_below_norm(event)
        # Before this report's norm joins the median; counted apart, as a
        # sustained growth overrides the episode's first reading below.
        grown = self._grown(event)
        self._grown_streak = self._grown_streak + 1 if grown else 0
        found = {
            "clipping": clip_low,
            "exploding": None if clip_low is not None else self._exploding(event, grown),
            "vanishing": self._vanishing(event),
            "loss rising": self._loss_rising(event),
        }
        self._norms.add(event.grad_norm)
        self._best_loss = min(self._best_loss, event.loss)
        # "clipping" and "exploding" are two readings of one episode, most
        # steps clipping, told apart by whether the loss holds near its lowest:
        # the reading changing does not end the episode, and it gets one of
        # them. (A 1x64 model late in a long run on 60 KB, its loss hovering
        # about 5% above its lowest, flipped between them every few reports:
        # 62 warnings, each contradicting the last; a walkthrough, 2026-12-06.)
        # A norm grown far past its median is an explosion whatever came before.
        clipping_on = event.clipped_fraction >= EXPLODING_CLIPPED_SHARE
        warnings = []
        for kind, message in found.items():
            paired = _PAIRED.get(kind)
            if message is None:
                self._streak[kind] = 0
                if paired is None or not clipping_on:
                    self._warned.discard(kind)
                continue
            self._streak[kind] = self._streak.get(kind, 0) + 1
            told = paired in self._warned and not (kind == "exploding" and self._grown_streak >= SUSTAINED)
            if self._streak[kind] >= SUSTAINED and kind not in self._warned and not told:
                self._warned.add(kind)
                self._episodes[kind] = episodes = self._episodes.get(kind, 0) + 1
                if episodes < EPISODES:
                    warnings.append(events.Warned(event.step, kind, message))
                elif episodes == EPISODES:
                    last = f" (said {EPISODES} times now: not again this session)"
                    warnings.append(events.Warned(event.step, kind, message + last))
        return warnings

    def _grown(self, event: events.Progress) -> bool:
        """Whether the norm has grown to GROWTH times its median since warm-up."""
        return len(self._norms) >= _BASELINE_REPORTS and event.grad_norm > GROWTH * self._norms.median()

    def _clip_below_norm(self, event: events.Progress) -> str | None:
        """Most steps clip, but the loss still falls and the norm holds steady:
        `--clip` is below this run's usual norm, not gradients exploding (a
        lower learning rate would be the wrong advice)."""
        if event.clipped_fraction < EXPLODING_CLIPPED_SHARE or not event.loss <= STILL_FALLING * self._best_loss:
            return None
        if self._norms and event.grad_norm > STEADY * self._norms.median():
            return None
        return (
            f"every step clips: the gradient norm holds steady at about {event.grad_norm:.3g} and the loss still "
            f"falls, but {flag('grad_clip')} is below that, so it scales every step down (under AdamW that costs "
            f"little, though it is no longer clipping only the outliers); a {flag('grad_clip')} near the norm clips "
            "only the steps far above it"
        )

    def _exploding(self, event: events.Progress, grown: bool) -> str | None:
        if grown:  # the stronger sign, where most steps also clip
            why = f"the norm is {event.grad_norm / self._norms.median():.0f}x its median since warm-up"
        elif event.clipped_fraction >= EXPLODING_CLIPPED_SHARE:
            why = f"the norm exceeded {flag('grad_clip')} on {event.clipped_fraction:.0%} of the recent steps"
        else:
            return None
        return (
            f"gradients exploding: {why} (|g| {event.grad_norm:.3g}) {self._span(event)}; "
            f"a lower {flag('learning_rate')} usually steadies training"
        )

    def _vanishing(self, event: events.Progress) -> str | None:
        norms = event.layer_grad_norms  # by parameter group: embed, lstm_0 (or gru_0), ..., head
        first = next((value for name, value in norms.items() if name.endswith("_0")), None)
        head = norms.get("head")
        if first is None or not head or first >= VANISHING_RATIO * head:
            return None
        if first == 0:
            how = f"is 0, against {head:.2g} at the output layer"
        else:
            ratio = head / first
            how = f"({first:.2g}) " + (
                f"is {ratio:,.0f}x below the output layer's"
                if ratio < 1e6
                else "is a millionth of the output layer's or less"
            )
        recurrent = sum(1 for name in norms if name != "embed" and name.rsplit("_", 1)[-1].isdigit())
        which = "the first recurrent layer's" if recurrent > 1 else "the recurrent layer's"
        below = "the lower layers barely learn" if recurrent > 1 else "it barely learns"
        # A learning rate far too high saturates the gates (sigmoid and tanh at
        # their limits pass no gradient down): the loss then stands above its
        # lowest too. With one recurrent layer there is no depth to blame.
        saturated = f"saturated units pass no gradient down, which a lower {flag('learning_rate')} usually cures"
        if event.loss > STILL_FALLING * self._best_loss:
            advice = f"the loss stands above its lowest too: {saturated}"
        elif recurrent > 1:
            advice = f"fewer {flag('num_layers')} can help"
        else:
            advice = saturated
        return f"gradients vanishing: {which} gradient norm {how}, so {below}; {advice}"

    def _loss_rising(self, event: events.Progress) -> str | None:
        if not event.loss > LOSS_RISE * self._best_loss:  # a NaN loss is the loop's to handle
            return None
        return (
            f"training loss rising: {fixed(event.loss, 3)} against {fixed(self._best_loss, 3)} at its lowest "
            f"{self._span(event)}; a lower {flag('learning_rate')} usually steadies training"
        )

    def _span(self, event: events.Progress) -> str:
        """How long a sustained condition has held: the SUSTAINED judged
        windows it takes, at least WINDOW steps each however often the run
        reports (not "3 reports", which read as 3 steps at --log-every 1)."""
        return f"through the last {event.step - self._starts[0]} steps"


# A validation loss this far above ln(V), the loss of a model that gives every
# character of its vocabulary the same probability: worse than guessing, with
# room for an untrained model's own noise (its loss starts near ln(V)). At
# --lr 5 on the tiny preset (2026-12-05) the best pass was 6.63 against
# ln 81 = 4.39, and the run ended "done", status 0, sampling noise.
GUESSING_MARGIN = 1.1


def worse_than_guessing(val_loss: float, vocab_size: int, best: bool = False) -> str | None:
    """A warning when a validation pass (or with `best`, the run's best)
    scores worse than guessing every character equally: the run is finite,
    so not diverged, but has learned nothing it can use."""
    uniform = math.log(vocab_size)
    if not val_loss > GUESSING_MARGIN * uniform:
        return None
    which = "the run's best validation loss" if best else "the validation loss"
    return (
        f"{which} {fixed(val_loss, 3)} is worse than guessing every character equally (ln {vocab_size} = "
        f"{uniform:.3f}): the model has learned nothing it can use, and its samples will be noise; a "
        f"{flag('learning_rate')} far too high does this, so a lower one usually cures it"
    )


# A validation loss this far above the run's best, OVERFIT_PASSES passes in a
# row after it: the model fits its training text at the expense of text it
# has not seen. In the 20 runs of charlstm's defaults whose passes
# benchmarks/results keeps (three corpora, 2026-12-02 and 03), no pass rose
# more than 3.0% above its run's best; a 2x128 model on 19 KB of Python rose
# 2.14, 2.53, 2.90 while its training loss fell to 0.10 (2026-12-04).
OVERFIT_RISE = 1.05
OVERFIT_PASSES = 2


def best_pass(history: list[dict[str, float]]) -> int | None:
    """The index of the history's lowest validation pass, the first of
    equals; None before the first pass. A run's best by its own history:
    after a hard kill the best checkpoint can be newer than the history the
    latest one holds, so callers that know the run's best loss compare."""
    losses = [h["val_loss"] for h in history]
    return losses.index(min(losses)) if losses else None


def overfitting(history: list[dict[str, float]], patience: int | None) -> str | None:
    """A warning when a run without --patience has made OVERFIT_PASSES
    validation passes in a row above its best by OVERFIT_RISE or more, at
    the pass where that first holds since the best: once per episode, since
    a new best starts another. A slow rise counts too: its first passes
    above the best may stand under OVERFIT_RISE. The best is the history's
    own lowest pass (the first of equals), whatever a resumed session
    counted: after a hard kill the best checkpoint can be newer than the
    history the latest one holds."""
    best_at = best_pass(history)
    if patience is not None or best_at is None:
        return None
    since_best = len(history) - 1 - best_at
    if since_best < OVERFIT_PASSES:
        return None
    best = history[best_at]

    def risen(passes_after: int) -> bool:  # the condition at the pass `passes_after` passes after the best
        last = history[best_at + passes_after - OVERFIT_PASSES + 1 : best_at + passes_after + 1]
        return all(h["val_loss"] >= OVERFIT_RISE * best["val_loss"] for h in last)

    if not risen(since_best) or any(risen(n) for n in range(OVERFIT_PASSES, since_best)):
        return None
    shown = [fixed(h["val_loss"], 3) for h in history[best_at + 1 :]]
    shown_losses = ", ".join(shown if len(shown) <= 4 else ["...", *shown[-4:]])
    return (
        f"the validation loss has risen for {since_best} passes ({shown_losses}; best "
        f"{fixed(best['val_loss'], 3)} at step {best['step']:g}): the model is memorising its training text "
        "instead of learning what carries over to text it has not seen (overfitting). sample and eval use the "
        f"best checkpoint; {flag('patience')} N ends such a run early, and more {flag('dropout')}, a smaller "
        "model or more text put it off"
    )
