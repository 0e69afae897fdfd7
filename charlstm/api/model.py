"""A trained model (`Model`), as loaded from a checkpoint (`load`): sampling,
scoring, inspecting and exporting it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from charlstm.api import reading
from charlstm.api.runs import TextFiles, Texts
from charlstm.arguments import (
    check,
    html_file,
    optional_callable,
    path_like,
    paths_of,
    true_or_false,
    weights_directory,
    whole_number,
)
from charlstm.config import ModelConfig, SampleConfig, TrainConfig
from charlstm.core.generation import (
    Completion,
    check_request,
    complete,
    default_prime,
    sample_texts,
    skipped_form,
    stream_texts,
)
from charlstm.core.model import Params, count_params
from charlstm.core.scorer import Score, make_scorer
from charlstm.errors import CharlstmError, ConfigError, CorpusError
from charlstm.export import page, weights
from charlstm.introspect import page as inspection_page
from charlstm.introspect import record
from charlstm.plots import check_png_path, require_matplotlib
from charlstm.plots.saturation import plot_saturation
from charlstm.runtime.jax_settings import held_pieces, holding
from charlstm.text import manifest, streams
from charlstm.text.cache import CacheUnwritable
from charlstm.text.textfile import read_corpus, read_head, read_size
from charlstm.text.tokenfile import open_tokens
from charlstm.text.vocab import BOUNDARY, Vocab
from charlstm.training import catalog, checkpoint, checkpoint_paths
from charlstm.training.run import RUNS_DIR
from charlstm.units import fixed


# eq=False: two models are the same object or different ones; comparing
# their parameter arrays field by field would raise (an array's truth value
# is ambiguous), and a model is then hashable, by identity.
@dataclasses.dataclass(frozen=True, eq=False)
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
    # The run's corpus.json where `load(corpus=...)` moved the corpus; None:
    # read from the run directory when the held-out text is needed.
    corpus_files: dict[str, Any] | None = None
    # How the training session that returned this model ended ("done", "time
    # limit", "interrupted" or "patience"); None for a model loaded from disk.
    ended: str | None = None

    @property
    def num_params(self) -> int:
        return count_params(self.params)

    def __repr__(self) -> str:
        # The dataclass's own repr would print every parameter array.
        loss = "" if self.best_val_loss is None else f", best validation loss {fixed(self.best_val_loss, 4)}"
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
        stop: str | Sequence[str] | None = (),
    ) -> str:
        """`length` new characters continuing `prime` (not included), or
        fewer: up to the first of the `stop` texts (one text, or several;
        not included), or, for a
        model trained on several documents, to the end of the document it
        writes (every sample starts a new one)."""
        # None, one text, or several; SampleConfig refuses anything else with a ConfigError.
        stops: Any = () if stop is None else stop  # any other iterable too
        request = SampleConfig(length, temperature, prime, seed, top_k=top_k, top_p=top_p, stop=stops)
        return self.generate(request)[0]

    @holding
    def generate(self, request: SampleConfig) -> list[str]:
        """`request.num_samples` texts, generated together (8,192 at a time at most)."""
        _check_request(request, "generate")
        return sample_texts(self.model_config, self.params, self.vocab, request)

    @holding
    def complete(self, request: SampleConfig) -> list[Completion]:
        """The texts of `generate`, each with why it ended: `finish_reason`
        is "stop" where one of `request.stop` ended it, "end" where the
        model ended its document (a model of several documents), else
        "length"."""
        _check_request(request, "complete")
        return complete(self.model_config, self.params, self.vocab, request)

    @holding
    def check(self, request: SampleConfig) -> None:
        """Refuse, as sampling would (a CharlstmError), a request this model
        cannot sample: a prime with characters it never saw, a stop text
        with characters it never writes. Samples nothing: what a caller
        asks before a long generation, to say what comes first."""
        _check_request(request, "check")
        check_request(self.vocab, request)

    @holding  # its first piece is begun here, the rest as they are asked for
    def stream(self, request: SampleConfig, chunk: int = 256) -> Iterator[list[str]]:
        """The same texts as `generate`, a piece of each at a time as it is
        generated: `chunk` characters of each (at most LONGEST_CHUNK, 16,384)."""
        _check_request(request, "stream")
        return held_pieces(stream_texts(self.model_config, self.params, self.vocab, request, chunk))

    @holding
    def evaluate(
        self,
        text: str | Sequence[str] | Texts | TextFiles,
        streams: int | None = None,
        *,
        documents: bool = False,
        progress: Callable[[float], None] | None = None,
    ) -> Score:
        """Loss per character on `text`, read with carried state in up to
        `streams` parallel streams (default: the training batch size, which
        is how validation was scored). Characters the model never saw are
        left out, and counted in `Score.skipped`. `documents`: `text` marks
        where documents meet with the boundary symbol U+FDD0, as
        `held_out()` returns a several-documents run's validation text;
        otherwise a U+FDD0 in it is left out like an unknown character (a
        training file holding one is refused).

        `text` may also be a list of documents (the texts of several files):
        a model trained on several documents reads each from its start, as
        its validation read its own (`documents` is then the model's to
        decide); a model trained on one text reads them one after another.
        A text alone is one document: `evaluate(text)` is `evaluate([text])`.
        `text` may also be files found by `find_texts`, read in place as
        training reads its corpus: encoded once into the corpus cache under
        this model's vocabulary, then mapped, so their size is bounded by the
        disk, not by memory. Each is a document, read as for a list; so is
        each of `read_texts`' documents.

        `progress`, if given, is called with the share scored so far (0 to
        1) as the scoring goes (a large text takes minutes on a CPU)."""
        optional_callable(progress, "progress")
        documents = true_or_false(documents, "documents")
        if isinstance(text, TextFiles):
            return self._evaluate_files(text, streams, progress)
        if isinstance(text, Texts):  # read_texts(...): its documents, each from its start
            text = list(text.documents)
        reading.refuse_a_file_name(text, "evaluate")
        text = reading.one_document(self.vocab, text, documents)
        stray: dict[str, int] = {}
        if isinstance(text, list | tuple):
            text, stray, documents = *reading.joined(self.vocab, text), BOUNDARY in self.vocab.chars
        text, skipped = reading.known(self.vocab, text, "evaluate", documents, "score")
        skipped = {**stray, **skipped}
        return self._with_skipped(self._score(self.vocab.encode(text), streams, progress), skipped)

    def _evaluate_files(
        self, files: TextFiles, max_streams: int | None, progress: Callable[[float], None] | None
    ) -> Score:
        try:
            # Marked as the model learned to read: each file after the boundary symbol if it learned several.
            tokens = open_tokens(files.corpus, self.vocab, boundary=BOUNDARY in self.vocab.chars)
        except CacheUnwritable:  # no room or no right to write it: the files read into memory, the same score
            texts = [read_corpus(Path(d.path), "the text").text for d in files.corpus.val]
            return self.evaluate(texts, max_streams, progress=progress)
        score = self._score(streams.Segments(tokens.ids, [(0, len(tokens.ids))], tokens.checked), max_streams, progress)
        return self._with_skipped(score, dict(tokens.skipped))

    def _with_skipped(self, score: Score, skipped: dict[str, int]) -> Score:
        """`score` with the characters its text had that the model never saw."""
        return dataclasses.replace(score, skipped=skipped, other_form=skipped_form(self.vocab, skipped))

    def _score(
        self, ids: np.ndarray | streams.Segments, max_streams: int | None, progress: Callable[[float], None] | None
    ) -> Score:
        score: Score = make_scorer(self.model_config)(self.params, ids, self._streams(max_streams), progress=progress)
        return score

    def _streams(self, streams: int | None) -> int:
        """The streams to score in: those asked for, else the training batch size, as validation."""
        if streams is None:
            return self.train_config.batch_size
        streams = whole_number(streams, "streams")
        if streams < 1:
            raise ConfigError(f"streams must be a whole number >= 1, got {streams!r}")
        return streams

    @holding
    def inspect(
        self,
        text: str | Sequence[str] | Texts | TextFiles,
        max_chars: int = record.MAX_CHARS,
        *,
        documents: bool = False,
    ) -> record.Inspection:
        """What the model does on the first `max_chars` characters of `text`,
        read from a zero state with carried state (as `evaluate(text,
        streams=1)` reads it): per character and layer the gates, c and h,
        and the next-character distribution; see `Inspection` for the
        arrays and their shapes. Characters the model never saw are left
        out, and counted in `Inspection.skipped`; `documents`, and `text` as
        a list of documents (or what `read_texts` read), as for `evaluate`;
        files found by `find_texts` are read only as far as `max_chars` takes."""
        max_chars = record.check_max_chars(max_chars)
        documents = true_or_false(documents, "documents")
        if isinstance(text, Texts):  # read_texts(...): its documents, each from its start, as evaluate takes them
            text = list(text.documents)
        reading.refuse_a_file_name(text, "inspect")
        text = reading.one_document(self.vocab, text, documents)
        if isinstance(text, TextFiles):
            heads, left = [], max_chars
            for document in text.corpus.val:
                if read_size(Path(document.path)) != document.size:  # what was counted is not what is there
                    raise CorpusError(f"{document.path} changed since it was found; run again")
                if left > 0:
                    heads.append(read_head(Path(document.path), left))
                    left -= len(heads[-1])
            seen = self.inspect(heads, max_chars)
            return dataclasses.replace(seen, truncated=text.corpus.chars - sum(map(len, heads)))
        stray: dict[str, int] = {}
        head: object  # what is read: a text, or something refused below
        if isinstance(text, list | tuple):
            # max_chars of the documents' own characters: cut before joining,
            # so the boundary symbols take none of them and only what is read is counted.
            reading.check_documents(text)
            cut, left = [], max_chars
            for document in text:
                if left <= 0:
                    break
                cut.append(document[:left])
                left -= len(cut[-1])
            truncated = sum(map(len, text)) - sum(map(len, cut))
            head, stray = reading.joined(self.vocab, cut)
            documents = BOUNDARY in self.vocab.chars
        elif isinstance(text, str):
            head, truncated = text[:max_chars], max(0, len(text) - max_chars)
        else:
            head, truncated = text, 0  # refused just below, with the reason
        read, skipped = reading.known(self.vocab, head, "inspect", documents)
        return record.record(
            self.model_config, self.params, self.vocab, read, skipped={**stray, **skipped}, truncated=truncated
        )

    @holding
    def write_inspection(
        self,
        seen: record.Inspection,
        path: str | Path,
        *,
        top: int = 5,
        source: str = "text",
        saturation_png: str | Path | None = None,
    ) -> inspection_page.Report:
        """The page `charlstm inspect` writes for `seen` (from `inspect`) at
        `path`, `source` naming the text in its header; returns it with the
        correlations of the text's features with every unit, the `top`
        strongest units of each, and the gates' saturation, as the
        command's tables list them. `saturation_png` also plots the
        saturation (the plot extra)."""
        check(
            isinstance(seen, record.Inspection),
            f"write_inspection takes what Model.inspect returns, got {type(seen).__name__}",
        )
        out = html_file(path, "path")
        if whole_number(top, "top") < 1:
            raise ConfigError(f"top must be >= 1, got {top}")
        check(isinstance(source, str), f"source names the text in the page's header: a str, got {source!r}")
        if saturation_png is not None:  # before the page, not after
            path_like(saturation_png, "saturation_png")
            check_png_path(Path(saturation_png), "saturation.png")
            require_matplotlib()
        try:
            found = inspection_page.report(out, seen, top=top, source=source, checkpoint=str(self.path))
            if saturation_png is not None:
                plot_saturation(found.saturation, Path(saturation_png))
        except OSError as err:
            raise CharlstmError(f"cannot write {err.filename}: {err.strerror}") from None
        return found

    @property
    def default_prime(self) -> str:
        """What a sample starts from when no prime is given."""
        return default_prime(self.vocab)

    @property
    def default_prime_text(self) -> str:
        """`default_prime` as text: empty for a model of documents, whose
        samples start at a document's start (the boundary symbol, no text)."""
        return self.default_prime.replace(BOUNDARY, "")

    @holding
    def export_html(self, path: str | Path, half: bool = False) -> page.ExportedPage:
        """Write one self-contained HTML page that runs this model in a
        browser: its weights (float32, or float16 with `half`, half the
        size), a JavaScript forward pass of its cell, and controls to write
        with it. Nothing is fetched; it opens from file://."""
        out = html_file(path, "path")
        half = true_or_false(half, "half")
        title = f"charlstm: {self._run_name()}"
        describe = f"{self.model_config.describe()} at step {self.step}"
        return page.write_page(
            out, self.model_config, self.vocab, self.params, half=half, title=title, describe=describe
        )

    @holding
    def export_weights(self, directory: str | Path) -> weights.ExportedWeights:
        """Write `directory`/model.safetensors (the parameters, float32) and
        model.json (configuration, vocabulary, tensor names and shapes):
        enough to run the model anywhere, with NumPy alone
        (examples/numpy_forward.py); nothing in them is code."""
        out = weights_directory(directory, "directory")
        # Named as the server names them: weights are handed to others, and
        # the folders above a run (a user's name among them) are no one's business.
        source = {
            "checkpoint": checkpoint_paths.checkpoint_name(self.path),
            "step": self.step,
            "corpus": Path(self.corpus_path).name,
            "best_val_loss": self.best_val_loss,
        }
        return weights.write_weights(out, self.model_config, self.vocab, self.params, source)

    def _run_name(self) -> str:
        """The run directory's name, or a checkpoint's own where it stands alone."""
        run = checkpoint_paths.run_of(self.path)
        return run.name if run is not None else self.path.name

    def validation_text(self) -> str:
        """The text validation scored and the model never trained on, read
        again from the run's corpus, which must not have changed since (a
        model of several documents has the boundary symbol before each)."""
        return self.held_out()[0]

    def held_out(self) -> tuple[str, dict[str, int]]:
        """`validation_text()`, and the characters of `--val-file` texts that
        the vocabulary lacks, which validation left out of it: how often each."""
        segments, skipped = self._held_out_ids()
        return self.vocab.decode(segments[:]), skipped

    @holding
    def evaluate_held_out(
        self, streams: int | None = None, *, progress: Callable[[float], None] | None = None
    ) -> Score:
        """`evaluate` on `validation_text()`, as validation scored it (its
        logged loss, and its characters left out), read in place from the
        run's token file: a held-out text of gigabytes needs no more memory
        than a validation pass. `progress` as for `evaluate`."""
        segments, skipped = self._held_out_ids()
        return self._with_skipped(self._score(segments, streams, progress), skipped)

    @holding
    def inspect_held_out(self, max_chars: int = record.MAX_CHARS) -> record.Inspection:
        """`inspect` on `validation_text()`, of which only the characters read
        are decoded: a held-out text of gigabytes is no burden."""
        max_chars = record.check_max_chars(max_chars)
        segments, _ = self._held_out_ids()
        # max_chars of the documents' own characters, as for a list of them:
        # the boundary symbols before each take none (ids read until enough).
        boundary, n = self.vocab.boundary_id, max_chars
        while boundary is not None and n < len(segments):
            enough = max_chars + int(np.count_nonzero(segments[:n] == boundary))
            if enough <= n:
                break
            n = enough
        head = self.vocab.decode(segments[:n])
        seen = self.inspect(head, max(len(head), max_chars), documents=True)  # the text marks its documents
        # What was not read, of the documents' own characters too: the rest
        # counted a block at a time, in bounded memory.
        rest = len(segments) - len(head)
        if boundary is not None:
            for start in range(len(head), len(segments), 1 << 20):
                rest -= int(np.count_nonzero(segments[start : start + (1 << 20)] == boundary))
        return dataclasses.replace(seen, truncated=rest)

    def _held_out_ids(self) -> tuple[streams.Segments, dict[str, int]]:
        run = checkpoint_paths.run_of(self.path)
        files = self.corpus_files
        if files is None and run is not None:
            files = manifest.read_files(run)  # the files it read, to name what changed
        try:
            return reading.held_out_ids(
                self.corpus, files, self.corpus_path, self.corpus_sha256, self.vocab, self.train_config.val_fraction
            )
        except CorpusError:
            if run is not None:
                self._refuse_text_changed_since(run)
            raise

    def _refuse_text_changed_since(self, run: Path) -> None:
        """Where the run went on, after this checkpoint, on another text (a
        resume given --force past its changes), say so: its corpus.json
        lists that text's files, so the error could not name what changed."""
        try:
            newest = checkpoint.describe(run, checkpoint.LATEST)
        except CharlstmError:
            return
        if newest.step > self.step and newest.corpus_sha256 != self.corpus_sha256:
            raise CorpusError(
                f"checkpoint {self.path} (step {self.step}) was trained on a text that the run changed later, "
                f"when a resume was forced past the changes; the text it was scored on is gone: the run's latest "
                f"checkpoint, {newest.path} (step {newest.step}), validates on the text as it is now"
            )

    def validation_description(self) -> str:
        """What `validation_text` is, in words."""
        return manifest.describe_validation(self.corpus, self.train_config.val_fraction)


def _check_request(request: Any, verb: str) -> None:
    if not isinstance(request, SampleConfig):
        raise ConfigError(
            f"{verb} takes a charlstm.SampleConfig, such as SampleConfig(length=300, temperature=0.8), "
            f"got {type(request).__name__}"
        )


@holding
def load(
    path: str | Path | None = None,
    prefer: str = checkpoint.BEST,
    *,
    corpus: str | Path | Sequence[str | Path] | None = None,
) -> Model:
    """A run directory (its best checkpoint by validation loss, or with
    `prefer="latest"` its newest), or one checkpoint step directory; by
    default the most recently updated run under ./runs. `corpus`: where
    the run's corpus is now, if it was moved or renamed (a file or folder
    for each the run read, in order, then for each of its `val_file` ones
    if they moved apart), for the methods that read its
    held-out text; that text must still be the run's."""
    if path is not None:
        path_like(path, "path")
    moved_to = paths_of(corpus, "corpus")
    ckpt = checkpoint.load(Path(path) if path is not None else catalog.most_recent_run(RUNS_DIR), prefer=prefer)
    ckpt = checkpoint.with_corpus_now(ckpt)  # a best checkpoint saved before a resume with --corpus
    entry, files = ckpt.corpus, None
    if moved_to:
        run = checkpoint_paths.run_of(ckpt.path)
        recorded = entry or {"path": ckpt.corpus_path, "sha256": ckpt.corpus_sha256}
        entry, files = manifest.moved(recorded, manifest.read_files(run) if run is not None else None, moved_to)
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
        corpus_path=entry.get("path", ckpt.corpus_path),
        corpus_sha256=ckpt.corpus_sha256,
        corpus=entry,
        init_from=ckpt.init_from,
        corpus_files=files,
    )
