"""The Python API: train, resume or load a model; sample from it, score text.

    import charlstm

    model = charlstm.train("shakespeare.txt", out="runs/demo", steps=300)
    print(model.sample(200, temperature=0.8, prime="ROMEO."))
    print(model.evaluate(open("hamlet.txt").read()).bits_per_char)
    model = charlstm.load("runs/demo")  # later: its best checkpoint

The `charlstm` command line is a thin layer over these functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from charlstm import checkpoint, data, events, runs
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
        skipped = {c: text.count(c) for c in self.vocab.unknown(text)}
        if skipped:
            text = text.translate({ord(c): None for c in skipped})
            if len(text) < 2:
                raise CorpusError(
                    f"almost none of the text is in the model's vocabulary ({sum(skipped.values())} characters "
                    "skipped): nothing to score"
                )
        score = make_scorer(self.model_config)(
            self.params, self.vocab.encode(text), streams or self.train_config.batch_size
        )
        return dataclasses.replace(score, skipped=skipped)


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
    run_dir = Path(out) if out is not None else runs.default_run_dir(path)
    runs.prepare_run_dir(run_dir)
    return run, run_dir


def run_session(
    run: Run, run_dir: Path, on_event: EventHandler | None = None, should_stop: StopCheck | None = None
) -> events.Finished:
    """Train `run` in `run_dir` until done, stopped or diverged, keeping its
    checkpoints and logs; every event also goes to `on_event`."""
    writer, log = CheckpointWriter(run_dir), RunLog(run_dir)
    finished: events.Finished | None = None
    try:
        for event in fit(run, writer.save, should_stop or (lambda: False)):
            log.handle(event)
            if on_event is not None:
                on_event(event)
            if isinstance(event, events.Finished):
                finished = event
    finally:
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
    hidden_size: int = ModelConfig.hidden_size,
    num_layers: int = ModelConfig.num_layers,
    embed_dim: int = ModelConfig.embed_dim,
    cell: str = ModelConfig.cell,
    on_event: EventHandler | None = None,
    should_stop: StopCheck | None = None,
    **options: Any,
) -> Model:
    """Train a new model on `corpus` and return its best checkpoint.

    `options` are TrainConfig fields (steps=, batch_size=, seq_len=,
    learning_rate=, max_seconds=, ...). `on_event` receives the loop's events
    (see `charlstm.events`); `should_stop` is polled between steps, and when
    it returns True the run saves and stops (resume it later). Raises
    TrainingDiverged if the loss stops being finite."""
    try:
        config = TrainConfig(**options)
    except TypeError as err:
        raise ConfigError(f"unknown training option: {err}") from None
    model = {"hidden_size": hidden_size, "num_layers": num_layers, "embed_dim": embed_dim, "cell": cell}
    run, run_dir = prepare(corpus, out, model, config)
    return _trained(run_session(run, run_dir, on_event, should_stop), run_dir)


def resume(
    run_dir: str | Path,
    *,
    force: bool = False,
    on_event: EventHandler | None = None,
    should_stop: StopCheck | None = None,
    **overrides: Any,
) -> Model:
    """Continue the run in `run_dir` from its latest checkpoint, exactly.

    `overrides` may change the fields in `runs.RESUMABLE_FIELDS` (steps=,
    learning_rate=, max_seconds=, ...); `force` resumes even if the corpus
    file changed."""
    path = Path(run_dir)
    run = runs.resume_run(path, overrides, force=force)
    return _trained(run_session(run, path, on_event, should_stop), path)
