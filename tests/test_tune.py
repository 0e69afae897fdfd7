"""Presets and the hyperparameter search (`charlstm train --preset`, `charlstm tune`)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from charlstm import presets
from charlstm.cli import app
from charlstm.errors import CharlstmError, ConfigError
from charlstm.training import checkpoint, events, search_space, step_setup, tune

from .helpers import FakeClock, clock_per_step

SMALL_SPACE = ["--hidden", "8,16", "--layers", "1", "--seq-len", "16", "--dropout", "0,0.2", "--embed", "8", "-b", "4"]


@pytest.fixture()
def runner():
    return CliRunner()


def _meta(run_dir: Path) -> dict:
    return checkpoint.describe(run_dir, checkpoint.LATEST).raw


def test_random_trials_repeat_for_a_seed_and_stay_in_the_space():
    first = search_space.random_trials(search_space.SPACE, 20, seed=7)
    assert first == search_space.random_trials(search_space.SPACE, 20, seed=7)
    assert first != search_space.random_trials(search_space.SPACE, 20, seed=8)
    lr, hidden, layers, seq_len, dropout = search_space.SPACE
    for point in first:
        assert lr.log_range is not None and lr.log_range[0] <= point["learning_rate"] <= lr.log_range[1]
        assert point["hidden_size"] in hidden.values
        assert point["num_layers"] in layers.values
        assert point["seq_len"] in seq_len.values
        assert point["dropout"] in dropout.values
    # Random, not a fixed cycle: over 20 draws every hidden size shows up.
    assert {p["hidden_size"] for p in first} == set(hidden.values)


def test_grid_covers_every_combination_or_a_seeded_part_of_it():
    specs = ["1e-3,3e-3", "64,128", "1,2", "32", "0"]
    space = tuple(search_space.parse_dimension(d, s) for d, s in zip(search_space.SPACE, specs, strict=True))
    full = search_space.grid_trials(space, None, seed=0)
    assert len(full) == 8
    assert {(p["learning_rate"], p["hidden_size"], p["num_layers"]) for p in full} == {
        (lr, h, n) for lr in (1e-3, 3e-3) for h in (64, 128) for n in (1, 2)
    }
    part = search_space.grid_trials(space, 3, seed=5)
    assert len(part) == 3 and all(p in full for p in part)
    # A value given twice is searched once.
    twice = tuple(search_space.parse_dimension(d, s) for d, s in zip(search_space.SPACE, specs, strict=True))
    twice = (twice[0], search_space.parse_dimension(search_space.SPACE[1], "64,128,64"), *twice[2:])
    assert search_space.grid_trials(twice, None, seed=0) == full
    assert part == search_space.grid_trials(space, 3, seed=5)
    # Any seed --seed takes: a negative one was a traceback (NumPy's), as random draws' is not.
    assert len(search_space.grid_trials(space, 3, seed=-1)) == 3


@pytest.mark.parametrize(
    ("index", "spec", "message"),
    [
        (1, "128:512", "only for learning_rate"),
        (4, "0.1:0.5", "only for learning_rate.*e.g. 0,0.1"),  # a float, but no range either
        (1, "128,big", "comma-separated whole numbers"),
        (2, "1.5", "comma-separated whole numbers, e.g. 1,2"),  # --layers 1.5: a number, not a whole one
        (4, "0.1,big", "comma-separated numbers"),
        (2, "0,1", "must be > 0"),
        (0, "1e-2:1e-3", "0 < lo <= hi"),
        (4, "0,1", "must be < 1"),
        (4, "-0.1", "must be >= 0"),
    ],
)
def test_bad_search_specs_are_refused(index, spec, message):
    with pytest.raises(ConfigError, match=message):
        search_space.parse_dimension(search_space.SPACE[index], spec)


def test_a_seed_another_seed_stands_for_is_refused(tiny_corpus, tmp_path):
    """As for a training run: PRNGKey keeps a seed's low 32 bits."""
    with pytest.raises(ConfigError, match="seed must be from -2147483648 to 2147483647"):
        tune.plan(tiny_corpus, tmp_path / "s", trials=1, budget_s=1.0, seed=2**32)


def test_grid_refuses_a_range():
    space = (search_space.parse_dimension(search_space.SPACE[0], "1e-3:1e-2"), *search_space.SPACE[1:])
    with pytest.raises(ConfigError, match="grid=True needs lists"):  # as a Python caller turns it on
        search_space.grid_trials(space, None, seed=0)


def test_presets_fill_in_what_was_not_given():
    model, train = presets.apply("tiny", {"hidden_size": 16}, {"steps": 3})
    assert model == {**presets.PRESETS["tiny"].model, "hidden_size": 16}
    assert train["steps"] == 3 and train["batch_size"] == presets.PRESETS["tiny"].train["batch_size"]
    assert presets.apply(None, {"hidden_size": 16}, {}) == ({"hidden_size": 16}, {})
    with pytest.raises(ConfigError, match="preset must be one of tiny, small, medium, large"):
        presets.apply("huge", {}, {})
    # Read-only, and what apply returns is the caller's own: neither changes a later run's preset.
    with pytest.raises(TypeError):
        presets.PRESETS["tiny"].model["hidden_size"] = 7  # type: ignore[index]
    model["hidden_size"] = 7
    assert presets.apply("tiny", {}, {})[0]["hidden_size"] == 128


def test_train_preset_is_overridden_by_explicit_options(runner, tiny_corpus, tmp_path):
    out = tmp_path / "run"
    args = ["train", str(tiny_corpus), "--out", str(out), "--preset", "tiny", "--hidden", "16", "--steps", "2", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = _meta(out)
    tiny = presets.PRESETS["tiny"]
    assert meta["model"]["hidden_size"] == 16  # given
    assert meta["model"]["num_layers"] == tiny.model["num_layers"]  # from the preset
    assert meta["model"]["embed_dim"] == tiny.model["embed_dim"]
    assert meta["train"]["steps"] == 2
    assert meta["train"]["batch_size"] == tiny.train["batch_size"]

    bad = runner.invoke(app, ["train", str(tiny_corpus), "--out", str(tmp_path / "x"), "--preset", "huge"])
    assert bad.exit_code == 2
    assert "--preset must be one of tiny, small, medium, large, got 'huge'" in bad.stderr


@pytest.mark.slow
def test_tune_ranks_trials_keeps_the_best_and_repeats_for_a_seed(runner, tiny_corpus, tmp_path, monkeypatch):
    def search(out: Path) -> list[dict]:
        args = ["tune", str(tiny_corpus), "--steps", "6", "--trials", "3", "--seed", "3", "--out", str(out)]
        result = runner.invoke(app, [*args, "--lr", "1e-3,1e-2", *SMALL_SPACE])
        assert result.exit_code == 0, result.output
        assert "trial-00 (1 of 3):" in result.stderr and "trial-02 (3 of 3):" in result.stderr
        assert "best: " in result.stderr and "train it longer: charlstm train" in result.stderr
        # Every trial started from --seed 3's initialisation: so does the command that trains the best longer.
        longer = next(line for line in result.stderr.splitlines() if line.startswith("train it longer"))
        assert longer.endswith(" --seed 3"), longer
        trials = json.loads((out / "trials.json").read_text())["trials"]
        assert len(trials) == 3
        # The table on stdout lists the trials best first, as the JSON does.
        rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
        assert [row[1] for row in rows] == [Path(t["run_dir"]).name for t in trials]
        return trials

    trials = search(tmp_path / "a")
    losses = [t["val_loss"] for t in trials]
    assert losses == sorted(losses)
    best = Path(trials[0]["run_dir"])
    assert checkpoint.best_val_loss(best) == pytest.approx(losses[0], abs=1e-6)
    assert all(not (Path(t["run_dir"]) / "checkpoints").exists() for t in trials[1:])
    assert all((Path(t["run_dir"]) / "metrics.jsonl").exists() for t in trials)
    # Sampling one of the others says why it cannot, not that it is no run.
    with pytest.raises(CharlstmError, match="has its metrics but no checkpoints: charlstm tune keeps only the best"):
        checkpoint.locate(Path(trials[1]["run_dir"]))
    refused = runner.invoke(app, ["resume", trials[1]["run_dir"]])  # as resume says it too
    assert refused.exit_code == 2 and "has its metrics but no checkpoints: charlstm tune keeps" in refused.stderr
    # A run of train's whose checkpoints folder is gone is no trial: tune is not the reason (a walkthrough).
    solo = tmp_path / "solo"
    shutil.copytree(best, solo)
    shutil.rmtree(solo / "checkpoints")
    with pytest.raises(CharlstmError, match="has its metrics but no checkpoints folder: it was deleted or moved"):
        checkpoint.locate(solo)
    # A trial that diverged has no checkpoint that --keep-all would have kept (it said so; a walkthrough).
    diverged = best.parent / "trial-diverged"
    shutil.copytree(trials[1]["run_dir"], diverged)
    with (diverged / "metrics.jsonl").open("a") as log:
        log.write(json.dumps({"step": 6, "stopped": "diverged", "detail": "", "best_val_loss": None}) + "\n")
    with pytest.raises(CharlstmError, match="trial-diverged diverged .* and has no checkpoints; plot it, or train"):
        checkpoint.locate(diverged)
    shutil.rmtree(diverged)  # not one of the search's trials, for what follows
    # resume says both as sample does, and names a search's best trial (it said "not a run directory").
    for run, said in ((solo, "no checkpoints folder: it was deleted"), (best.parent, "is a search, not a run")):
        refused = runner.invoke(app, ["resume", str(run)])
        assert refused.exit_code == 2 and said in refused.stderr, refused.stderr
    # Their --clip, for the gradient plot, from the search's record where no checkpoint has it.
    from charlstm import api

    drawn = []
    monkeypatch.setattr(api.runs.gradients, "plot_gradients", lambda runs, out, **kw: drawn.extend(runs))
    api.plot_gradients([tmp_path / "a"], tmp_path / "g.png")
    assert [(Path(label).name, clip) for label, _records, clip in drawn] == [(f"trial-{i:02d}", 1.0) for i in range(3)]
    # The search's own folder, where a command wants a run: its best trial is named.
    with pytest.raises(
        CharlstmError, match=f"is a search, not a run: name one of its trials, the best is .*{best.name}"
    ):
        checkpoint.locate(tmp_path / "a")
    for t in trials:
        assert t["steps"] == t["planned_steps"] == 6 and t["reason"] == "done"
        assert t["model"]["hidden_size"] == t["point"]["hidden_size"]
        assert t["train"]["learning_rate"] == t["point"]["learning_rate"]

    again = search(tmp_path / "b")
    assert [(t["point"], t["val_loss"]) for t in again] == [(t["point"], t["val_loss"]) for t in trials]


def test_tune_fits_the_steps_to_a_time_budget(runner, tiny_corpus, tmp_path, monkeypatch):
    """Timing decides nothing: the loop's clock is a fake that moves by 1/16 s
    a training step, so the 2 s budget holds 32 steps, more than the
    calibration's, and the trial ends by its step count."""
    clock_per_step(monkeypatch, 1 / 16)
    out = tmp_path / "timed"
    args = ["tune", str(tiny_corpus), "--budget-s", "2", "--trials", "1", "--out", str(out), "--json"]
    result = runner.invoke(app, [*args, *SMALL_SPACE, "--norm", "none"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["search"]["budget_s"] == 2 and report["search"]["kind"] == "random"
    # A plan, not a promise; under 40 steps, one the refits leave alone (docs/tune.md; it said "refitted").
    assert "about 32 steps in its 2 s, too few to refit: its schedule ends there)" in result.stderr
    (trial,) = report["trials"]
    assert (trial["planned_steps"], trial["steps"], trial["reason"]) == (32, 32, "done")
    assert trial["planned_steps"] > tune.CALIBRATION_STEPS
    assert trial["val_loss"] is not None
    assert trial["model"]["norm"] == "none"  # the fixed options reach every trial


def test_a_trials_line_says_whether_its_schedule_is_refitted():
    from charlstm.cli.search_display import _steps

    def said(steps, budget_s):
        return _steps(events.TrialStarted(0, 2, {}, steps, 1000, "trial-00", budget_s))

    assert said(500, 60.0) == "about 500 steps in its 60 s, refitted as it runs"
    assert said(1, 0.001) == "about 1 step in its 0.001 s, too few to refit: its schedule ends there"
    assert said(1, None) == "1 step" and said(2_000, None) == "2,000 steps"


def test_a_search_directory_in_use_is_refused_without_pointing_at_resume(runner, tiny_corpus, tmp_path):
    """A search is not continued ('charlstm resume' refuses its folder): the
    message says what to do instead."""
    out = tmp_path / "search"
    (out / "trial-00").mkdir(parents=True)
    (out / "trials.json").write_text("{}", encoding="utf-8")
    result = runner.invoke(app, ["tune", str(tiny_corpus), "--trials", "1", "--steps", "2", "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: search directory {out} already exists and is not empty; pick another folder for --out "
        "(a search is not continued; its best trial is a run of its own, which 'charlstm resume' trains further)\n"
    )


def test_tune_names_a_folders_entries_that_are_not_files(runner, tiny_text, tmp_path):
    poems = tmp_path / "poems"
    poems.mkdir()
    (poems / "a.txt").write_text(tiny_text, encoding="utf-8")
    (poems / "moved.txt").symlink_to(tmp_path / "gone.txt")
    args = ["tune", str(poems), "--trials", "1", "--steps", "2", "--out", str(tmp_path / "s"), *SMALL_SPACE]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (
        f"skipped 1 entry that is not a file ({poems / 'moved.txt'}: a link to nothing ({tmp_path / 'gone.txt'} "
        "is not there))"
    ) in result.stderr


def test_tune_refuses_conflicting_budgets(runner, tiny_corpus, tmp_path):
    result = runner.invoke(app, ["tune", str(tiny_corpus), "--steps", "3", "--budget-s", "5"])
    assert result.exit_code == 2
    assert "give --steps or --budget-s, not both" in result.stderr
    gru = runner.invoke(app, ["tune", str(tiny_corpus), "--steps", "3", "--cell", "gru", "--norm", "layer"])
    assert gru.exit_code == 2
    assert "--norm layer works with --cell lstm only" in gru.stderr
    for args, message in (
        (["--steps", "0"], "--steps (per trial) must be >= 1, got 0"),
        (["--budget-s", "-5"], "--budget-s (seconds per trial) must be positive and at most 2,592,000 (30 days), got"),
    ):
        wrong = runner.invoke(app, ["tune", str(tiny_corpus), *args])
        assert wrong.exit_code == 2 and message in wrong.stderr, wrong.output


@pytest.mark.parametrize("text", ["short", "latin-1"])
def test_a_search_refused_for_its_text_leaves_no_folder(runner, tmp_path, text):
    corpus = tmp_path / "text.txt"
    corpus.write_bytes(b"tiny text\n" if text == "short" else "caf\u00e9 au lait\n".encode("latin-1") * 50)
    out = tmp_path / "search"
    result = runner.invoke(app, ["tune", str(corpus), "--steps", "3", "--trials", "1", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1].startswith("error: ")
    assert not out.exists()


def test_a_trial_that_cannot_run_on_the_text_is_refused_before_any_trains(runner, tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text("a short text, long enough for windows of 16 but not of 400. " * 4, encoding="utf-8")
    out = tmp_path / "search"
    args = ["--grid", "--hidden", "8", "--layers", "1", "--seq-len", "16,400", "--dropout", "0", "-b", "2"]
    result = runner.invoke(app, ["tune", str(corpus), *args, "--embed", "8", "--steps", "2", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "cannot run: training text is too short" in result.stderr
    assert "--seq-len 400" in result.stderr.splitlines()[-1]
    assert not out.exists()  # no trial trained: the first one, which fits, was not started either


def test_random_search_never_repeats_a_configuration():
    """A draw that repeats a configuration is drawn again: a space smaller
    than the trials asked for runs each configuration once, and a larger
    one keeps, for a seed, the trials it gave before the first repeat."""

    def narrowed(*specs: str) -> tuple[search_space.Dimension, ...]:
        return tuple(search_space.parse_dimension(d, s) for d, s in zip(search_space.SPACE, specs, strict=True))

    one = narrowed("1e-2", "64", "1", "32", "0")
    assert search_space.distinct_points(one) == 1
    assert search_space.random_trials(one, 3, seed=0) == [
        {"learning_rate": 1e-2, "hidden_size": 64, "num_layers": 1, "seq_len": 32, "dropout": 0.0}
    ]
    four = narrowed("1e-3,1e-2", "64,128", "1", "32", "0")
    drawn = search_space.random_trials(four, 10, seed=4)
    assert len(drawn) == 4 and all(drawn.count(p) == 1 for p in drawn)
    assert drawn == search_space.random_trials(four, 10, seed=4)  # still reproducible
    # A space larger than the trials: as many distinct trials as asked.
    some = search_space.random_trials(four, 3, seed=4)
    assert len(some) == 3 and len({tuple(p.items()) for p in some}) == 3
    assert search_space.distinct_points(search_space.SPACE) == float("inf")
    many = search_space.random_trials(search_space.SPACE, 30, seed=1)
    assert len({tuple(p.items()) for p in many}) == 30


def test_a_plan_with_fewer_configurations_than_trials_says_so(tiny_corpus, tmp_path, monkeypatch):
    space = {"learning_rate": "1e-2", "hidden_size": "8", "num_layers": "1", "seq_len": "16", "dropout": "0"}
    plan = tune.plan(tiny_corpus, tmp_path / "s", trials=3, steps=2, space=space)
    assert len(plan.points) == 1 and plan.settings["trials"] == 1
    assert plan.note == "the search space holds 1 configuration, fewer than trials 3: it runs once"
    wide = tune.plan(tiny_corpus, tmp_path / "w", trials=3, steps=2, space={**space, "hidden_size": "8,16,24"})
    assert len(wide.points) == 3 and wide.note == ""
    grid = tune.plan(tiny_corpus, tmp_path / "g", trials=5, grid=True, steps=2, space={**space, "hidden_size": "8,16"})
    assert len(grid.points) == 2 and "holds 2 different configurations, fewer than trials 5" in grid.note
    # A grid cut short by trials says so: "every combination" is what a grid promises.
    three = {**space, "hidden_size": "8,16,24"}
    part = tune.plan(tiny_corpus, tmp_path / "p", trials=2, grid=True, steps=2, space=three)
    assert len(part.points) == 2 and part.note.startswith("a partial grid: 2 of its 3 configurations")
    whole = tune.plan(tiny_corpus, tmp_path / "a", grid=True, steps=2, space=three)
    assert len(whole.points) == 3 and whole.note == ""
    # The default learning rates are a range for a random search, four values for a grid: 4 x 3 x 4 = 48.
    wide = tune.plan(
        tiny_corpus, tmp_path / "d", trials=3, grid=True, steps=2, space={"hidden_size": "8", "num_layers": "1"}
    )
    assert wide.note.startswith("a partial grid: 3 of its 48 configurations")
    # A trial too large for the memory here is refused before any trains, at its own sequence length.
    from charlstm.runtime import memory

    monkeypatch.setattr(memory, "free_bytes", lambda: 10**8)
    batch = {"batch_size": 2048}
    assert tune.plan(tiny_corpus, tmp_path / "m", steps=2, space={**space, "seq_len": "8"}, train=batch).points
    with pytest.raises(ConfigError, match=r"for a batch\), more than the 0.1 GB free here"):
        tune.plan(tiny_corpus, tmp_path / "m2", steps=2, space={**space, "seq_len": "8,1024"}, train=batch)
    monkeypatch.undo()
    # Numbers past any use are refused, not tracebacks (a walkthrough, 2026-12-05).
    for bad, message in [
        ({"budget_s": float("inf")}, "budget_s .* must be positive and at most 2,592,000"),
        ({"budget_s": 1e300}, "at most 2,592,000"),
        ({"space": {**space, "learning_rate": "1e-3:inf"}}, "the range needs 0 < lo <= hi, both finite"),
        ({"space": {**space, "learning_rate": "1e-3:"}}, "a range is two numbers, lo:hi, e.g. 1e-3:3e-2"),
        ({"space": {**space, "dropout": "0,nan"}}, "values must be finite numbers"),
    ]:
        with pytest.raises(ConfigError, match=message):
            tune.plan(tiny_corpus, tmp_path / "bad", trials=2, **({"steps": 2} if "budget_s" not in bad else {}), **bad)
    # NumPy numbers are numbers, and the record of the search is plain JSON (a review, 2026-12-05: it was
    # written after the first trial had trained, and failed there).
    for budget in ({"steps": np.int64(2)}, {"budget_s": np.float32(5.0)}):
        numpy = tune.plan(tiny_corpus, tmp_path / f"n{len(budget)}{next(iter(budget))}", trials=np.int64(2), **budget)
        assert json.loads(json.dumps(numpy.settings))["trials"] == 2
    # The seed, and fields fixed for every trial, too (the same review, again: the seed and the fixed fields).
    fixed = tune.plan(
        tiny_corpus,
        tmp_path / "f",
        trials=1,
        steps=2,
        seed=np.int64(3),
        model={"hidden_size": np.int64(8)},
        train={"batch_size": np.int64(4), "learning_rate": np.float32(0.01)},
    )
    assert fixed.settings["seed"] == 3 and type(fixed.settings["seed"]) is int
    tune._write_json(tmp_path / "trials.json", [], fixed.settings)
    record = json.loads((tmp_path / "trials.json").read_text())["search"]["fixed"]
    assert record["hidden_size"] == 8 and record["batch_size"] == 4 and record["learning_rate"] == pytest.approx(0.01)


def test_tune_runs_a_one_configuration_space_once_with_a_note(runner, tiny_corpus, tmp_path):
    out = tmp_path / "once"
    args = ["tune", str(tiny_corpus), "--steps", "2", "--trials", "3", "--out", str(out), "--lr", "1e-2", "-b", "4"]
    result = runner.invoke(app, [*args, "--hidden", "8", "--layers", "1", "--seq-len", "16", "--dropout", "0"])
    assert result.exit_code == 0, result.output
    assert "note: the search space holds 1 configuration, fewer than --trials 3: it runs once" in result.stderr
    assert "1 random trial\n" in result.stderr and "trial-00 (1 of 1):" in result.stderr
    assert len(json.loads((out / "trials.json").read_text())["trials"]) == 1


@pytest.mark.parametrize(
    ("budget", "cal", "steps"),
    [
        (1.0, [1 / 128, 3 / 128, 1 / 64], 64),
        # Too short for the refits (the first comes at step 20): planned at
        # what the calibration says fits, and ending there, decayed.
        (0.25, [1 / 64, 1 / 64, 1 / 64], 16),
    ],
    ids=["refitted", "short"],
)
def test_a_time_budget_counts_the_same_training_time_in_every_trial(
    tiny_corpus, tmp_path, monkeypatch, budget, cal, steps
):
    """Timing decides nothing here: the loop's clock is a fake that moves by
    a set cost per training step, compilation and validation pass. Each
    trial's calibration times a different speed from the one its trial then
    trains at (a machine that speeds up or slows down; few steps timed);
    the first compilation is slow (no compile cache) and validation is
    slow. Every trial must still train its steps for the budget, measured
    alike: not the calibration's prediction, and none of the compile,
    validation, sample or save time."""
    from charlstm.training import loop

    clock = FakeClock()
    monkeypatch.setattr(loop, "time", clock)
    step_cost = 1 / 64  # binary fractions: the fake clock adds them exactly
    # Per compilation, in order: trial 0's calibration and trial, trial 1's, trial 2's.
    costs = iter([(30.0, cal[0]), (0.0, step_cost), (0.0, cal[1]), (0.0, step_cost), (0.0, cal[2]), (0.0, step_cost)])
    compile_step, call_step = step_setup.TrainStep.__init__, step_setup.TrainStep.__call__

    def compiled(self, *args):
        compile_step(self, *args)
        compile_cost, self.fake_cost = next(costs)
        clock.now += compile_cost

    def stepped(self, state, batch):
        clock.now += self.fake_cost
        return call_step(self, state, batch)

    validate = loop.TrainingLoop._validate

    def validated(self):
        clock.now += 5.0
        yield from validate(self)

    monkeypatch.setattr(step_setup.TrainStep, "__init__", compiled)
    monkeypatch.setattr(step_setup.TrainStep, "__call__", stepped)
    monkeypatch.setattr(loop.TrainingLoop, "_validate", validated)
    space = {"learning_rate": "1e-2", "hidden_size": "8,12,16", "num_layers": "1", "seq_len": "16", "dropout": "0"}
    plan = tune.plan(
        tiny_corpus, tmp_path / "s", trials=3, budget_s=budget, space=space, model={"embed_dim": 8},
        train={"batch_size": 4},
    )  # fmt: skip
    results = list(tune.search(plan))
    assert len(results) == 3
    for r in results:
        # The steps that fit the budget at the trial's own speed, its schedule
        # refitted to end there (not where the calibration put it).
        assert (r.train_seconds, r.steps, r.planned_steps, r.reason) == (budget, steps, steps, "done"), r
        assert r.val_loss is not None


def test_tune_reads_what_train_reads_folders_patterns_and_validation_files(runner, tiny_text, tmp_path):
    """A source tree (--glob), a --val-file and --skip-bad-files, as for
    train; the command it suggests for the best trial reads the same text."""
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    half = len(tiny_text) // 2
    (src / "a.py").write_text(tiny_text[:half], encoding="utf-8")
    (src / "pkg" / "b.py").write_text(tiny_text[half:], encoding="utf-8")
    (src / "pkg" / "c.py").write_bytes("caf\u00e9\n".encode("latin-1"))
    (src / "notes.txt").write_text("not read: the pattern is *.py", encoding="utf-8")
    (tmp_path / "dev.py").write_text(tiny_text[:400], encoding="utf-8")
    out = tmp_path / "search"
    args = ["tune", str(src), "--glob", "**/*.py", "--val-file", str(tmp_path / "dev.py"), "--skip-bad-files"]
    result = runner.invoke(app, [*args, "--steps", "2", "--trials", "1", "--out", str(out), *SMALL_SPACE])
    assert result.exit_code == 0, result.output
    assert f"skipped {src / 'pkg' / 'c.py'}: not valid UTF-8" in result.stderr
    settings = json.loads((out / "trials.json").read_text())["search"]
    assert (settings["sources"], settings["glob"]) == ([str(src)], "**/*.py")
    assert settings["val_files"] == [str(tmp_path / "dev.py")] and settings["skip_bad_files"]
    files = json.loads((out / "trial-00" / "corpus.json").read_text(encoding="utf-8"))
    assert sorted(Path(f["path"]).name for f in files["train"]) == ["a.py", "b.py"]
    assert [Path(f["path"]).name for f in files["val"]] == ["dev.py"]
    suggested = f"train it longer: charlstm train {src} "
    line = next(line for line in result.stderr.splitlines() if line.startswith(suggested))
    assert f"--glob '**/*.py' --skip-bad-files --val-file {tmp_path / 'dev.py'}" in line


def test_a_fixed_value_of_a_searched_field_narrows_the_search(tiny_corpus, tmp_path):
    """`charlstm.tune(..., hidden_size=8)` searches hidden size 8 only, as
    `charlstm tune --hidden 8` does; the trials used to draw their own."""
    import charlstm

    search = charlstm.tune(
        tiny_corpus,
        tmp_path / "s",
        trials=2,
        steps=2,
        hidden_size=8,
        num_layers=1,
        seq_len=16,
        dropout=0.0,
        embed_dim=8,
        batch_size=4,
    )
    assert len(search.trials) == 2
    for trial in search.trials:
        assert (trial.model["hidden_size"], trial.model["num_layers"], trial.model["embed_dim"]) == (8, 1, 8)
        assert (trial.train["seq_len"], trial.train["dropout"], trial.train["batch_size"]) == (16, 0.0, 4)
    assert len({trial.train["learning_rate"] for trial in search.trials}) == 2  # still searched


def test_an_interrupted_search_counts_the_trials_it_finished(runner, tiny_corpus, tmp_path, monkeypatch):
    """A Ctrl-C in the second trial: that trial is listed, interrupted where
    it was, and the summary counts the one finished, not the two started."""
    import signal

    from charlstm.cli import signals, tuning

    out = tmp_path / "search"

    class CtrlCInSecondTrial(signals.StopFlag):
        def __call__(self) -> bool:
            if self.signal is None and (out / "trial-01").exists():
                self.signal, self.count = signal.SIGINT, 1  # what the handler does with a Ctrl-C
            return super().__call__()

    monkeypatch.setattr(tuning, "StopFlag", CtrlCInSecondTrial)
    args = ["tune", str(tiny_corpus), "--steps", "6", "--trials", "3", "--seed", "3", "--out", str(out)]
    result = runner.invoke(app, [*args, *SMALL_SPACE])
    assert result.exit_code == 130, result.output
    assert "search interrupted after 1 of 3 trials" in result.stderr
    reasons = [t["reason"] for t in json.loads((out / "trials.json").read_text())["trials"]]
    assert sorted(reasons) == ["done", "interrupted"]


def test_a_search_stopped_before_its_first_trial_leaves_nothing(runner, tiny_corpus, tmp_path, monkeypatch):
    """A Ctrl-C while the text is read: no trial ran, the folder the search
    made is gone, and --json writes nothing rather than failing on a
    trials.json that was never written."""
    import signal

    from charlstm.cli import signals, tuning

    out = tmp_path / "search"

    class CtrlCBeforeFirstTrial(signals.StopFlag):
        def __call__(self) -> bool:
            if self.signal is None and out.exists():
                self.signal, self.count = signal.SIGINT, 1
            return super().__call__()

    monkeypatch.setattr(tuning, "StopFlag", CtrlCBeforeFirstTrial)
    result = runner.invoke(app, ["tune", str(tiny_corpus), "--steps", "3", "--trials", "2", "--json", "-o", str(out)])
    assert result.exit_code == 130, result.output
    assert "search interrupted before its first trial; nothing was written" in result.stderr
    assert result.stdout == "" and not out.exists()


@pytest.mark.parametrize("recorded", [True, False], ids=["after-a-trial", "in-the-first-trial"])
def test_a_trial_killed_before_its_save_points_at_tune_not_train(runner, tmp_path, recorded):
    """A trial saves only when it ends (or at a Ctrl-C), so a kill -9 mid-trial
    leaves its logs and no checkpoint. resume and runs once told the user to
    run "its 'charlstm train' command" again, which nobody typed (a chaos
    walkthrough, 2026-12-07); they now say the search is not continued."""
    search = tmp_path / "search"
    trial = search / ("trial-01" if recorded else "trial-00")
    for kind in ("latest", "best"):
        (trial / "checkpoints" / kind).mkdir(parents=True)
    (trial / "metrics.jsonl").write_text('{"step": 10, "train_loss": 3.0}\n', encoding="utf-8")
    if recorded:
        (search / "trials.json").write_text('{"trials": []}', encoding="utf-8")
    resumed = runner.invoke(app, ["resume", str(trial)])
    said = " ".join(resumed.stderr.split())
    assert resumed.exit_code == 2
    assert f"this trial of the search in {search} stopped before its first save" in said
    assert "run 'charlstm tune' again with another --out" in said and "charlstm train" not in said
    # One that diverged (--keep-all kept its empty folders) is told so, not blamed on a kill.
    with (trial / "metrics.jsonl").open("a", encoding="utf-8") as log:
        log.write('{"step": 12, "stopped": "diverged", "best_val_loss": null}\n')
    diverged = " ".join(runner.invoke(app, ["resume", str(trial)]).stderr.split())
    assert "diverged (its metrics end where the loss stopped being finite)" in diverged
    (trial / "metrics.jsonl").write_text('{"step": 10, "train_loss": 3.0}\n', encoding="utf-8")
    # A folder of the same name outside a search is an ordinary run.
    (search / "notes.txt").write_text("mine", encoding="utf-8")
    if not recorded:
        plain = " ".join(runner.invoke(app, ["resume", str(trial)]).stderr.split())
        assert "run its 'charlstm train' command again" in plain


def test_a_search_on_a_shipped_corpus_records_the_file_it_reads(tmp_path, monkeypatch):
    """`charlstm tune shakespeare.txt` from any directory reads the shipped
    corpus; trials.json named the name joined to the working directory."""
    from charlstm.text.corpus import shipped_corpora

    monkeypatch.chdir(tmp_path)
    plan = tune.plan("shakespeare.txt", tmp_path / "s", trials=1, steps=2)
    shipped = str(shipped_corpora()["shakespeare.txt"].resolve())
    assert plan.settings["corpus"] == shipped and plan.settings["sources"] == [shipped]


def test_searches_started_in_the_same_second_get_their_own_folders(tiny_corpus, tmp_path, monkeypatch):
    """Two `charlstm tune TEXT` started together shared runs/tune-NAME-TIME,
    and the second failed saying its trial was "being trained by another
    process" (a review, 2026-12-05). A search refused before its first
    trial (a text unreadable by then) leaves no claimed folder behind."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tune.time, "strftime", lambda *_: "20300101-000000")
    first, second = (tune.plan([str(tiny_corpus)], trials=1, steps=2) for _ in range(2))
    assert first.out.name == "tune-tiny-20300101-000000" and second.out == first.out.with_name(f"{first.out.name}-2")
    assert first.claimed and first.out.is_dir() and second.out.is_dir()
    gone = tmp_path / "gone.txt"
    gone.write_text("a text\n" * 50, encoding="utf-8")
    third = tune.plan([str(gone)], trials=1, steps=2)
    gone.unlink()
    with pytest.raises(CharlstmError):
        list(tune.search(third))
    assert not third.out.exists()
    # Stopped (Ctrl-C) before its first trial: no empty folder left either.
    fourth = tune.plan([str(tiny_corpus)], trials=1, steps=2)
    assert fourth.claimed and fourth.out.is_dir()
    assert list(tune.search(fourth, should_stop=lambda: True)) == []
    assert not fourth.out.exists()


def test_a_negative_seed_draws_trials_as_train_and_sample_take_it():
    """`tune --seed -1` ended in NumPy's "expected non-negative integer"
    (a walkthrough, 2026-12-06); train and sample take it."""
    drawn = search_space.random_trials(tune.SPACE, 4, -1)
    assert len(drawn) == 4 and drawn == search_space.random_trials(tune.SPACE, 4, -1)
    assert drawn != search_space.random_trials(tune.SPACE, 4, 1)
