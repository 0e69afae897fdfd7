"""The training loop: run the compiled step until done, stopped or diverged.

The loop never prints. It yields events (`events.py`) that its caller
renders or logs, and reads values back from the device only when it reports
them, so the host does not stall the device at every step. It decides when
to evaluate and save; how a checkpoint is written is passed in (`save`).

`fit` sets a session up (`step_setup.py`: the stream layout, the device
mesh, the compiled step) and hands it to `TrainingLoop`, which holds what changes
while it trains: the step, the metrics not yet reported, the clocks, the
last evaluated and saved steps, and whether everything seen so far is
finite. With a time limit, `timefit.TimeFit` plans where its schedule ends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from typing import Any

import jax
import numpy as np

from charlstm.config import SampleConfig, TrainConfig
from charlstm.core.generation import sample_text
from charlstm.core.model import Params
from charlstm.core.scorer import make_reader
from charlstm.errors import CorpusError
from charlstm.flags import flag
from charlstm.runtime import hostmem
from charlstm.training import distributed, events, health, processes, setup_notes
from charlstm.training.health import Health
from charlstm.training.run import Run, owes_pass, passes_since_best, validated, why_ended
from charlstm.training.step_setup import Setup, TrainStep, setup_for
from charlstm.training.timefit import TimeFit, TimeUse
from charlstm.units import time_limit

# What is shown after each validation pass: the same prime, seed and
# temperature every time, so the samples show the model improving, not luck.
PROGRESS_SAMPLE = SampleConfig(length=200, temperature=0.8, seed=0)

# (run, best, windows per pass, rewrite: a latest checkpoint already at this step) -> where it was written
Save = Callable[[Run, bool, int, bool], str]


def fit(
    run: Run,
    save: Save,
    should_stop: events.StopCheck = lambda: False,
    sample: SampleConfig | None = PROGRESS_SAMPLE,
    devices: int | None = None,
    time_use: TimeUse = "limit",
) -> Iterator[events.Event]:
    """Train `run` to `train_config.steps`, yielding events as it goes.

    `save(run, best, windows_per_pass, rewrite)` writes a checkpoint and
    returns where (`rewrite`: over a save at the same step); the loop
    decides when: every `checkpoint_every` steps, at every new best
    validation loss, and when it stops for any reason but divergence (so an
    interrupted run always has a checkpoint to resume from). After each
    validation pass a short `sample` is generated (None: no samples).

    The step runs over the first `devices` local devices (default: all) of
    every process; in a multi-process run every process runs this loop, all
    use the first's validation loss, and only the first samples.

    `time_use` says how `max_seconds` is read (timefit.TimeUse): a limit
    (the default), a limit the run is lengthened to fill ("fill"), or a
    budget of training ("budget", `charlstm tune`) that counts the training
    steps alone, not the validation passes, samples or saves, and that the
    run ends at, its schedule refitted at every report, shortened or
    lengthened again (never past `steps`), so that runs on one budget
    train for the same time whatever their first timing said."""
    tc = run.train_config
    setup = setup_for(run, devices)
    step = int(run.state.step)
    ended = why_ended(step, tc, run.history)
    yield events.Started(
        step=step,
        total_steps=tc.steps,
        backend=jax.default_backend(),
        devices=_device_names(list(setup.mesh.devices.flat)),
        processes=jax.process_count(),
        train_chars=setup.train_streams.chars_per_pass,
        val_chars=len(setup.val_ids) - 1,
        windows_per_pass=setup.train_streams.windows,
        trains=step < tc.steps and ended is None,
        val_loss=run.history[-1]["val_loss"] if run.history else None,
        local_devices=jax.local_device_count(),
    )
    if step < tc.steps:
        yield from setup_notes.warnings(run, setup)
    if ended is not None:
        # Nothing to train, compile or save: all of its time is the earlier sessions'.
        detail = _patience_detail(passes_since_best(run.history), tc) if ended == "patience" else ""
        best_step = _best_step(run.history, run.best_val_loss)
        yield events.Finished(
            step, ended, run.best_val_loss, run.train_seconds, best_step, detail, earlier_seconds=run.train_seconds
        )
        return
    # Compiling is not training: the session's clocks start after it.
    started = time.perf_counter()
    train_step = TrainStep.for_run(run, setup)
    yield events.Compiled(seconds=time.perf_counter() - started)
    yield from TrainingLoop(run, setup, train_step, save, should_stop, sample, time_use).until_done()


class TrainingLoop:
    """One session of training: from where the run stands to its last step,
    a stop, or divergence."""

    def __init__(
        self,
        run: Run,
        setup: Setup,
        train_step: TrainStep,
        save: Save,
        should_stop: events.StopCheck,
        sample: SampleConfig | None,
        time_use: TimeUse = "limit",
    ):
        self.run, self.setup, self.train_step = run, setup, train_step
        self._save, self._should_stop, self._sample = save, should_stop, sample
        self.config = run.train_config
        self.read = make_reader(run.model_config)
        self.step = self.first_step = int(run.state.step)
        self.pending: list[dict[str, Any]] = []  # the device's metrics of steps not reported yet
        self.healthy = True  # every loss, gradient norm and parameter seen so far is finite
        self.health = Health(self.config.warmup_used, start=self.first_step)
        # Whether each validation pass takes long enough to announce (and to count the first in the time left).
        self.long_passes = setup_notes.long_passes(self.setup, run.model_config)
        self.saved_step: int | None = None
        self.saved_seconds = 0.0  # the run's training time as its newest checkpoint records it
        self.evaluated_step: int | None = None
        self.cut_short = False  # a validation pass was stopped part-way
        self.told_guessing: int | None = None  # the step of a pass worse than guessing the user was told of
        # Validation passes since the best one, counted from the run's history
        # so that a resumed run keeps counting where it stopped (--patience).
        self.since_best = passes_since_best(run.history)
        self.started = time.perf_counter()
        self.paused = 0.0  # seconds of validation passes, samples and saves between steps
        self.seconds_before = run.train_seconds
        self.last_report, self.last_report_step = self.started, self.step
        self.time_fit = TimeFit(self.config, self.step, time_use)  # the schedule fitted to a time limit

    def until_done(self) -> Iterator[events.Event]:
        """The run's events, step by step, to its end (`fit`)."""
        try:
            reason = yield from self._steps()
        except CorpusError:
            # The token file turned out damaged under a healthy state
            # (Tokens.checked refuses a window or validation slice before the
            # step reads it): keep what was trained up to here, then say so.
            if self.pending:
                yield from self._report()
            if self.healthy and self.step not in (self.first_step, self.saved_step):
                yield from self._checkpoint()
            raise
        yield from self._finish(reason)

    def _steps(self) -> Generator[events.Event, None, str]:
        """Steps until the last, a stop or divergence; why it ended."""
        owed = yield from self._owed_pass()
        if owed is not None:
            return owed
        while self.step < self.config.steps:
            tc = self.config  # a time limit may change it (timefit.py)
            stop = self._stop_wanted()
            if stop is not None:
                return stop
            if tc.patience is not None and self.since_best >= tc.patience:
                return "patience"
            self.run.state, metrics = self.train_step(self.run.state, self.setup.feed(self.step))
            self.step += 1
            self.pending.append(metrics)
            evaluate_now = self.step % tc.eval_every == 0 or self.step == tc.steps
            save_now = self.step % tc.checkpoint_every == 0 or self.step == tc.steps
            # Every step that evaluates or saves is also a report, so nothing is
            # ever evaluated or written from a state whose loss went non-finite.
            reported = self.step % tc.log_every == 0 or evaluate_now or save_now
            if reported:
                yield from self._report()
            ended = yield from self._pass_and_save(evaluate_now, save_now)
            if ended is not None:
                return ended
            if reported:
                now = time.perf_counter() - self.started
                steps = self.time_fit.plan(self.config, self.step, evaluate_now, now, now - self.paused)
                if steps is not None:
                    yield self._replan(steps)
                if self.time_fit.declined is not None and not self.time_fit.budget:
                    yield self._not_fitted(self.time_fit.declined)
                    self.time_fit.declined = None
        return "done"

    def _owed_pass(self) -> Generator[events.Event, None, str | None]:
        """The validation pass a stop cut short at the step this session
        starts from, made before it trains on (its checkpoint is rewritten
        with the pass in its history), so that the history, the best
        checkpoint and --patience's count are those of the run that never
        stopped. (The last step's owed pass is `_finish`'s.) A stop during
        it ends the session again: "interrupted", or None to train on."""
        if not owes_pass(self.step, self.config, self.run.history) or not self.healthy:
            return None
        return (yield from self._pass_and_save(True, True))

    def _pass_and_save(self, evaluate: bool, save: bool) -> Generator[events.Event, None, str | None]:
        """A step's validation pass and checkpoint, as asked, timed apart
        from training; "interrupted" or "diverged" where the run ends there."""
        paused = time.perf_counter()
        first = self.evaluated_step is None
        if evaluate and self.healthy:
            yield from self._validate()
            if first:
                hostmem.return_freed()  # the scorer's and the sampler's compilations
            if self.cut_short:  # even at the last step: the run did not finish its pass
                self.paused += time.perf_counter() - paused  # scoring, not training, as below
                return "interrupted"
        if not self.healthy:
            return "diverged"
        first_save = self.saved_step is None
        if save:
            yield from self._checkpoint()
        # Evaluation and saving are not training: keep them out of chars/s.
        pause = time.perf_counter() - paused
        self.last_report += pause
        self.paused += pause
        if evaluate:
            self.time_fit.validated(pause, first)
        elif save:
            self.time_fit.saved(pause, first_save)
        return None

    def _finish(self, reason: str) -> Iterator[events.Event]:
        if reason != "diverged" and self.pending:
            yield from self._report()
        # Taken after the last report (which waits for the device to finish
        # its steps) and before the last validation pass and save.
        step_seconds = self._step_seconds()
        stale = False  # the last save came before a validation pass made here
        if reason != "diverged":
            # A time limit ends between passes; a run resumed at its last step
            # may have been stopped during that step's pass, which it owes.
            if self.healthy and reason in ("time limit", "done") and not validated(self.run.history, self.step):
                stale = self.saved_step == self.step
                yield from self._validate()
                if self.cut_short:
                    reason = "interrupted"
            if not self.healthy:
                reason = "diverged"
            # A diverged state is never saved: the newest checkpoint stays the last good one.
            elif self.saved_step != self.step:
                yield from self._checkpoint()
        fitted = self.run.short_text is not None and self.run.short_text.patience is not None
        detail = _patience_detail(self.since_best, self.config, fitted) if reason == "patience" else ""
        best_step = _best_step(self.run.history, self.run.best_val_loss)
        # The time the last checkpoint holds, where it was saved at this step
        # and nothing ran since: what `charlstm runs` and `info` then show and
        # a resume counts on from. (A pass after the save is owed again by a
        # resume, which rewrites that checkpoint: its time counts from then.)
        seconds = self.saved_seconds if self.saved_step == self.step and not stale else self._clock()
        best = self.run.best_val_loss
        guessing = None if best is None else health.worse_than_guessing(best, self.run.model_config.vocab_size, True)
        if guessing is not None and self.told_guessing is not None and self.told_guessing < self.step:
            # Said again as the run ends, where a user who scrolled past the
            # first would otherwise read a plain "done" (a walkthrough, 2026-12-06).
            yield events.Warned(self.step, "worse than guessing", guessing)
        yield events.Finished(
            self.step,
            reason,
            self.run.best_val_loss,
            seconds,
            best_step,
            detail,
            self.seconds_before,
            step_seconds,
        )

    def _replan(self, steps: int) -> events.Rescheduled:
        """End the schedule at `steps`: no compilation, the schedule is an argument of the compiled step."""
        was = self.config
        assert was.max_seconds is not None
        # The warm-up is a tenth of the steps at most: taken at the first
        # plan for the new steps (a lengthened run gets the --warmup asked,
        # and only ever a lower learning rate for it, as the plan comes at
        # step 20), then kept whole, so that no later plan stretches it.
        fitted = replace(was, steps=steps)
        self.config = replace(fitted, warmup_steps=fitted.warmup_used)
        self.run.train_config = self.config  # what checkpoints record, so a resume keeps the schedule
        self.health.warmup_steps = self.config.warmup_used  # nothing is judged in a lengthened warm-up either
        self.train_step.retime(self.config)
        return events.Rescheduled(self.step, steps, was.steps, was.max_seconds, budget=self.time_fit.budget)

    def _not_fitted(self, near: int) -> events.Warned:
        """The time limit stops the run too soon for its schedule to be
        fitted to it (timefit.py): the user expects a decayed run, and this
        one stops before its learning rate has decayed."""
        tc = self.config
        assert tc.max_seconds is not None
        return events.Warned(
            self.step,
            "schedule",
            f"{time_limit(tc.max_seconds)} ends the run near step {near:,} of {tc.steps:,}, "
            f"too soon to end its schedule there (that takes {10 * tc.warmup_used:,} steps, ten times its warm-up): "
            f"it stops before its learning rate has decayed; for a run that decays, give {flag('steps')} {near} "
            "instead, or more time",
        )

    def _stop_wanted(self) -> str | None:
        stop = None
        limit = self.config.max_seconds
        if self._should_stop():
            stop = "interrupted"
        elif limit is not None and self._spent() >= limit:
            stop = "time limit"
        if jax.process_count() > 1:
            # Processes settle a stop together, at report steps only: there
            # the host waits for the device anyway.
            return processes.stop_agreed(stop) if self.step % self.config.log_every == 0 else None
        return stop

    def _spent(self) -> float:
        """What the time limit counts: this session's time, or with a
        budget its training steps alone."""
        return self._step_seconds() if self.time_fit.budget else time.perf_counter() - self.started

    def _step_seconds(self) -> float:
        """This session's seconds of training steps (and their reports), as
        of now: its time less its validation passes, samples and saves."""
        return time.perf_counter() - self.started - self.paused

    def _time_to_end(self) -> float | None:
        """Seconds to the last step, its validation passes included, at this
        session's pace: its steps' time (passes, samples and saves left out)
        and its latest pass's. A session's first pass also compiles the
        scorer and the sampler (9 of its 10 seconds for a tiny model whose
        steps took a hundredth each: the time left read 4:39 where about a
        minute was; a walkthrough, 2026-12-06), so it counts only for a text
        whose passes are long anyway (`long_passes`) until a later pass is timed."""
        done = self.step - self.first_step
        if done <= 0:
            return None
        total, every = self.config.steps, self.config.eval_every
        steps = (total - self.step) * self._step_seconds() / done
        # Those after this step (the last step's own among them), and this
        # step's, which a report comes just before.
        passes = total // every - self.step // every + (total % every != 0 and self.step < total)
        passes += (self.step % every == 0 or self.step == total) and self.evaluated_step != self.step
        cost = self.time_fit.validation_cost
        if not cost and self.long_passes:
            cost = self.time_fit.one_off
        return steps + passes * cost

    def _clock(self) -> float:
        """Training seconds over all sessions of the run, as of now."""
        self.run.train_seconds = self.seconds_before + time.perf_counter() - self.started
        return self.run.train_seconds

    def _report(self) -> Iterator[events.Progress | events.Warned]:
        # Steps are dispatched asynchronously; this is the only per-report
        # sync with the device, so times are taken after it.
        host = jax.device_get(self.pending)
        self.pending.clear()
        self.healthy = all(
            bool(m["params_finite"]) and math.isfinite(float(m["loss"])) and math.isfinite(float(m["grad_norm"]))
            for m in host
        )
        now = time.perf_counter()
        chars = (self.step - self.last_report_step) * self.config.batch_size * self.config.seq_len
        progress = events.Progress(
            step=self.step,
            total_steps=self.config.steps,
            loss=float(np.mean([m["loss"] for m in host])),
            grad_norm=float(host[-1]["grad_norm"]),
            layer_grad_norms={name: float(v) for name, v in host[-1]["layer_grad_norms"].items()},
            clipped_fraction=float(np.mean([m["clipped"] for m in host])),
            lr=float(host[-1]["lr"]),
            chars_per_sec=chars / (now - self.last_report),
            elapsed=self._clock(),
            time_left=None if self.config.max_seconds is None else max(0.0, self.config.max_seconds - self._spent()),
            time_to_end=self._time_to_end(),
        )
        self.last_report, self.last_report_step = now, self.step
        yield progress
        yield from self.health.observe(progress)

    def _validate(self) -> Iterator[events.Event]:
        """A validation pass: the held-out text scored (`_scored`), then the
        pass recorded, warned about, saved as the best and sampled (`_recorded`)."""
        # Every process scores (so none waits long enough in the next
        # collective to time out) and all decide on process 0's number.
        params = distributed.local_copy(self.run.state.params)
        val_loss = yield from self._scored(params)
        if val_loss is not None:  # None: a stop cut the pass short
            yield from self._recorded(val_loss, params)

    def _scored(self, params: Params) -> Generator[events.Event, None, float | None]:
        """The validation loss, on process 0's number, or None where a stop
        cut the pass short (no pass at this step: the run ends here, and saves)."""
        # Up to batch_size streams: the same layout `charlstm eval` uses by default.
        # One process may cut its pass short for a stop; processes that must
        # agree on the loss all read the whole text (they settle stops at
        # report steps).
        stop = self._should_stop if jax.process_count() == 1 else None
        chars, large = len(self.setup.val_ids) - 1, self.long_passes
        yield events.Validating(self.step, chars, large)
        reading = self.read(params, self.setup.val_ids, self.config.batch_size)
        told = time.perf_counter()
        while True:
            try:
                done = next(reading)
            except StopIteration as end:
                score = end.value
                break
            if stop is not None and stop():
                reading.close()
                self.cut_short = True
                return None
            if done and time.perf_counter() - told >= events.PASS_PROGRESS_SECONDS:
                told = time.perf_counter()
                yield events.Validating(self.step, chars, large, done)
        val_loss = processes.from_main(score.loss)
        self.run.tokens.release()  # the pages scoring read stay in the page cache, not in this process
        self.evaluated_step = self.step
        return val_loss

    def _recorded(self, val_loss: float, params: Params) -> Iterator[events.Event]:
        """A pass's loss recorded in the run's history and judged: the best so
        far (saved), patience's count, the warnings, the progress sample."""
        run = self.run
        if not math.isfinite(val_loss):
            self.healthy = False
            yield events.Evaluated(self.step, val_loss, best=False)
            return
        is_best = run.best_val_loss is None or val_loss < run.best_val_loss
        self.since_best = 0 if is_best else self.since_best + 1
        if is_best:
            run.best_val_loss = val_loss
        run.history.append({"step": self.step, "val_loss": val_loss, "train_seconds": self._clock()})
        yield events.Evaluated(self.step, val_loss, is_best)
        overfitting = health.overfitting(run.history, self.config.patience)
        if overfitting is not None:
            yield events.Warned(self.step, "overfitting", overfitting)
        # Of the run's best, not of this pass alone: a model memorising a short
        # text scored worse than guessing on later passes while its best
        # checkpoint, the one sample uses, stood far below it (a walkthrough, 2026-12-06).
        best_so_far = run.best_val_loss
        assert best_so_far is not None  # this pass's, if it was the first
        guessing = health.worse_than_guessing(best_so_far, run.model_config.vocab_size, best=not is_best)
        if guessing is not None and self.told_guessing is None:  # once a session
            self.told_guessing = self.step
            yield events.Warned(self.step, "worse than guessing", guessing)
        if is_best:
            yield events.Saved(self.step, self._save(run, True, self.setup.train_streams.windows, False), best=True)
        if self._sample is not None and processes.is_main():
            yield events.Sampled(self.step, sample_text(run.model_config, params, run.vocab, self._sample))

    def _checkpoint(self) -> Iterator[events.Saving | events.Saved]:
        yield events.Saving(self.step)  # the logs first: no checkpoint ahead of its run's metrics
        self.saved_step = self.step
        # The time up to this save, the sample after a pass included: what
        # `charlstm runs` and `info` show, and what a resume counts on from.
        self.saved_seconds = self._clock()
        # A session that made the pass its first step owed (a stop had cut it
        # short) rewrites that step's checkpoint, so that its history has the
        # pass; every process decides alike, from the run's own history.
        owed = self.step == self.first_step == self.evaluated_step
        where = self._save(self.run, False, self.setup.train_streams.windows, owed)
        yield events.Saved(self.step, where, best=False)


def _patience_detail(since_best: int, config: TrainConfig, fitted: bool = False) -> str:
    """Why --patience stopped a run, in words; `fitted`: the patience was a
    short text's (`cadence`), which the user did not give."""
    why = (
        f"a short text's patience, {config.patience}; {flag('patience')} sets it"
        if fitted
        else f"{flag('patience')} {config.patience}"
    )
    return f"no new best validation loss in the last {since_best} validation passes ({why})"


def _best_step(history: list[dict[str, float]], best_val_loss: float | None) -> int | None:
    """The step of the history's lowest pass, where that pass is the run's
    best (after a hard kill the best checkpoint can be newer than the
    history the latest one holds: its step is then not known here)."""
    best_at = health.best_pass(history)
    if best_at is None:
        return None
    best = history[best_at]
    return int(best["step"]) if best_val_loss is None or best["val_loss"] <= best_val_loss else None


def _device_names(devices: list[Any]) -> list[str]:
    """The devices as the user knows them: "cpu:0"; in a run of several
    processes, each process's own numbering ("process 1 cpu:0"), not JAX's
    global ids (cpu:2048)."""
    if jax.process_count() == 1:
        return [str(d) for d in devices]
    seen: dict[int, int] = {}
    names = []
    for d in devices:
        local = seen[d.process_index] = seen.get(d.process_index, -1) + 1
        kind = str(d).split(":")[0]  # as one process names it: "cpu", "cuda"
        names.append(f"process {d.process_index} {kind}:{local}")
    return names
