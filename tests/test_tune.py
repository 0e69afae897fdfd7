"""Presets and the hyperparameter search (`charlstm train --preset`, `charlstm tune`)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charlstm import presets
from charlstm.cli import app
from charlstm.errors import ConfigError
from charlstm.training import checkpoint, tune

SMALL_SPACE = ["--hidden", "8,16", "--layers", "1", "--seq-len", "16", "--dropout", "0,0.2", "--embed", "8", "-b", "4"]


@pytest.fixture()
def runner():
    return CliRunner()


def _meta(run_dir: Path) -> dict:
    return checkpoint.describe(run_dir, checkpoint.LATEST).raw


def test_random_trials_repeat_for_a_seed_and_stay_in_the_space():
    first = tune.random_trials(tune.SPACE, 20, seed=7)
    assert first == tune.random_trials(tune.SPACE, 20, seed=7)
    assert first != tune.random_trials(tune.SPACE, 20, seed=8)
    lr, hidden, layers, seq_len, dropout = tune.SPACE
    for point in first:
        assert lr.log_range is not None and lr.log_range[0] <= point["learning_rate"] <= lr.log_range[1]
        assert point["hidden_size"] in hidden.values
        assert point["num_layers"] in layers.values
        assert point["seq_len"] in seq_len.values
        assert point["dropout"] in dropout.values
    # Random, not a fixed cycle: over 20 draws every hidden size shows up.
    assert {p["hidden_size"] for p in first} == set(hidden.values)


def test_grid_covers_every_combination_or_a_seeded_part_of_it():
    space = tuple(
        tune.parse_dimension(d, s) for d, s in zip(tune.SPACE, ["1e-3,3e-3", "64,128", "1,2", "32", "0"], strict=True)
    )
    full = tune.grid_trials(space, None, seed=0)
    assert len(full) == 8
    assert {(p["learning_rate"], p["hidden_size"], p["num_layers"]) for p in full} == {
        (lr, h, n) for lr in (1e-3, 3e-3) for h in (64, 128) for n in (1, 2)
    }
    part = tune.grid_trials(space, 3, seed=5)
    assert len(part) == 3 and all(p in full for p in part)
    assert part == tune.grid_trials(space, 3, seed=5)


@pytest.mark.parametrize(
    ("index", "spec", "message"),
    [
        (1, "128:512", "only for --lr"),
        (1, "128,big", "comma-separated numbers"),
        (2, "0,1", "must be > 0"),
        (0, "1e-2:1e-3", "0 < lo <= hi"),
        (4, "0,1", "must be < 1"),
        (4, "-0.1", "must be >= 0"),
    ],
)
def test_bad_search_specs_are_refused(index, spec, message):
    with pytest.raises(ConfigError, match=message):
        tune.parse_dimension(tune.SPACE[index], spec)


def test_grid_refuses_a_range():
    space = (tune.parse_dimension(tune.SPACE[0], "1e-3:1e-2"), *tune.SPACE[1:])
    with pytest.raises(ConfigError, match="--grid needs lists"):
        tune.grid_trials(space, None, seed=0)


def test_presets_fill_in_what_was_not_given():
    model, train = presets.apply("tiny", {"hidden_size": 16}, {"steps": 3})
    assert model == {**presets.PRESETS["tiny"].model, "hidden_size": 16}
    assert train["steps"] == 3 and train["batch_size"] == presets.PRESETS["tiny"].train["batch_size"]
    assert presets.apply(None, {"hidden_size": 16}, {}) == ({"hidden_size": 16}, {})
    with pytest.raises(ConfigError, match="--preset must be one of tiny, small, medium, large"):
        presets.apply("huge", {}, {})


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
def test_tune_ranks_trials_keeps_the_best_and_repeats_for_a_seed(runner, tiny_corpus, tmp_path):
    def search(out: Path) -> list[dict]:
        args = ["tune", str(tiny_corpus), "--steps", "6", "--trials", "3", "--seed", "3", "--out", str(out)]
        result = runner.invoke(app, [*args, "--lr", "1e-3,1e-2", *SMALL_SPACE])
        assert result.exit_code == 0, result.output
        assert "trial 1/3:" in result.stderr and "trial 3/3:" in result.stderr
        assert "best: " in result.stderr and "train it longer: charlstm train" in result.stderr
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
    for t in trials:
        assert t["steps"] == t["planned_steps"] == 6 and t["reason"] == "done"
        assert t["model"]["hidden_size"] == t["point"]["hidden_size"]
        assert t["train"]["learning_rate"] == t["point"]["learning_rate"]

    again = search(tmp_path / "b")
    assert [(t["point"], t["val_loss"]) for t in again] == [(t["point"], t["val_loss"]) for t in trials]


def test_tune_fits_the_steps_to_a_time_budget(runner, tiny_corpus, tmp_path):
    out = tmp_path / "timed"
    args = ["tune", str(tiny_corpus), "--budget-s", "2", "--trials", "1", "--out", str(out), "--json"]
    result = runner.invoke(app, [*args, *SMALL_SPACE, "--norm", "none"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["search"]["budget_s"] == 2 and report["search"]["kind"] == "random"
    (trial,) = report["trials"]
    # A tiny model takes milliseconds a step: 2 s holds far more than the
    # calibration's dozen steps, and the run ends by its step count.
    assert trial["planned_steps"] > tune.CALIBRATION_STEPS
    # Normally it ends by its step count; on a machine that slows down after
    # the calibration the wall clock stops it instead (timing is no pass/fail).
    assert trial["reason"] in ("done", "time limit")
    assert trial["steps"] == trial["planned_steps"] if trial["reason"] == "done" else trial["steps"] > 0
    assert trial["val_loss"] is not None
    assert trial["model"]["norm"] == "none"  # the fixed options reach every trial


def test_tune_refuses_conflicting_budgets(runner, tiny_corpus, tmp_path):
    result = runner.invoke(app, ["tune", str(tiny_corpus), "--steps", "3", "--budget-s", "5"])
    assert result.exit_code == 2
    assert "give --steps or --budget-s, not both" in result.stderr
    gru = runner.invoke(app, ["tune", str(tiny_corpus), "--steps", "3", "--cell", "gru", "--norm", "layer"])
    assert gru.exit_code == 2
    assert "--norm layer works with --cell lstm only" in gru.stderr
