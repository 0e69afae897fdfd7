"""The Python API: train, resume or load a model; sample from it, score text.

    import charlstm

    model = charlstm.train("shakespeare.txt", out="runs/demo", steps=300)
    print(model.sample(200, temperature=0.8, prime="ROMEO."))
    print(model.evaluate(open("hamlet.txt").read()).bits_per_char)
    seen = model.inspect("To be, or not to be")  # gates, c, h, predictions per character
    model = charlstm.load("runs/demo")  # later: its best checkpoint

The `charlstm` command line is a thin layer over these functions.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from charlstm import checkpoint, data, distributed, events, introspect, presets, runs
from charlstm.checkpoint import CheckpointWriter
from charlstm.config import ModelConfig, SampleConfig, TrainConfig
from charlstm.errors import CharlstmError, ConfigError, CorpusError
from charlstm.evaluate import Score, make_scorer
from charlstm.metrics import RunLog
from charlstm.model import Params, count_params
from charlstm.sample import sample_texts, stream_texts
from charlstm.state import Run
from charlstm.training import fit
from charlstm.vocab import Vocab

EventHandler = Callable[[events.Event], None]
StopCheck = Callable[[], bool]


class TrainingDiverged(CharlstmError):
    """Training stopped because a loss, the gradients or the parameters stopped
    being finite. The run directory keeps its last good checkpoint."""

    def __init__(self, step: int, run_dir: Path):
        super().__init__(f"training diverged at step {step}; the newest checkpoint in {run_dir} is the last good one")
        self.step = step
        self.run_dir = run_dir


@dataclasses.dataclass(frozen=True)
class Model:
    """A trained model, as loaded from one checkpoint."""

    path: Path  # the checkpoint's step directory
    model_config: ModelConfig
    train_config: TrainConfig
    vocab: Vocab
    params: Params
    step: int
    best_val_loss: float | None  # nats/char, the run's best so far when saved
    train_seconds: float
    history: list[dict[str, float]]  # validation passes: step, val_loss, train_seconds
    corpus_path: str

    @property
    def num_params(self) -> int:
        return count_params(self.params)

    def sample(
        self,
        length: int = SampleConfig.length,
        *,
        temperature: float = SampleConfig.temperature,
        prime: str = SampleConfig.prime,
        seed: int = SampleConfig.seed,
        top_k: int = SampleConfig.top_k,
        top_p: float = SampleConfig.top_p,
    ) -> str:
        """`length` new characters continuing `prime` (not included)."""
        request = SampleConfig(length, temperature, prime, seed, top_k=top_k, top_p=top_p)
        return self.generate(request)[0]

    def generate(self, request: SampleConfig) -> list[str]:
        """`request.num_samples` texts, generated together in one batch."""
        return sample_texts(self.model_config, self.params, self.vocab, request)

    def stream(self, request: SampleConfig, chunk: int = 256) -> Iterator[list[str]]:
        """The same texts as `generate`, a piece of each at a time as it is generated."""
        return stream_texts(self.model_config, self.params, self.vocab, request, chunk)

    def evaluate(self, text: str, streams: int | None = None) -> Score:
        """Loss per character on `text`, read with carried state in up to
        `streams` parallel streams (default: the training batch size, which
        is how validation was scored). Characters the model never saw are
        left out, and counted in `Score.skipped`."""
        text, skipped = self._known(text, "score")
        score = make_scorer(self.model_config)(
            self.params, self.vocab.encode(text), streams or self.train_config.batch_size
        )
        return dataclasses.replace(score, skipped=skipped)

    def inspect(self, text: str, max_chars: int = introspect.MAX_CHARS) -> introspect.Inspection:
        """What the model does on the first `max_chars` characters of `text`,
        read from a zero state with carried state (as `evaluate(text,
        streams=1)` reads it): per character and layer the gates, c and h,
        and the next-character distribution; see `Inspection` for the
        arrays and their shapes. Characters the model never saw are left
        out, and counted in `Inspection.skipped`."""
        introspect.check_max_chars(max_chars)
        head, skipped = self._known(text[:max_chars], "inspect")
        return introspect.record(
            self.model_config,
            self.params,
            self.vocab,
            head,
            skipped=skipped,
            truncated=max(0, len(text) - max_chars),
        )

    def _known(self, text: str, verb: str) -> tuple[str, dict[str, int]]:
        """`text` without the characters the model never saw, and how often each occurred."""
        skipped = {c: text.count(c) for c in self.vocab.unknown(text)}
        if skipped:
            text = text.translate({ord(c): None for c in skipped})
            if len(text) < 2:
                raise CorpusError(
                    f"almost none of the text is in the model's vocabulary ({sum(skipped.values())} characters "
                    f"skipped): nothing to {verb}"
                )
        return text, skipped


def load(path: str | Path, prefer: str = checkpoint.BEST) -> Model:
    """A run directory (its best checkpoint by validation loss, or with
    `prefer="latest"` its newest), or one checkpoint step directory."""
    ckpt = checkpoint.load(Path(path), prefer=prefer)
    return Model(
        path=ckpt.path,
        model_config=ckpt.model_config,
        train_config=ckpt.train_config,
        vocab=ckpt.vocab,
        params=ckpt.state.params,
        step=int(ckpt.state.step),
        best_val_loss=ckpt.best_val_loss,
        train_seconds=ckpt.train_seconds,
        history=ckpt.history,
        corpus_path=ckpt.corpus_path,
    )


def prepare(corpus: str | Path, out: str | Path | None, model: dict[str, Any], config: TrainConfig) -> tuple[Run, Path]:
    """A new run on `corpus` (a file, or a shipped corpus's name) and its
    fresh run directory. `model`: ModelConfig fields other than vocab_size."""
    path, _ = data.resolve_corpus_path(str(corpus))
    run = runs.new_run(data.read_corpus(path.resolve()), model, config)
    # The processes of a multi-process run must name the same directory.
    run_dir = Path(out) if out is not None else runs.default_run_dir(path, when=distributed.from_main(time.time()))
    runs.check_run_dir(run_dir)
    # ... and all look at it before any of them creates it (or its checkpoint folders).
    distributed.barrier("charlstm: run directory checked")
    runs.prepare_run_dir(run_dir, checked=True)
    return run, run_dir


def run_session(
    run: Run,
    run_dir: Path,
    on_event: EventHandler | None = None,
    should_stop: StopCheck | None = None,
    devices: int | None = None,
) -> events.Finished:
    """Train `run` in `run_dir` until done, stopped or diverged, keeping its
    checkpoints and logs; every event also goes to `on_event`. The batch is
    split over the first `devices` local devices (default: all); in a
    multi-process run (`distributed.initialize`) every process calls this,
    and only the first writes the logs."""
    writer = CheckpointWriter(run_dir)  # every process: Orbax coordinates their saves
    log = RunLog(run_dir) if distributed.is_main() else None
    finished: events.Finished | None = None
    try:
        for event in fit(run, writer.save, should_stop or (lambda: False), devices=devices):
            if log is not None:
                log.handle(event)
            if on_event is not None:
                on_event(event)
            if isinstance(event, events.Finished):
                finished = event
    finally:
        if log is not None:
            log.close()
        writer.close()
    assert finished is not None  # fit always ends with Finished
    return finished


def _trained(finished: events.Finished, run_dir: Path) -> Model:
    if finished.reason == "diverged":
        raise TrainingDiverged(finished.step, run_dir)
    return load(run_dir)


def train(
    corpus: str | Path,
    out: str | Path | None = None,
    *,
    preset: str | None = None,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    embed_dim: int | None = None,
    cell: str | None = None,
    norm: str | None = None,
    on_event: EventHandler | None = None,
    should_stop: StopCheck | None = None,
    devices: int | None = None,
    **options: Any,
) -> Model:
    """Train a new model on `corpus` and return its best checkpoint.

    `preset` ("tiny", "small", "medium", "large"; see `charlstm.presets`)
    sets the sizes the other arguments leave out; the model's shape is
    otherwise ModelConfig's defaults. `options` are TrainConfig fields
    (steps=, batch_size=, seq_len=, learning_rate=, max_seconds=, ...).
    `on_event` receives the loop's events (see `charlstm.events`);
    `should_stop` is polled between steps, and when it returns True the run
    saves and stops (resume it later). `devices`: how many local devices to
    split the batch over (default: all). Raises TrainingDiverged if the loss
    stops being finite."""
    shape = {"hidden_size": hidden_size, "num_layers": num_layers, "embed_dim": embed_dim, "cell": cell, "norm": norm}
    model, options = presets.apply(preset, {k: v for k, v in shape.items() if v is not None}, options)
    try:
        config = TrainConfig(**options)
    except TypeError as err:
        raise ConfigError(f"unknown training option: {err}") from None
    # A batch the devices cannot share fails here, before any file is written.
    distributed.make_mesh(config.batch_size, devices)
    run, run_dir = prepare(corpus, out, model, config)
    return _trained(run_session(run, run_dir, on_event, should_stop, devices), run_dir)


def resume(
    run_dir: str | Path,
    *,
    force: bool = False,
    on_event: EventHandler | None = None,
    should_stop: StopCheck | None = None,
    devices: int | None = None,
    **overrides: Any,
) -> Model:
    """Continue the run in `run_dir` from its latest checkpoint, exactly.

    `overrides` may change the fields in `runs.RESUMABLE_FIELDS` (steps=,
    learning_rate=, max_seconds=, ...); `force` resumes even if the corpus
    file changed. `devices` need not be the count the run started with: the
    batch only has to split evenly over it."""
    path = Path(run_dir)
    run = runs.resume_run(path, overrides, force=force)
    return _trained(run_session(run, path, on_event, should_stop, devices), path)
