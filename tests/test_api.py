"""The Python API, starting with the example the README shows."""

import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import charlstm
from charlstm.config import SampleConfig

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # it trains on the shipped corpus by name, from an empty directory
    exec(compile(_readme_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("MACBETH.")
    assert "bits per char" in printed
    assert (tmp_path / "runs" / "api-demo" / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_train_load_sample_evaluate(tiny_corpus, tmp_path):
    seen = []
    model = charlstm.train(
        tiny_corpus,
        tmp_path / "run",
        hidden_size=16,
        embed_dim=8,
        steps=6,
        batch_size=4,
        seq_len=16,
        eval_every=3,
        on_event=seen.append,
    )
    assert isinstance(model, charlstm.Model) and model.step in (3, 6)
    assert model.path.parent.name == "best"
    kinds = [type(e).__name__ for e in seen]
    opened = kinds.index("Opened")  # after the corpus's reading, before the loop's events
    assert kinds[opened - 1] == "CorpusReady" and set(kinds[: opened - 1]) == {"Reading"}
    assert kinds[opened + 1] == "Started" and kinds[-1] == "Finished"
    again = charlstm.load(tmp_path / "run")
    # One line that says what it is, not every parameter array.
    assert re.fullmatch(r"<charlstm\.Model .*, [\d,]+ parameters, \d+ characters, step \d+.*, from .*>", repr(again))
    # So do what a notebook shows on a cell's last line: one was 94 lines of arrays, one 4.8 KB of checksums.
    described = repr(charlstm.describe(tmp_path / "run"))
    assert re.fullmatch(r"<charlstm\.Description 2x16 LSTM.*, [\d,]+ parameters, step \d+ of 6.*, from .*>", described)
    assert re.fullmatch(r"<charlstm\.Inspection .*, \d+ characters read, 2 x 16 units, [\d.]+ bits per character>",
                        repr(model.inspect("abcabcabcabc")))  # fmt: skip
    search = charlstm.Search(tmp_path / "s", 3, [])
    assert repr(search) == f"<charlstm.Search 0 of 3 trials, no validation loss yet, in {tmp_path / 's'}>"
    assert again.sample(50, seed=3, temperature=0.7) == model.sample(50, seed=3, temperature=0.7)
    texts = model.generate(SampleConfig(length=40, num_samples=2, seed=1))
    assert len(texts) == 2 and all(len(t) == 40 for t in texts)
    assert "".join(p[0] for p in model.stream(SampleConfig(length=40, seed=1), chunk=7)) == texts[0]
    # The held-out text scored as validation scored it: the loss the run logged for its best step.
    held_out = model.evaluate(model.validation_text(), documents=True)
    assert held_out.loss == pytest.approx(model.best_val_loss, rel=1e-5)
    whole = model.evaluate(tiny_corpus.read_text())
    assert whole.skipped == {} and whole.loss != held_out.loss

    resumed = charlstm.resume(model, steps=8)  # the model in hand names its run
    assert charlstm.load(tmp_path / "run", prefer="latest").step == 8
    assert resumed.best_val_loss is not None


def test_unknown_options_and_divergence_are_errors(tiny_corpus, tmp_path):
    with pytest.raises(charlstm.CharlstmError, match="unknown training option"):
        charlstm.train(tiny_corpus, tmp_path / "a", stepz=3)
    with pytest.raises(charlstm.TrainingDiverged) as err:
        charlstm.train(
            tiny_corpus, tmp_path / "b", steps=10, batch_size=4, seq_len=16, learning_rate=1e38, weight_decay=0
        )
    assert err.value.step >= 1
    # The message says what is there to continue from, and only that.
    if err.value.last_good is None:
        assert "before its first checkpoint" in str(err.value)
    else:
        assert f"(step {err.value.last_good_step}) is the last good one" in str(err.value)
    # A process pool's worker sends it back pickled: whole, not as a BrokenProcessPool (a walkthrough, 2026-12-06).
    back = pickle.loads(pickle.dumps(err.value))
    assert type(back) is charlstm.TrainingDiverged and str(back) == str(err.value)
    assert (back.step, back.run_dir, back.last_good, back.steps) == (
        err.value.step,
        err.value.run_dir,
        err.value.last_good,
        10,
    )
    # A missing run is the same error for resume as for load.
    for call in (charlstm.load, charlstm.resume):
        with pytest.raises(charlstm.CheckpointError):
            call(tmp_path / "nope")


def test_errors_pickle_whole_and_the_package_names_what_it_has():
    """The library's errors cross a process boundary with their fields; and
    `charlstm.api` is there after a plain `import charlstm`, as the docs
    write `charlstm.api.read_texts`, with every lazy name in `dir()`."""
    from charlstm.serving.requests import RequestError
    from charlstm.text.cache import CacheUnwritable

    for error in (
        charlstm.CorpusError("not text", ("a.bin: not UTF-8",)),
        CacheUnwritable("cannot write the corpus cache"),
        RequestError(422, "prime has characters the model never saw", "prime"),
        charlstm.ConfigError("steps must be a whole number"),
    ):
        error.add_note("raised in a worker")  # a note, and any attribute, comes back too
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error) and vars(back) == vars(error)
        assert back.__notes__ == ["raised in a worker"]
    assert charlstm.__getattr__("api") is charlstm.api  # what a fresh process's first `charlstm.api` calls
    assert {"api", "Model", "load", "__version__"} <= set(dir(charlstm))
    with pytest.raises(AttributeError, match="has no attribute 'lod'"):
        charlstm.lod  # noqa: B018


def test_a_run_without_on_event_warns_its_caller(tmp_path):
    """What the command line shows as it trains reaches a Python caller who
    watches nothing as warnings: the files left out and the run's warnings."""
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("the king and the queen speak of war\n" * 60, encoding="utf-8")
    (folder / "b.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    small = {"hidden_size": 16, "embed_dim": 8, "batch_size": 4, "seq_len": 16, "steps": 2}
    with pytest.warns(charlstm.CharlstmWarning) as caught:
        charlstm.train(folder, tmp_path / "run", skip_bad_files=True, **small)
    said = [str(w.message) for w in caught if issubclass(w.category, charlstm.CharlstmWarning)]
    assert f"skipped {folder / 'b.txt'}: not valid UTF-8 (byte offset 3: b'\\xe9\\n')" in said
    assert any(text.startswith("step 0: validation scores only") for text in said), said
    # Pointed at the caller's line, not inside the library (a walkthrough, 2026-12-05).
    where = {Path(w.filename) for w in caught if issubclass(w.category, charlstm.CharlstmWarning)}
    assert where == {Path(__file__)}, where
    seen = []  # a caller who watches gets events, and no warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", charlstm.CharlstmWarning)
        charlstm.train(folder, tmp_path / "watched", skip_bad_files=True, on_event=seen.append, **small)
    assert any(type(e).__name__ == "Skipped" for e in seen)
    # A notebook's progress printer that passes over Warned events hid them (a walkthrough): with_warnings keeps both.
    steps = []
    with pytest.warns(charlstm.CharlstmWarning) as caught:
        charlstm.train(
            folder, tmp_path / "both", skip_bad_files=True, on_event=charlstm.with_warnings(steps.append), **small
        )
    assert steps and [str(w.message) for w in caught if issubclass(w.category, charlstm.CharlstmWarning)] == said
    for given in ("print", None):  # None too: it would fail at the run's first event
        with pytest.raises(charlstm.ConfigError, match="on_event must be a function, got"):
            charlstm.with_warnings(given)


def test_messages_name_options_as_their_reader_gives_them(trained_run):
    """A Python caller is told the keyword it passed, a command line the
    flag, each in its own unit of time; a command a message suggests is a
    command line either way."""
    from typer.testing import CliRunner

    from charlstm.cli import app
    from charlstm.flags import command_line

    with pytest.raises(charlstm.ConfigError, match=r"^learning_rate must be > 0 and finite, got -1"):
        charlstm.TrainConfig(learning_rate=-1)
    with pytest.raises(charlstm.ConfigError, match=r"^max_seconds must be a finite number of seconds > 0, got -60"):
        charlstm.TrainConfig(max_seconds=-60)
    with command_line(), pytest.raises(charlstm.ConfigError, match=r"^--max-time must be .* minutes > 0, got -1 min"):
        charlstm.TrainConfig(max_seconds=-60)
    told = CliRunner().invoke(app, ["train", str(trained_run[1]), "--lr", "-1"])
    assert told.exit_code == 2 and "--lr must be > 0 and finite, got -1" in told.stderr
    # Outside the command, Python's names again.
    with pytest.raises(charlstm.ConfigError, match=r"^top_k must be >= 0"):
        charlstm.SampleConfig(top_k=-1)
    with pytest.raises(charlstm.CorpusError, match=r"charlstm train TEXT --init-from "):
        charlstm.train(trained_run[0], trained_run[0].parent / "never")  # a run given as the text
    # A switch as a Python caller turns it on.
    with pytest.raises(charlstm.ConfigError, match=r"^fill_time=True trains for all of a time limit: give max_seconds"):
        charlstm.train(trained_run[1], trained_run[0].parent / "never", fill_time=True)


def test_a_python_callers_mistakes_are_config_errors(trained_run):
    """What the CLI's parser and the server's checks catch for their users,
    the configs catch for a Python caller: one ConfigError each, no traceback
    from deep inside the sampler."""
    model = charlstm.load(trained_run[0])
    assert issubclass(charlstm.ConfigError, charlstm.CharlstmError)
    assert {charlstm.CorpusError, charlstm.CheckpointError} <= set(charlstm.CharlstmError.__subclasses__())
    bad = [
        ({"length": 10.0}, "length must be a whole number, got 10.0"),
        ({"length": 10**10}, "length must be at most 2,147,483,647"),
        ({"temperature": "0.5"}, "temperature must be a number, got '0.5'"),
        ({"top_k": 1.5}, "top_k must be a whole number, got 1.5"),
        ({"prime": 7}, "prime must be a text, got 7"),
        ({"stop": ""}, "stop must not be empty"),
    ]
    for kwargs, message in bad:
        with pytest.raises(charlstm.ConfigError, match=re.escape(message)):
            model.sample(**{"length": 10, **kwargs})
    # NumPy numbers are numbers: the same text as plain ones.
    np_kwargs = {"temperature": np.float32(0.5), "seed": np.int32(1), "top_k": np.int64(3)}
    assert model.sample(np.int64(12), **np_kwargs) == model.sample(12, temperature=0.5, seed=1, top_k=3)
    with pytest.raises(charlstm.CheckpointError, match="prefer must be 'best' or 'latest', got 'worst'"):
        charlstm.load(trained_run[0], prefer="worst")
    with pytest.raises(charlstm.ConfigError, match="must be > 0 and finite, got inf"):
        charlstm.TrainConfig(learning_rate=float("inf"))
    # The training and model configs too, before any file is written.
    for kwargs, message in [
        ({"steps": "10"}, "steps must be a whole number, got '10'"),
        ({"learning_rate": "1e-3"}, "learning_rate must be a number, got '1e-3'"),
        ({"patience": 2.5}, "patience must be a whole number, got 2.5"),
        ({"hidden_size": 8.0}, "hidden_size must be a whole number, got 8.0"),
    ]:
        with pytest.raises(charlstm.ConfigError, match=re.escape(message)):
            charlstm.train(trained_run[1], trained_run[0].parent / "never", **kwargs)
    assert not (trained_run[0].parent / "never").exists()
    assert charlstm.TrainConfig(steps=np.int64(5), patience=None, max_seconds=np.float32(60)).steps == 5
    with pytest.raises(charlstm.ConfigError, match="max_seconds is too large: 401 digits"):
        charlstm.TrainConfig(max_seconds=10**400)
    # The other calls a Python caller makes (found by a walkthrough, 2026-12-03).
    for call, message in [
        (lambda: charlstm.SampleConfig(stop=None), "stop must be a list of texts, got None"),
        (lambda: model.sample(10, stop=5), "stop must be a list of texts, got 5"),
        (lambda: model.evaluate(trained_run[1]), "evaluate takes the text itself, got PosixPath: read the file first"),
        # A path as a str would have been scored as text: its own dozens of characters.
        (
            lambda: model.evaluate(str(trained_run[1])),
            f"evaluate takes the text itself, and {str(trained_run[1])!r} is",
        ),
        (lambda: model.inspect(str(trained_run[1])), f"inspect takes the text itself, and {str(trained_run[1])!r} is"),
        (lambda: model.evaluate("abc" * 20, streams=0), "streams must be a whole number >= 1, got 0"),
        (lambda: model.inspect("abc" * 20, max_chars=3.0), "max_chars must be a whole number, got 3.0"),
        (lambda: charlstm.ServeConfig(max_length="10"), "max_length must be a whole number, got '10'"),
        (lambda: charlstm.tune(trained_run[1], foo=1), "unknown training option: foo"),
        (lambda: charlstm.tune(trained_run[1], space={"hidden_size": [16, "a"]}), "space['hidden_size'] must be a"),
        # A second walkthrough's (2026-12-03): these were TypeErrors and AttributeErrors from deep inside.
        (lambda: charlstm.train(trained_run[1], "x", lr=0.1), "training option: lr (did you mean learning_rate?)"),
        (lambda: charlstm.train(trained_run[1], "x", stepz=3), "stepz (did you mean steps?)"),
        (lambda: charlstm.train(123, "x"), "corpus must be a path (a str or a Path), got 123"),
        (lambda: charlstm.train(trained_run[1], "x", devices="2"), "devices must be a whole number, got '2'"),
        (lambda: charlstm.resume(5), "run_dir must be a path (a str or a Path), got 5"),
        (lambda: charlstm.resume(trained_run[0], steps="50"), "steps must be a whole number, got '50'"),
        (lambda: model.export_weights(5), "directory must be a path (a str or a Path), got 5"),
        (lambda: model.export_weights(""), "directory is empty: give a path"),
        (lambda: charlstm.ServeConfig(timeout_s=float("inf")), "timeout_s must be a finite number of seconds > 0"),
        (lambda: model.inspect(5), "inspect takes the text itself, got int"),
        (lambda: model.generate({"length": 5}), "generate takes a charlstm.SampleConfig, such as SampleConfig("),
        # A web developer's walkthrough (2026-12-03, night): an empty key refused every request.
        (lambda: charlstm.app(model, timeout=3), "unknown server option: timeout (did you mean timeout_s?)"),
        (lambda: charlstm.app(model, api_key=""), "api_key is empty: give a key, or leave it out"),
        # A key read from a file keeps its newline, and no request's key can match it (an integrator's walkthrough).
        (lambda: charlstm.app(model, api_key="secret\n"), "api_key has a space or a line break at an end"),
        # A library user's walkthrough (2026-12-04): wrong suggestions, and TypeErrors from deep inside.
        (lambda: charlstm.train(trained_run[1], "x", hiden_size=16), "hiden_size (did you mean hidden_size?)"),
        (lambda: charlstm.train(trained_run[1], "x", layers=1), "layers (did you mean num_layers?)"),
        (lambda: charlstm.train(trained_run[1], "x", should_stop=True), "should_stop must be a function (or None)"),
        (lambda: charlstm.train(trained_run[1], "x", on_event=5), "on_event must be a function (or None), got 5"),
        (lambda: charlstm.train(trained_run[1], "x", max_seconds=-1), "of seconds > 0, got -1"),
        (lambda: charlstm.resume(trained_run[0], lr=1e-3), "unknown training option: lr (did you mean learning_rate?)"),
        (
            lambda: charlstm.resume(trained_run[0], hiden_size=3),
            "unknown training option: hiden_size (did you mean hidden_size?)",
        ),
        (lambda: charlstm.load(123), "path must be a path (a str or a Path), got 123"),
        (lambda: charlstm.describe(123), "path must be a path (a str or a Path), got 123"),
        (lambda: charlstm.list_runs(123), "runs_dir must be a path (a str or a Path), got 123"),
        (lambda: charlstm.app(str(trained_run[0])), "app takes a charlstm.Model, such as charlstm.load(RUN), got str"),
        (lambda: charlstm.app(model, api_key=5), "api_key must be a text, got 5"),
        (lambda: charlstm.serve(model, port="8000"), "port must be a whole number, got '8000'"),
        (lambda: charlstm.serve(str(trained_run[0])), "serve takes a charlstm.Model, such as charlstm.load(RUN)"),
        (lambda: model.export_html("page.html", half="no"), "half must be True or False, got 'no'"),
        (lambda: charlstm.tune(trained_run[1], eval_every=3), "eval_every is set for each trial by the search"),
        (
            lambda: charlstm.tune(trained_run[1], hidden_size=16, space={"hidden_size": "16,32"}),
            "hidden_size is given twice, as 16 and in space ('16,32'): give it once",
        ),
        # A notebook user's walkthrough (2026-12-05): TypeErrors and AttributeErrors from deep inside.
        (lambda: list(model.stream(charlstm.SampleConfig(length=10), chunk="5")), "chunk must be a whole number"),
        (lambda: model.evaluate("abc" * 20, progress=5), "progress must be a function (or None), got 5"),
        (lambda: charlstm.tune(trained_run[1], trials="1"), "trials must be a whole number, got '1'"),
        (lambda: charlstm.tune(trained_run[1], steps="10"), "steps must be a whole number, got '10'"),
        (lambda: charlstm.tune(trained_run[1], budget_s="60"), "must be a number, got '60'"),
        (lambda: charlstm.split_the_cpu("2"), "devices must be a whole number, got '2'"),
        (lambda: charlstm.enable_compilation_cache(5), "directory must be a path (a str or a Path), got 5"),
        (lambda: model.write_inspection("abc", "x.html"), "write_inspection takes what Model.inspect returns, got str"),
        # A second notebook walkthrough (2026-12-05): "yes" trained a whole run that could then never be read.
        (lambda: charlstm.train(trained_run[1], "x", skip_bad_files="yes"), "skip_bad_files must be True or False"),
        (lambda: charlstm.tune(trained_run[1], skip_bad_files=1), "skip_bad_files must be True or False, got 1"),
        (lambda: charlstm.api.read_texts(trained_run[1], skip_bad_files="yes"), "skip_bad_files must be True or"),
        (lambda: charlstm.api.read_texts(3), "paths must be a file or folder name or a list of them, got 3"),
        (lambda: charlstm.api.find_texts(3), "paths must be a file or folder name or a list of them, got 3"),
        (lambda: charlstm.train(trained_run[1], "x", val_file=3), "val_file must be a path (a str or a"),
        (lambda: charlstm.api.plot_runs([trained_run[0]], 5), "out must be a path (a str or a Path), got 5"),
        (lambda: charlstm.api.plot_runs(5, "p.png"), "run_dirs must be a run's folder or a list of them, got 5"),
        (lambda: charlstm.resume(trained_run[0], force="yes"), "force must be True or False, got 'yes'"),
        (lambda: model.evaluate("abc" * 20, documents="yes"), "documents must be True or False, got 'yes'"),
        (lambda: model.inspect("abc" * 20, documents=1), "documents must be True or False, got 1"),
        (lambda: list(model.stream(charlstm.SampleConfig(length=10), chunk=0)), "chunk must be >= 1, got 0"),
        # A third (2026-12-05): AttributeErrors, a typo scored as text, and bare CharlstmErrors for bad arguments.
        (lambda: charlstm.api.read_texts(trained_run[1], glob=["*.txt", "*.md"]), "glob must be one pattern (a str)"),
        (lambda: charlstm.train(trained_run[1], "x", glob=5), "glob must be one pattern (a str), got 5"),
        (lambda: charlstm.tune(trained_run[1], space="hidden_size=32"), "space must be a dict of fields to values"),
        (lambda: charlstm.tune(trained_run[1], space={"hidden_size": {}}), "space['hidden_size'] must be a text"),
        (lambda: model.evaluate("data/tset.txt"), "'data/tset.txt' looks like the name of a file, but there is no"),
        (lambda: model.inspect("nope.txt"), "inspect takes the text itself, and 'nope.txt' looks like the name of"),
        (lambda: model.sample(10, prime="\u2603"), "the prime contains characters the model never saw"),
        (lambda: model.sample(10, stop=["\u2603"]), "contains characters the model never writes"),
        (lambda: charlstm.resume(trained_run[0], hidden_size=3), "cannot change hidden_size when resuming"),
        (lambda: charlstm.train(trained_run[1], trained_run[0], batch_size=4), "already exists and is not empty"),
        # A fourth (2026-12-05): "no" ran a grid and kept every trial.
        (lambda: charlstm.tune(trained_run[1], grid="no"), "grid must be True or False, got 'no'"),
        # Not "did you mean val_fraction?", which resume cannot change either.
        (lambda: charlstm.resume(trained_run[0], val_file="v.txt"), "val_file: train's, set when a run starts"),
        (lambda: charlstm.tune(trained_run[1], keep_all="no"), "keep_all must be True or False, got 'no'"),
    ]:
        with pytest.raises(charlstm.ConfigError, match=re.escape(message)):
            call()
    # A TypeError from deep inside before; named as the caller wrote it.
    with pytest.raises(charlstm.CharlstmError, match=re.escape("width_px must be a whole number of pixels, got '8'")):
        charlstm.api.plot_runs([trained_run[0]], "never-written.png", width_px="8")
    # Named as a Python caller turns it on, and refused before the cast that warned of its overflow.
    import dataclasses

    import jax

    huge = dataclasses.replace(model, params=jax.tree.map(lambda a: a * 1e6, model.params))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(charlstm.CharlstmError, match=re.escape("(beyond +-65504): export without half=True")):
            huge.export_html("never-written.html", half=True)
    # The saturation plot's name is checked before the page is written (it was written, then refused).
    seen = model.inspect("abc" * 20)
    with pytest.raises(charlstm.CharlstmError, match="the plot is a PNG image: give a file name ending in .png"):
        model.write_inspection(seen, "never-written.html", saturation_png="never-written.jpg")
    assert not Path("never-written.html").exists() and not Path("never-written.png").exists()
    # What comes back is Python's own: a NumPy count would leak into a user's JSON.
    assert type(model.inspect("abc" * 20, np.int64(20)).truncated) is int
    # A searched field's values as a list or a number are the choices they name, as a text names them.
    from charlstm.api.tuning import _values

    assert _values("hidden_size", [16, 32]) == "16,32" and _values("learning_rate", 0.01) == "0.01"
    # A typo'd name is not scored as text, but a list's text is the caller's word; read_texts' documents are read.
    assert model.evaluate(["data/tset.txt"]).chars > 0
    assert model.evaluate("https://example.com/a.txt").chars > 0
    read = charlstm.api.read_texts(trained_run[1])
    assert model.evaluate(read) == model.evaluate(list(read.documents))
    # inspect takes them as evaluate does (it refused them, 2026-12-05).
    seen, listed = model.inspect(read, 50), model.inspect(list(read.documents), 50)
    assert seen.text == listed.text and np.array_equal(seen.probs, listed.probs)
    shares: list[float] = []  # a progress bar fed by `progress` ends full
    model.evaluate("abc" * 20, progress=shares.append)
    assert shares[-1] == 1.0 and shares == sorted(shares)
    # A real field that a resume cannot change is said to be one, not unknown.
    with pytest.raises(charlstm.CharlstmError, match="cannot change hidden_size when resuming"):
        charlstm.resume(trained_run[0], hidden_size=512)


def test_a_path_given_as_text_is_refused_but_a_documents_text_is_read(trained_run, tmp_path, monkeypatch):
    """A str naming a file or folder was scored as text (its own few dozen
    characters); a list's documents are texts by the caller's word, as
    `charlstm inspect --text hello` passes its text, whatever files exist."""
    model = charlstm.load(trained_run[0])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hello").write_text("not this")
    (tmp_path / "poems").mkdir()
    with pytest.raises(charlstm.ConfigError, match=re.escape("'poems' is the name of a folder: pass charlstm.api")):
        model.evaluate("poems")
    with pytest.raises(charlstm.ConfigError, match=re.escape("'hello' is the name of a file: read it first")):
        model.inspect("hello")
    assert model.evaluate(["hello"]).chars > 0  # scored, not refused
    assert model.inspect(["hello"]).text.endswith("hello")


def test_the_server_names_a_checkpoint_by_its_run_not_its_folders(trained_run, monkeypatch):
    from charlstm.training.checkpoint_paths import checkpoint_name

    model = charlstm.load(trained_run[0])
    step = model.path.relative_to(trained_run[0]).as_posix()  # checkpoints/best/4
    assert checkpoint_name(model.path) == f"{trained_run[0].name}/{step}"
    monkeypatch.chdir(trained_run[0])  # `charlstm serve .` from inside the run
    assert checkpoint_name(charlstm.load(".").path) == f"{trained_run[0].name}/{step}"
    assert checkpoint_name(Path("/elsewhere/saved/4")) == "saved/4"  # a checkpoint standing alone


def test_one_stop_text_is_one_text_not_its_characters(trained_run):
    model = charlstm.load(trained_run[0])
    full = model.sample(60, temperature=0)
    stop = full[20:23]
    cut = full[: full.index(stop)]
    assert model.sample(60, temperature=0, stop=stop) == cut
    assert model.sample(60, temperature=0, stop=[stop]) == cut


def test_a_run_whose_best_checkpoint_cannot_be_read_back_returns_its_latest(trained_run, tmp_path, monkeypatch):
    """Training went well, then its best checkpoint proved unreadable (a disk
    error): the run ends with a warning and its latest checkpoint, not an
    error after 'done' (exit 2 from `charlstm resume`; a walkthrough)."""
    import shutil

    from charlstm.api import training as api_training
    from charlstm.errors import CheckpointError

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    real_load = api_training.load

    def best_unreadable(path, prefer="best"):
        if prefer == "best":
            raise CheckpointError(f"cannot read checkpoint {path}/checkpoints/best/4: its arrays are damaged")
        return real_load(path, prefer=prefer)

    monkeypatch.setattr(api_training, "load", best_unreadable)
    seen = []
    model = charlstm.resume(run_dir, steps=6, on_event=seen.append)
    assert model.step == 6 and model.path.parent.name == "latest"
    [warned] = [e for e in seen if type(e).__name__ == "Warned" and e.kind == "checkpoint"]
    assert warned.message.endswith("its arrays are damaged; returning the latest checkpoint")
