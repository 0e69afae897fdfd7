"""Fitting a run's schedule to its time: where a time limit (`--max-time`)
or a budget of training (`charlstm tune --budget-s`) will stop a run, end
the learning-rate schedule there, so that it decays fully instead of being
cut off near its peak; and, asked to (`--fill-time`), lengthen a run that
would end before its time limit, so that it trains for all of it.

The loop tells a `TimeFit` what its validation passes cost and, after
each report, asks it for a plan: the step the schedule should now end at, or
None to keep the one it has. Changing the schedule compiles nothing: it is
an argument of the compiled step.
"""

from __future__ import annotations

from typing import Literal

from charlstm.config import TrainConfig
from charlstm.training import processes

# How a run reads its time limit (`max_seconds`):
# - "limit": its session stops there; a run the limit would cut short has
#   its schedule ended where the limit will stop it (`--max-time`);
# - "fill": the same, and a run that would end before the limit is
#   lengthened to fill it (`--max-time` with `--fill-time`);
# - "budget": seconds of training steps alone, validation and saves left
#   out, refitted either way at every report (`charlstm tune`).
TimeUse = Literal["limit", "fill", "budget"]

# The steps are timed from the first report this many steps in (after the
# first calls' one-off costs) to the first report twice as many in.
FIT_AFTER_STEPS = 10
# A run filling its time (`fill`) is lengthened only in this share of its
# steps (and at its first plan): there the cosine is still within 15% of
# its peak. The first plan can be short as well as long: on Python source
# the first steps ran slow and it planned 1,694 steps where 2,320 fitted
# (2026-12-04).
LENGTHEN_WITHIN = 0.25
# The share of the time left that the fitted steps fill; validation passes,
# samples and saves take some of the rest until the first one is timed, and
# a step's time wanders by a few percent.
TIME_FILL = 0.95


def _noise(config: TrainConfig) -> int:
    """A move of the plan this small (a report's steps, or 2%) is the timing's noise."""
    return max(config.log_every, config.steps // 50)


class TimeFit:
    """The plans of one session of a run with a time limit (or a budget)."""

    def __init__(self, config: TrainConfig, first_step: int, use: TimeUse = "limit"):
        self.active = config.max_seconds is not None
        self.budget = use == "budget"
        self.fill = use == "fill"
        self.first_step = first_step
        self.timing: tuple[int, float, float] | None = None  # (step, clock, one-off seconds by then)
        # Seconds of the first validation pass (it compiles the scorer and the
        # sampler) and of the first save (Orbax's own start-up), where it came first.
        self.one_off = 0.0
        self.validation_cost = 0.0  # seconds of the latest validation pass and what followed it
        self.planned = False
        self.ceiling = config.steps  # a budget's plans never go past the first
        # Where the limit will stop a run too short to fit (`_floored`), once
        # known: the loop says so, once (then sets it back to None).
        self.declined: int | None = None
        self.held_at_floor = False  # a later plan held at the floor: said once too

    def validated(self, seconds: float, first_pass: bool) -> None:
        """A validation pass (and its sample and save) took `seconds`."""
        if first_pass:
            self.one_off += seconds
        else:
            self.validation_cost = seconds

    def saved(self, seconds: float, first_save: bool) -> None:
        """A save with no validation pass before it took `seconds`: the
        session's first is partly a one-off (Orbax starting up: a 1x64
        model's first save took about 0.6 s, its later ones 0.2, on the
        2-core CPU, 2026-12-06), so it counts apart, as the first pass does;
        the later ones count with the steps, as they recur. (Counted with
        the steps, a first save at step 250 of a run with --eval-every 1000
        and 18 seconds cut its plan from 2,278 steps to 1,415, which ended
        with 28% of the time unused; a walkthrough, 2026-12-06.)"""
        if first_save:
            self.one_off += seconds

    def plan(
        self, config: TrainConfig, step: int, evaluated: bool, session_seconds: float, step_seconds: float
    ) -> int | None:
        """After a report at `step`: the step the schedule should end at
        now, or None. `session_seconds` is the session's time so far and
        `step_seconds` that less its validation passes, samples and saves.
        In a multi-process run every process must call this at the same
        step: it may settle the plan with them (all take process 0's, so
        that all stop at one step)."""
        if not self.active or step >= config.steps:
            return None  # at the end: its last pass and save are made, and the run is over
        if self.budget:
            return self._fit_to_budget(config, step, step_seconds)
        return self._fit_to_time(config, step, evaluated, session_seconds)

    def _fit_to_time(self, config: TrainConfig, step: int, evaluated: bool, now: float) -> int | None:
        """A time limit that would stop the run before its last step: it
        times the steps between two reports, plans, and plans again after
        every validation pass, as the passes' and saves' share of the time
        becomes known, and between passes where the limit would now stop
        the run clearly short of its plan; it lengthens a run only to fill
        the time (`fill`), and then only at its first plan or in its first
        quarter."""
        into = step - self.first_step
        if into < FIT_AFTER_STEPS:
            return None
        if self.timing is None:
            self.timing = (step, now, self.one_off)
            return None
        if into < 2 * FIT_AFTER_STEPS:
            return None
        assert config.max_seconds is not None
        timed_step, timed_at, one_off_then = self.timing
        # Seconds per step since the timing began, its validation passes and
        # saves included but not the first pass's compilations.
        per_step = (now - timed_at - (self.one_off - one_off_then)) / (step - timed_step)
        # The time left, less a margin and the last step's validation pass.
        left = TIME_FILL * (config.max_seconds - now) - self.validation_cost
        fitted = int(processes.from_main(float(step + int(left / per_step))))
        if fitted <= step:
            return None  # the time is up: the limit stops the run at the next step
        if self.planned and not evaluated and config.steps - fitted <= _noise(config):
            # Between passes, only a shortfall past the timing's noise: the
            # saves, or a machine that slowed down, would otherwise stop the
            # run undecayed where no pass comes before the limit (a walkthrough,
            # 2026-12-06: a tiny model's --eval-every 1000 stopped at 48% of its
            # peak learning rate).
            return None
        first = not self.planned
        floored = self._floored(config, fitted)
        if floored is None:
            return None
        if self.fill and (first or step < config.steps * LENGTHEN_WITHIN):
            # Either way while the learning rate is near its peak, where a
            # longer schedule barely raises it; later, a lengthening would
            # raise a decaying rate again (a warm restart).
            return None if abs(floored - config.steps) <= _noise(config) else floored
        return None if floored >= config.steps else floored

    def _fit_to_budget(self, config: TrainConfig, step: int, now: float) -> int | None:
        """A budget of training steps (`fit(time_use="budget")`): after every
        report, end the schedule where the budget will, as timed over all
        the steps since the timing began. It moves either way (never past
        the first plan, `ceiling`), so an early timing that was off is
        corrected, and the last plan, a report or less before the end, is
        off by a step or so; the budget's limit stops the run if the steps
        slow down after it."""
        into = step - self.first_step
        if into < FIT_AFTER_STEPS:
            return None
        if self.timing is None:
            self.timing = (step, now, 0.0)
            return None
        if into < 2 * FIT_AFTER_STEPS:
            return None
        assert config.max_seconds is not None
        timed_step, timed_at, _ = self.timing
        per_step = (now - timed_at) / (step - timed_step)
        fitted = step + round((config.max_seconds - now) / max(per_step, 1e-9))
        fitted = int(processes.from_main(float(fitted)))
        if fitted <= step:
            return None  # the budget is spent: its limit stops the run at the next step
        floored = self._floored(config, fitted)
        if floored is None:
            return None
        fitted = min(floored, self.ceiling)
        # Small moves are noise in the timing: not worth a new plan (and an
        # event) at every report; near the end, no move under a report's steps.
        if abs(fitted - config.steps) <= max(config.log_every, (config.steps - step) // 20):
            return None
        return fitted

    def _floored(self, config: TrainConfig, fitted: int) -> int | None:
        """A plan of `fitted` steps with the warm-up kept whole (it is a tenth
        of the steps at most, TrainConfig.warmup_used), or None, and no more plans, for
        a run too short for that: it would change its warm-up half way, and
        it is still learning fast enough that a decay costs it more than it
        gains (45 seconds of the default model on the shipped corpus,
        2026-12-02: 1.754 fitted to 130 steps against 1.700 cut off at step
        140). Later plans stop at the floor; the first of them that the
        limit will cut short is said (`declined`), as the first plan is:
        validation passes that take longer than the first plan counted on
        (a tiny model's) stopped such runs with no word, undecayed."""
        floor = 10 * config.warmup_used
        if not self.planned and fitted < floor:
            self.active, self.declined = False, fitted
            return None
        # Near the floor the run ends nearly decayed, and a plan's timing is
        # a few percent off either way: said only where a tenth is missing.
        if self.planned and fitted < 0.9 * floor and not self.held_at_floor:
            self.held_at_floor, self.declined = True, fitted
        self.planned = True
        return max(fitted, floor)
