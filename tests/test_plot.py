"""charlstm.plots.curves: loss curves from metrics records, drawn to a PNG."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from charlstm.errors import CharlstmError
from charlstm.plots import PlotError
from charlstm.plots.curves import build_figure, plot_runs

from .helpers import png_size

LN2 = math.log(2.0)


def _records(steps=400, log_every=10, eval_every=100, final=1.3, seconds_per_step=0.5, seed=0):
    """Metrics lines shaped like a real run's: a fast drop from ln(vocab),
    a slow tail, validation a little above training every `eval_every`."""
    records = []
    for step in range(log_every, steps + 1, log_every):
        smooth = final + (4.4 - final) * math.exp(-step / (steps / 8))
        train = smooth + 0.02 * math.sin(step * 0.7 + seed)
        record = {
            "step": step,
            "time": 1.7e9 + step,
            "elapsed": step * seconds_per_step,
            "train_loss": train,
            "train_bpc": train / LN2,
            "lr": 2e-3,
            "grad_norm": 1.0,
            "chars_per_sec": 1e5,
        }
        if step % eval_every == 0:
            record["val_loss"] = smooth + 0.1
            record["val_bpc"] = (smooth + 0.1) / LN2
        records.append(record)
    return records


def _legend_texts(figure):
    legends = figure.legends or [axes.get_legend() for axes in figure.axes if axes.get_legend()]
    return [text.get_text() for legend in legends for text in legend.get_texts() if text.get_text()]


@pytest.mark.parametrize(("width", "height"), [(1200, 450), (777, 333)])
def test_writes_a_png_of_exactly_the_requested_size(tmp_path, width, height):
    from matplotlib.image import imread

    out = tmp_path / "nested" / "dirs" / "loss.png"
    written = plot_runs([("alpha", _records())], out, width_px=width, height_px=height)
    assert written == out
    assert png_size(out) == (width, height)
    assert imread(out).shape[:2] == (height, width)


def test_two_runs_overlaid_share_axes_and_name_both_in_the_legend():
    figure = build_figure([("runs/alpha", _records()), ("runs/beta", _records(final=1.2, seed=1))])
    by_step, by_time = figure.axes[:2]
    assert by_step.get_shared_y_axes().joined(by_step, by_time)
    # A train line and a val line per run, in each panel.
    assert len(by_step.get_lines()) == len(by_time.get_lines()) == 4
    texts = _legend_texts(figure)
    assert len(texts) == 4
    for label in ("runs/alpha", "runs/beta"):
        assert any(text.startswith(f"{label} train") for text in texts)
        assert any(text.startswith(f"{label} val") for text in texts)
    # Each run keeps one colour for its train and val lines.
    colours = [line.get_color() for line in by_step.get_lines()]
    assert colours[0] == colours[1] != colours[2] == colours[3]


def test_a_single_runs_resumes_are_marked_where_they_happened():
    """A new --lr or new text changes a curve from where the run was resumed:
    the plot shows where that was (its sessions' records, runlog.py)."""
    records = _records()
    records[0]["session"] = {"from_step": 0, "steps": 200}
    records[20]["session"] = {"from_step": 200, "steps": 400, "learning_rate": 5e-3}
    by_step = build_figure([("alpha", records)]).axes[0]
    marks = [line for line in by_step.get_lines() if line.get_linestyle() == ":"]
    assert [list(line.get_xdata()) for line in marks] == [[200, 200]]
    assert [t.get_text() for t in by_step.texts] == ["resumed"]
    # Overlaid runs keep their curves uncluttered; a run from before sessions were logged has none.
    overlaid = build_figure([("alpha", records), ("beta", _records(seed=1))]).axes[0]
    assert not [line for line in overlaid.get_lines() if line.get_linestyle() == ":"]
    assert not build_figure([("beta", _records(seed=1))]).axes[0].texts


def test_the_loss_axis_skips_the_initial_drop():
    figure = build_figure([("alpha", _records(steps=2200, eval_every=250))])
    low, high = figure.axes[0].get_ylim()
    # Training starts near ln(vocab) ~ 4.4; the axis is scaled to the rest.
    assert 1.0 < low < 1.35 and high < 4.0


def _fast(records, start=4.4, final=1.3, tau=300.0):
    """`records` with losses that fall from `start` within about `tau` steps, as a real run's do."""
    out = []
    for r in records:
        loss = final + (start - final) * math.exp(-r["step"] / tau)
        out.append({**r, "train_loss": loss, **({"val_loss": loss + 0.1} if "val_loss" in r else {})})
    return out


@pytest.mark.parametrize(
    "other",
    [
        _records(steps=40, log_every=5, eval_every=20, final=3.5),  # stopped while its loss was still high
        # A new run, 4.2 to 2.0, beside a fine-tuned one that starts low.
        _fast(_records(steps=400, eval_every=100), start=4.2, final=2.0, tau=100.0),
    ],
)
def test_every_run_overlaid_stays_in_range(other):
    # The long run's drop is over in a few hundred of its 20,000 steps; the
    # fine-tuned one starts low.
    long = _fast(_records(steps=20_000, log_every=100, eval_every=1000))
    tuned = _fast(_records(steps=2000, eval_every=200), start=1.25, final=1.2)
    for runs in ([("runs/long", long), ("runs/other", other)], [("runs/tuned", tuned), ("runs/other", other)]):
        low, high = build_figure(runs).axes[0].get_ylim()
        # The axis skips each run's own first steps, not the longest run's:
        # the other run's curve after its first 5% is drawn inside it.
        last = other[-1]["step"]
        shown = [r["train_loss"] for r in other if r["step"] >= 0.05 * last]
        assert low < min(shown) and max(shown) < high, runs[0][0]


def test_a_trial_far_off_the_scale_leaves_the_others_readable():
    diverged = [{**r, "train_loss": 1e26, "val_loss": 1e26} if r["step"] > 100 else r for r in _records()]
    figure = build_figure([("trial-00", _records()), ("trial-01", _records(final=1.2, seed=1)), ("trial-02", diverged)])
    low, high = figure.axes[0].get_ylim()
    assert 1.0 < low < 1.35 and high < 5.0
    assert any(text.startswith("trial-02 val") for text in _legend_texts(figure))


def test_runs_without_validation_points_are_drawn(tmp_path):
    records = [{k: v for k, v in r.items() if not k.startswith("val_")} for r in _records()]
    figure = build_figure([("no-val", records), ("with-val", _records())])
    assert len(figure.axes[0].get_lines()) == 3
    texts = _legend_texts(figure)
    assert any(t.startswith("no-val train") for t in texts) and not any(t.startswith("no-val val") for t in texts)
    assert png_size(plot_runs([("no-val", records)], tmp_path / "loss.png", width_px=640, height_px=320)) == (640, 320)


def test_a_validation_only_line_is_placed_in_time_between_its_neighbours():
    records = [
        {"step": 10, "elapsed": 60.0, "train_loss": 2.0},
        {"step": 15, "val_loss": 2.1},  # evaluated at a step that was not logged
        {"step": 20, "elapsed": 120.0, "train_loss": 1.9},
    ]
    val_line = build_figure([("alpha", records)]).axes[1].get_lines()[1]
    assert list(val_line.get_xdata()) == [1.5]


def test_a_run_without_metrics_is_named_in_the_error(tmp_path):
    with pytest.raises(PlotError, match="runs/empty has no metrics yet") as raised:
        plot_runs([("runs/full", _records()), ("runs/empty", [])], tmp_path / "loss.png")
    assert isinstance(raised.value, CharlstmError)
    assert not (tmp_path / "loss.png").exists()


def test_a_run_stopped_before_its_first_logged_step_is_one_error(tmp_path):
    """A Ctrl-C in the first seconds leaves only the line that says so."""
    stopped = [{"step": 0, "time": 1.7e9, "stopped": "interrupted", "detail": "interrupted"}]
    with pytest.raises(PlotError, match="runs/new has no losses to plot yet"):
        plot_runs([("runs/new", stopped)], tmp_path / "loss.png")


def test_a_search_folder_plots_its_trials_and_a_checkpoint_folder_its_run(tmp_path, monkeypatch):
    import json

    from charlstm import api

    def run(path, seed):
        (path / "checkpoints" / "best" / "60").mkdir(parents=True)
        lines = (json.dumps(r) for r in _records(seed=seed))
        (path / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    search = tmp_path / "search"
    for i in range(3):
        run(search / f"trial-{i:02d}", i)
    (search / "trials.json").write_text("{}", encoding="utf-8")
    # A trial a Ctrl-C stopped before its first logged step: left out of its search's plot.
    (search / "trial-03").mkdir()
    (search / "trial-03" / "metrics.jsonl").write_text('{"step": 0, "stopped": "interrupted"}\n', encoding="utf-8")
    drawn = []
    monkeypatch.setattr(api.runs.curves, "plot_runs", lambda runs, out, **kw: drawn.append([r[0] for r in runs]))
    api.plot_runs([search], tmp_path / "loss.png")
    api.plot_runs([search / "trial-01" / "checkpoints" / "best" / "60", search / "trial-01"], tmp_path / "loss.png")
    assert drawn == [[str(search / f"trial-{i:02d}") for i in range(3)], [str(search / "trial-01")]]
    # Named from inside the run's checkpoints, as `charlstm plot .` there.
    monkeypatch.chdir(search / "trial-02" / "checkpoints" / "best")
    api.plot_runs([Path("."), Path("60")], tmp_path / "loss.png")
    assert drawn[-1] == [str(Path("..") / "..")]
    with pytest.raises(CharlstmError, match="not a charlstm run"):
        api.plot_runs([tmp_path], tmp_path / "loss.png")  # a folder of one search, not a search
    # One run alone, and the picture's name as a str (a notebook's walkthrough, 2026-12-05: its letters
    # were read as runs, and a str out raised an AttributeError).
    api.plot_runs(str(search / "trial-00"), str(tmp_path / "loss.png"))
    assert drawn[-1] == [str(search / "trial-00")]


def test_a_picture_too_small_for_the_panels_is_refused(tmp_path):
    with pytest.raises(PlotError, match=r"at least 320x200 pixels \(width x height\)"):
        plot_runs([("alpha", _records())], tmp_path / "loss.png", width_px=100, height_px=100)


def test_a_run_that_diverged_plots_its_finite_losses(tmp_path):
    """A diverged step is logged with a null loss (JSON has no NaN)."""
    records = _records(steps=100)
    records[-1] = {**records[-1], "train_loss": None, "train_bpc": None}
    assert png_size(plot_runs([("diverged", records)], tmp_path / "loss.png", width_px=640, height_px=320)) == (
        640,
        320,
    )


@pytest.mark.parametrize(
    ("out", "size", "message"),
    [
        ("", (1200, 450), "is a directory; give the PNG file"),
        ("loss.txt", (1200, 450), "ending in .png, not loss.txt"),
        ("loss.png", (100_000, 100_000), "too large to draw"),
    ],
)
def test_an_output_or_size_that_cannot_be_drawn_is_one_error(tmp_path, out, size, message):
    with pytest.raises(PlotError, match=message):
        plot_runs([("alpha", _records())], tmp_path / out, width_px=size[0], height_px=size[1])


def test_missing_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotError, match=r"pip install 'charlstm\[plot\]'"):
        plot_runs([("alpha", _records())], tmp_path / "loss.png")


def test_importing_the_module_does_not_import_matplotlib():
    code = "import sys, charlstm.plots.curves, charlstm.plots.saturation; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_grid_searchs_sixteen_trials_get_an_entry_and_a_colour_each_above_the_panels():
    """A 2 x 2 x 4 grid, as `charlstm tune --grid` makes one: two entries a
    run did not fit above the panels, and tab10's colours came round again."""
    runs = [(f"runs/grid/trial-{i:02d}", _records(seed=i)) for i in range(16)]
    figure = build_figure(runs)
    assert figure.legends, "the legend went inside a panel, over the curves"
    texts = _legend_texts(figure)
    assert sorted(text.split(" val, best")[0] for text in texts) == [label for label, _ in runs]
    colours = [line.get_color() for line in figure.axes[0].get_lines()[1::2]]  # each run's val line
    assert len(set(colours)) == 16
    from matplotlib import colormaps

    # The first ten are tab10's; the pale ones follow, never a run's neighbour's pale twin beside it.
    assert colours[:10] == [colormaps["tab10"](i) for i in range(10)]
    assert colours[10] == colormaps["tab20"](1)


def test_a_large_searchs_best_trials_keep_the_legend_and_the_rest_are_grey():
    """Past 32 runs the legend went into the step panel, over the curves,
    and was cut off; past 20 colours came round again (a walkthrough,
    2026-12-06). The best 20 by validation loss keep a colour and an entry
    each, above the panels; the rest are drawn thin in grey and counted."""
    from charlstm.plots.curves import _OTHERS_GREY, LEGEND_RUNS

    runs = [(f"runs/t60/trial-{i:02d}", _records(final=1.3 + 0.01 * ((i * 7) % 60), seed=i)) for i in range(60)]
    figure = build_figure(runs)
    assert figure.legends, "the legend went inside a panel, over the curves"
    texts = _legend_texts(figure)
    best = sorted(range(60), key=lambda i: (i * 7) % 60)[:LEGEND_RUNS]
    more = f"and {60 - LEGEND_RUNS} more runs, in grey"
    assert sorted(t.split(" val, best")[0] for t in texts if t != more) == [runs[i][0] for i in sorted(best)]
    assert more in texts
    colours = [line.get_color() for line in figure.axes[0].get_lines()]
    coloured = {c for c in colours if c != _OTHERS_GREY}
    assert len(coloured) == LEGEND_RUNS and colours.count(_OTHERS_GREY) == 2 * (60 - LEGEND_RUNS)
