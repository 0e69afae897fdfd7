"""The Python API: train, resume or load a model; sample from it, score text.

    import charlstm

    model = charlstm.train("shakespeare.txt", out="runs/demo", steps=300)
    print(model.sample(200, temperature=0.8, prime="ROMEO."))
    print(model.evaluate(open("hamlet.txt").read()).bits_per_char)
    seen = model.inspect("To be, or not to be")  # gates, c, h, predictions per character
    model = charlstm.load("runs/demo")  # later: its best checkpoint

The `charlstm` command line is a thin layer over these functions: every
command parses its options, calls one of them and renders what comes back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from charlstm import presets
from charlstm.config import (
    FINE_TUNE_LEARNING_RATE,
    ModelConfig,
    SampleConfig,
    ServeConfig,
    TrainConfig,
    check_seed,
)
from charlstm.core.generation import Completion, complete, default_prime, sample_texts, stream_texts
from charlstm.core.model import Params, count_params, param_count
from charlstm.core.scorer import Score, make_scorer
from charlstm.errors import CharlstmError, CheckpointError, ConfigError, CorpusError
from charlstm.export import page, weights
from charlstm.flags import flag
from charlstm.introspect import record
from charlstm.plots import curves
from charlstm.text import manifest, streams
from charlstm.text.corpus import read_corpus, resolve_corpus_path
from charlstm.text.tokens import open_tokens, prepare
from charlstm.text.vocab import BOUNDARY, Vocab
from charlstm.training import catalog, checkpoint, distributed, events, session
from charlstm.training import tune as tuning
from charlstm.training.run import RUNS_DIR, Run
from charlstm.training.runlog import read_metrics
from charlstm.training.session import EventHandler, StopCheck

_MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig))


class TrainingDiverged(CharlstmError):
    """Training stopped because a loss, the gradients or the parameters stopped
    being finite. The run directory keeps its last good checkpoint."""

    def __init__(
        self, step: int, run_dir: Path, learning_rate: float, steps: int, last_good: Path | None, last_good_step: int
    ):
        super().__init__(f"training diverged at step {step}; the newest checkpoint in {run_dir} is the last good one")
        self.step = step
        self.run_dir = run_dir
        self.learning_rate = learning_rate  # the peak learning rate it diverged with
        self.steps = steps  # the run's planned total
        self.last_good = last_good  # the newest checkpoint's step directory; None if it diverged before one
        self.last_good_step = last_good_step


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
    corpus_sha256: str
    corpus: dict[str, Any] = dataclasses.field(default_factory=dict)  # what the run read (text/manifest.py)
    init_from: dict[str, Any] | None = None  # the checkpoint a fine-tuned run started from
    # How the training session that returned this model ended ("done", "time
    # limit", "interrupted" or "patience"); None for a model loaded from disk.
    ended: str | None = None

    @property
    def num_params(self) -> int:
        return count_params(self.params)

    def __repr__(self) -> str:
        # The dataclass's own repr would print every parameter array.
        loss = "" if self.best_val_loss is None else f", best validation loss {self.best_val_loss:.4f}"
        return (
            f"<charlstm.Model {self.model_config.describe()}, {self.num_params:,} parameters, "
            f"{len(self.vocab.chars)} characters, step {self.step}{loss}, from {self.path}>"
        )

    def sample(
        self,
        length: int = SampleConfig.length,
        *,
        temperature: float = SampleConfig.temperature,
        prime: str = SampleConfig.prime,
        seed: int = SampleConfig.seed,
        top_k: int = SampleConfig.top_k,
        top_p: float = SampleConfig.top_p,
        stop: Sequence[str] = (),
    ) -> str:
        """`length` new characters continuing `prime` (not included), or
        fewer: up to the first of the `stop` texts (not included), or, for a
        model trained on several documents, to the end of the document it
        writes (every sample starts a new one)."""
        request = SampleConfig(length, temperature, prime, seed, top_k=top_k, top_p=top_p, stop=tuple(stop))
        return self.generate(request)[0]

    def generate(self, request: SampleConfig) -> list[str]:
        """`request.num_samples` texts, generated together in one batch."""
        return sample_texts(self.model_config, self.params, self.vocab, request)

    def complete(self, request: SampleConfig) -> list[Completion]:
        """The texts of `generate`, each with why it ended: `finish_reason`
        is "stop" where one of `request.stop` ended it, "end" where the
        model ended its document (a model of several documents), else
        "length"."""
        return complete(self.model_config, self.params, self.vocab, request)

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

    def inspect(self, text: str, max_chars: int = record.MAX_CHARS) -> record.Inspection:
        """What the model does on the first `max_chars` characters of `text`,
        read from a zero state with carried state (as `evaluate(text,
        streams=1)` reads it): per character and layer the gates, c and h,
        and the next-character distribution; see `Inspection` for the
        arrays and their shapes. Characters the model never saw are left
        out, and counted in `Inspection.skipped`."""
        record.check_max_chars(max_chars)
        head, skipped = self._known(text[:max_chars], "inspect")
        return record.record(
            self.model_config,
            self.params,
            self.vocab,
            head,
            skipped=skipped,
            truncated=max(0, len(text) - max_chars),
        )

    @property
    def default_prime(self) -> str:
        """What a sample starts from when no prime is given."""
        return default_prime(self.vocab)

    @property
    def default_prime_text(self) -> str:
        """`default_prime` as text: empty for a model of documents, whose
        samples start at a document's start (the boundary symbol, no text)."""
        return self.default_prime.replace(BOUNDARY, "")

    def export_html(self, path: str | Path, half: bool = False) -> page.ExportedPage:
        """Write one self-contained HTML page that runs this model in a
        browser: its weights (float32, or float16 with `half`, half the
        size), a JavaScript forward pass of its cell, and controls to write
        with it. Nothing is fetched; it opens from file://."""
        title = f"charlstm: {self._run_name()}"
        describe = f"{self.model_config.describe()} at step {self.step}"
        return page.write_page(
            Path(path), self.model_config, self.vocab, self.params, half=half, title=title, describe=describe
        )

    def export_weights(self, directory: str | Path) -> weights.ExportedWeights:
        """Write `directory`/model.safetensors (the parameters, float32) and
        model.json (configuration, vocabulary, tensor names and shapes):
        enough to run the model anywhere, with NumPy alone
        (examples/numpy_forward.py); nothing in them is code."""
        source = {
            "checkpoint": str(self.path),
            "step": self.step,
            "corpus": self.corpus_path,
            "best_val_loss": self.best_val_loss,
        }
        return weights.write_weights(Path(directory), self.model_config, self.vocab, self.params, source)

    def _run_name(self) -> str:
        """The run directory's name (a checkpoint is RUN/checkpoints/KIND/STEP)."""
        parts = self.path.parts
        return parts[-4] if len(parts) >= 4 and parts[-3] == "checkpoints" else self.path.name

    def validation_text(self) -> str:
        """The text validation scored and the model never trained on, read
        again from the run's corpus, which must not have changed since (a
        model of several documents has the boundary symbol before each)."""
        entry = self.corpus or {"path": self.corpus_path, "sha256": self.corpus_sha256}
        try:
            corpus = prepare(manifest.source_of(entry))
        except CorpusError as err:
            raise CorpusError(
                f"the run's corpus {self.corpus_path} is not there to take its validation text from ({err})",
                details=err.details,  # the files it names "above"
            ) from None
        if corpus.sha256 != self.corpus_sha256:
            raise CorpusError(
                f"the run's corpus {self.corpus_path} changed since it trained (sha256 differs), so its "
                "validation text is not the one the model was scored on"
            )
        tokens = open_tokens(corpus, self.vocab)
        hashes = [d.sha256 for d in corpus.train]
        held_out = streams.split_documents(tokens, self.train_config.val_fraction, hashes)
        segments = streams.Segments(tokens.ids, held_out.val)
        return self.vocab.decode(segments[:])

    def validation_description(self) -> str:
        """What `validation_text` is, in words."""
        return manifest.describe_validation(self.corpus, self.train_config.val_fraction)

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


def app(model: Model, *, api_key: str | None = None, **limits: Any) -> Any:
    """The HTTP server for `model` as an ASGI application (Starlette), to
    run under any ASGI server or mount in your own: POST /v1/generate,
    GET /v1/model, GET /healthz and a page at /. `limits` are ServeConfig
    fields (max_length=, max_samples=, timeout_s=, max_batch=, ...);
    with `api_key` every endpoint but /healthz and the page needs
    `Authorization: Bearer KEY`. Needs the serve extra."""
    try:
        from charlstm.serve.app import create_app
    except ImportError as err:
        raise CharlstmError(
            f"serving needs the serve extra ({err.name} is missing): pip install 'charlstm[serve]'"
        ) from None
    try:
        config = ServeConfig(**limits)
    except TypeError as err:
        raise ConfigError(f"unknown server option: {err}") from None
    about = {"checkpoint": str(model.path), "step": model.step, "best_val_loss": model.best_val_loss}
    return create_app(model.model_config, model.params, model.vocab, limits=config, api_key=api_key, about=about)


def serve(
    model: Model,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_key: str | None = None,
    access_log: bool = False,
    on_ready: Callable[[], None] | None = None,
    on_stop: Callable[[int], None] | None = None,
    **limits: Any,
) -> None:
    """Serve `app(model, ...)` with uvicorn on host:port until SIGTERM or
    Ctrl-C, which stop taking connections, let the requests in flight
    finish, and return. `on_ready` is called once it listens, `on_stop`
    with the signal that stops it."""
    application = app(model, api_key=api_key, **limits)
    from charlstm.serve import server

    if not 1 <= port <= 65535:
        raise ConfigError(f"{flag('port')} must be from 1 to 65535, got {port}")
    drain = application.state.limits.timeout_s + 5  # every request in flight can finish
    server.run(application, host, port, drain_s=drain, access_log=access_log, on_ready=on_ready, on_stop=on_stop)


def load(path: str | Path | None = None, prefer: str = checkpoint.BEST) -> Model:
    """A run directory (its best checkpoint by validation loss, or with
    `prefer="latest"` its newest), or one checkpoint step directory; by
    default the most recently updated run under ./runs."""
    ckpt = checkpoint.load(Path(path) if path is not None else catalog.most_recent_run(RUNS_DIR), prefer=prefer)
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
        corpus_sha256=ckpt.corpus_sha256,
        corpus=ckpt.corpus,
        init_from=ckpt.init_from,
    )


def train(
    corpus: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    *,
    preset: str | None = None,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    embed_dim: int | None = None,
    cell: str | None = None,
    norm: str | None = None,
    glob: str | None = None,
    val_file: str | Path | Sequence[str | Path] | None = None,
    skip_bad_files: bool = False,
    init_from: str | Path | None = None,
    on_event: EventHandler | None = None,
    should_stop: StopCheck | None = None,
    devices: int | None = None,
    **options: Any,
) -> Model:
    """Train a new model on `corpus` and return its best checkpoint.

    `corpus`: a UTF-8 text file, a folder (its files matching `glob`,
    default "**/*.txt"), or a list of them; each file is a document of its
    own. `val_file` (one or several files) is the validation text instead of
    a held-out share (`val_fraction`). Files that are not UTF-8 text stop
    the run, each named, unless `skip_bad_files`. `init_from` (a run
    directory or checkpoint) fine-tunes that model: its weights, with new
    characters added, a fresh optimizer and schedule, and a peak learning
    rate of FINE_TUNE_LEARNING_RATE (a new run's; see config.py for the
    measurements) unless one is given.

    `preset` ("tiny", "small", "medium", "large"; see `charlstm.presets`)
    sets the sizes the other arguments leave out; the model's shape is
    otherwise ModelConfig's defaults (or, with `init_from`, that model's).
    `options` are TrainConfig fields (steps=, batch_size=, seq_len=,
    learning_rate=, max_seconds=, patience=, ...). `on_event` receives the
    run's events (see `charlstm.training.events`): the corpus's reading,
    `Opened` once the run directory exists, then the loop's. `should_stop`
    is polled between steps, and when it returns True the run saves and
    stops (resume it later). `devices`: how many local devices to split the
    batch over (default: all). Raises TrainingDiverged if the loss stops
    being finite."""
    shape = {"hidden_size": hidden_size, "num_layers": num_layers, "embed_dim": embed_dim, "cell": cell, "norm": norm}
    given = {k: v for k, v in shape.items() if v is not None}
    if val_file is not None and "val_fraction" in options:
        raise ConfigError(
            f"give {flag('val_file')} or {flag('val_fraction')}, not both: with a validation file nothing is held out"
        )
    tuned = init_from is not None and "learning_rate" not in options
    model, options = presets.apply(preset, given, options)
    if init_from is not None:
        model = given  # the shape is the base model's: only what was asked explicitly must match it
        if tuned:
            options["learning_rate"] = FINE_TUNE_LEARNING_RATE
    try:
        config = TrainConfig(**options)
    except TypeError as err:
        raise ConfigError(f"unknown training option: {err}") from None
    check_seed(config.seed)  # a new run's; a stored run keeps the seed it was trained with
    # A batch the devices cannot share fails here, before any file is written.
    distributed.make_mesh(config.batch_size, devices)
    run, run_dir, shipped = session.new(
        corpus,
        out,
        model,
        config,
        glob=glob,
        val_file=val_file,
        skip_bad_files=skip_bad_files,
        init_from=init_from,
        on_event=on_event,
    )
    return _train(run, run_dir, on_event, should_stop, devices, shipped=shipped)


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

    `overrides` may change the fields in `training.run.RESUMABLE_FIELDS`
    (steps=, learning_rate=, max_seconds=, ...); `force` resumes even if
    the corpus file changed. `devices` need not be the count the run started
    with: the batch only has to split evenly over it."""
    path = Path(run_dir)
    run = session.resumed_run(path, overrides, force=force, on_event=on_event)
    distributed.make_mesh(run.train_config.batch_size, devices)
    return _train(run, path, on_event, should_stop, devices, resumed=True)


def _train(
    run: Run,
    run_dir: Path,
    on_event: EventHandler | None,
    should_stop: StopCheck | None,
    devices: int | None,
    *,
    resumed: bool = False,
    shipped: bool = False,
) -> Model:
    if on_event is not None:
        params = count_params(run.state.params)
        on_event(events.Opened(run_dir, run.corpus.path, run.model_config, run.train_config, params, resumed, shipped))
    finished = session.train(run, run_dir, on_event, should_stop, devices)
    if finished.reason == "diverged":
        try:
            directory, good_step = checkpoint.locate(run_dir, prefer=checkpoint.LATEST)
            last_good: Path | None = directory / str(good_step)
        except CheckpointError:  # diverged before its first save
            last_good, good_step = None, 0
        tc = run.train_config
        raise TrainingDiverged(finished.step, run_dir, tc.learning_rate, tc.steps, last_good, good_step)
    return dataclasses.replace(load(run_dir), ended=finished.reason)


def tune(
    corpus: str | Path,
    out: str | Path | None = None,
    *,
    trials: int | None = None,
    grid: bool = False,
    steps: int | None = None,
    budget_s: float | None = None,
    seed: int = 0,
    space: Mapping[str, str] | None = None,
    keep_all: bool = False,
    on_event: EventHandler | None = None,
    should_stop: StopCheck | None = None,
    **fixed: Any,
) -> tuning.Search:
    """A random (or `grid`) search, each trial a short run on the same budget:
    `steps` per trial, or `budget_s` seconds of training (default 60).
    `space` narrows what is searched, by config field ("learning_rate":
    "1e-3:3e-2", "hidden_size": "128,256"; see `training.tune.SPACE`);
    `fixed` sets other ModelConfig and TrainConfig fields for every trial.
    Returns the search's directory and its trials, best first."""
    model = {k: v for k, v in fixed.items() if k in _MODEL_FIELDS}
    train = {k: v for k, v in fixed.items() if k not in _MODEL_FIELDS}
    plan = tuning.plan(
        corpus,
        out,
        trials=trials,
        grid=grid,
        steps=steps,
        budget_s=budget_s,
        seed=seed,
        space=space,
        model=model,
        train=train,
        keep_all=keep_all,
    )
    results = list(tuning.search(plan, on_event or (lambda e: None), should_stop or (lambda: False)))
    return tuning.Search(plan.out, len(plan.points), tuning.ranked(results))


def list_runs(runs_dir: str | Path = RUNS_DIR) -> list[catalog.RunSummary]:
    """Every run under `runs_dir` with a checkpoint, most recently updated
    last; runs that cannot be read say why in `RunSummary.problem`."""
    return catalog.list_runs(Path(runs_dir))


@dataclasses.dataclass(frozen=True)
class Description:
    meta: checkpoint.Meta  # configs, vocabulary, corpus, metrics, the stored JSON
    params: int  # parameters of the model it describes
    validation: str  # what its validation text is, in words


def describe(path: str | Path) -> Description:
    """A checkpoint's configuration, vocabulary, corpus and metrics, from its
    metadata alone (no arrays are read): a run directory's best checkpoint,
    or one step directory."""
    meta = checkpoint.describe(Path(path))
    validation = manifest.describe_validation(meta.corpus, meta.train_config.val_fraction)
    return Description(meta, param_count(meta.model_config), validation)


def read_text(path: str | Path) -> tuple[Path, str]:
    """A UTF-8 text file (or a shipped corpus by its name) and its text."""
    found, _ = resolve_corpus_path(str(path), "text file")
    return found, read_corpus(found, "the text").text


def plot_runs(run_dirs: list[Path], out: Path, *, width_px: int = 1200, height_px: int = 450) -> Path:
    """Training and validation loss of the runs against step and time, overlaid, as a PNG (the plot extra)."""
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise CharlstmError(f"not a run directory: {run_dir}")
    return curves.plot_runs([(str(d), read_metrics(d)) for d in run_dirs], out, width_px=width_px, height_px=height_px)
