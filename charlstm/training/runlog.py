"""The run directory's logs: `metrics.jsonl` for tools, `samples.txt` for people.

`RunLog` listens to the training loop's events, as the progress display
does. `metrics.jsonl` gets one JSON object per logged step:

    step, time (unix seconds), elapsed (training seconds over all sessions),
    train_loss and train_bpc (mean since the previous line), lr, grad_norm
    (global, before clipping, at the logged step), grad_norms (per layer:
    embed, lstm_0, ..., head, at the logged step), clipped_fraction (share of steps since the previous line whose
    gradients were clipped), chars_per_sec, where that step was evaluated
    also val_loss and val_bpc, and where a warning was given its message in
    warnings and its kind in warning_kinds (events.Warned; a gradient or
    loss warning, `health.py`, on the line of the
    step it is about; one given while the run was set up, on its first line),
    and where the time limit
    moved the schedule's end (`timefit.py`: shortened to fit, or lengthened
    to fill the time) the new last step in rescheduled_to
    (on the first line after the change). A loss that is not finite (a
    diverged step) is written as null. A session that ends before its last
    step adds a line with `stopped` (the reason: time limit, interrupted,
    patience or diverged), `detail` (in words), and the best validation
    loss and its step. Each session that trains puts in `session`, on the
    line of its first report (or of its end, without one), what it trains with: the
    step it starts from, the options a resume may change (steps,
    learning_rate, max_seconds, ...), the corpus's sha256 and, for a resumed
    one, what the resume changed (`changed`: each option's value before and
    after, and `text` where a resume given --force went on with other text;
    `sessions` reads them back: a resumed run's history says where it went
    on, and with what).

Lines are appended and flushed as they are complete, so a killed run keeps
all but its last line. A resumed run continues from its checkpoint's step,
so lines written after that step by the session that died are dropped first
and every step appears once.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import time
from pathlib import Path
from typing import Any

from charlstm.errors import CharlstmError
from charlstm.text.folder import RUN_LOG
from charlstm.text.saving import save_whole
from charlstm.training import events
from charlstm.units import bits

METRICS_FILE = RUN_LOG  # metrics.jsonl
SAMPLES_FILE = "samples.txt"
INTACT = "earlier checkpoints are intact"  # what a log that cannot be written costs


def sessions(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sessions that trained the run, oldest first, as `RunLog` records
    them (runs from before 2026-12-06 have none)."""
    return [r["session"] for r in records if isinstance(r.get("session"), dict)]


def read_sessions(run_dir: Path) -> list[dict[str, Any]]:
    """`sessions` of the run's log, reading only the lines that can hold one
    (a long run's log has hundreds of thousands of lines)."""
    return sessions(read_metrics(run_dir, only_with='"session"'))


def read_metrics(run_dir: Path, only_with: str | None = None) -> list[dict[str, Any]]:
    """The run's metrics lines, oldest first (`only_with`: only those that
    contain this text). A line cut off by a crash, or otherwise unreadable,
    is skipped; bytes that are not UTF-8 (a log edited or damaged) read as U+FFFD."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if only_with is not None and only_with not in line:
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # RecursionError: nested past what json reads
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
    return records


class RunLog:
    def __init__(self, run_dir: Path, session: dict[str, Any] | None = None):
        self.run_dir = run_dir
        self._session = session  # what this session trains with, for its first line
        run_dir.mkdir(parents=True, exist_ok=True)
        self._pending: dict[str, Any] | None = None
        self._held: dict[str, Any] = {}  # for the next line
        self._saved = False  # the run has a checkpoint: resumed, or saved one since

    def handle(self, event: events.Event) -> None:
        if isinstance(event, events.Started):
            self._saved = self._saved or event.step > 0
            self._drop_after(event.step)
            if event.trains and self._session is not None:
                self._held["session"] = {"from_step": event.step, **self._session}
        elif isinstance(event, events.Progress):
            self._flush()
            self._pending = {
                "step": event.step,
                "time": round(time.time(), 3),
                "elapsed": round(event.elapsed, 3),
                "train_loss": event.loss,
                "train_bpc": bits(event.loss),
                "lr": event.lr,
                "grad_norm": event.grad_norm,
                "grad_norms": event.layer_grad_norms,
                "clipped_fraction": event.clipped_fraction,
                "chars_per_sec": round(event.chars_per_sec, 1),
                **self._held,
            }
            self._held.clear()
        elif isinstance(event, events.Warned):
            # Right after the report it is about, it joins that line; before
            # the first report (a setup warning), the next line.
            line = self._pending if self._pending is not None else self._held
            line.setdefault("warnings", []).append(event.message)
            line.setdefault("warning_kinds", []).append(event.kind)
        elif isinstance(event, events.Rescheduled):
            # After a report it joins that line; after a validation pass
            # (whose line is written) the next line.
            if self._pending is not None:
                self._pending["rescheduled_to"] = event.steps
            else:
                self._held["rescheduled_to"] = event.steps
        elif isinstance(event, events.Evaluated):
            # The loop reports every step it evaluates, just before evaluating it.
            if self._pending is None or self._pending["step"] != event.step:
                self._flush()
                self._pending = {"step": event.step, "time": round(time.time(), 3)}
            self._pending["val_loss"] = event.val_loss
            self._pending["val_bpc"] = bits(event.val_loss)
            self._flush()
        elif isinstance(event, events.Saving):
            self._flush()  # a warning or new plan after the save goes on the next line
        elif isinstance(event, events.Saved):
            self._saved = True
        elif isinstance(event, events.Sampled):
            _append(self.run_dir / SAMPLES_FILE, f"===== step {event.step} =====\n{event.text}\n\n", self._saved)
        elif isinstance(event, events.Finished):
            self._flush()
            if self._held:  # a plan with no report after it
                self._pending = {"step": event.step, "time": round(time.time(), 3), **self._held}
                self._held.clear()
                self._flush()
            if event.reason != "done":
                self._pending = {
                    "step": event.step,
                    "time": round(time.time(), 3),
                    "stopped": event.reason,
                    "detail": event.detail or event.reason,
                    "best_val_loss": event.best_val_loss,
                    "best_step": event.best_step,
                }
                self._flush()

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if self._pending is None:
            return
        record, self._pending = self._pending, None
        # A diverged step's loss is logged as null: strict JSON has no NaN.
        _append(self.run_dir / METRICS_FILE, strict_json(record) + "\n", self._saved)

    def _drop_after(self, step: int) -> None:
        self._drop_samples_after(step)
        path = self.run_dir / METRICS_FILE
        if not path.is_file():
            return
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if _step_of(line) <= step]
        if len(kept) == len(lines):
            return
        save_whole(path, "".join(kept), intact=INTACT)

    def _drop_samples_after(self, step: int) -> None:
        path = self.run_dir / SAMPLES_FILE
        if not path.is_file():
            return
        text = path.read_text(encoding="utf-8")
        blocks = [b for b in re.split(r"(?m)^(?====== step \d+ =====$)", text) if b]
        kept = [b for b in blocks if _sample_step(b) <= step]
        if len(kept) != len(blocks):
            save_whole(path, "".join(kept), intact=INTACT)


def _append(path: Path, text: str, saved: bool) -> None:
    """`text` at the end of one of the run's logs; a full disk (or another
    failed write) stops the run in one line, as a failed save does. `saved`:
    the run has a checkpoint to go on from."""
    try:
        with path.open("a", encoding="utf-8", newline="") as out:  # samples as generated, on Windows too
            out.write(text)
    except FileNotFoundError:
        gone = f"cannot write {path}: {path.parent} is gone (was it moved or deleted while the run trained?)"
        if not saved:
            raise CharlstmError(f"{gone}, before its first checkpoint: start the run again") from None
        raise CharlstmError(
            f"{gone}; its checkpoints went with it, and 'charlstm resume' continues from them wherever they are now"
        ) from None
    except OSError as err:
        raise CharlstmError(f"cannot write {path}: {err.strerror}; {INTACT}") from None


def _sample_step(block: str) -> int:
    found = re.match(r"===== step (\d+) =====", block)
    return int(found.group(1)) if found else -1


def _finite(value: Any) -> Any:
    # Any real number, NumPy's float32 among them (not a Python float).
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def strict_json(value: Any, **options: Any) -> str:
    """`json.dumps`, with every infinity and NaN as null, as the metrics
    log writes them: strict JSON has neither, and what writes them
    (`--clip inf` in a run's settings, as Python's json writes it: Infinity)
    fails JSON.parse and other strict readers (a walkthrough, 2026-12-06)."""
    return json.dumps(_finite(value), allow_nan=False, **options)


def _step_of(line: str) -> float:
    """The line's step; infinity for a line that cannot be read (cut off by a crash)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return math.inf
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) else math.inf
