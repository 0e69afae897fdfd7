"""charlstm.plots.gradients: the gradient norms of runs, layer by layer, drawn to a PNG."""

import math
import subprocess
import sys

import numpy as np
import pytest

from charlstm.plots import PlotError
from charlstm.plots.gradients import CLIP, CLIPPED, MAX_RUNS, build_gradient_figure, plot_gradients

from .helpers import png_size


def _records(steps=200, log_every=10, recurrent=("lstm_0", "lstm_1"), clipped=0.0):
    """Metrics lines shaped like a real run's: the head's gradient largest,
    each layer further from the output a little smaller."""
    records = []
    for step in range(log_every, steps + 1, log_every):
        layers = {"head": 0.8, **{name: 0.3 / (i + 2) for i, name in enumerate(reversed(recurrent))}, "embed": 0.02}
        records.append(
            {
                "step": step,
                "train_loss": 2.0,
                "grad_norm": math.sqrt(sum(v * v for v in layers.values())),
                "grad_norms": layers,
                "clipped_fraction": clipped,
            }
        )
    return records


def _lines(axes):
    return {line.get_label(): line for line in axes.get_lines()}


@pytest.mark.parametrize(("runs", "size"), [(1, (1200, 330)), (2, (1200, 330)), (3, (1200, 660))])
def test_a_panel_a_run_two_a_row_and_the_height_grows_with_the_rows(tmp_path, runs, size):
    out = tmp_path / "gradients.png"
    assert plot_gradients([(f"run-{i}", _records(), 1.0) for i in range(runs)], out) == out
    assert png_size(out) == size
    assert png_size(plot_gradients([("run", _records(), 1.0)], out, width_px=700, height_px=300)) == (700, 300)


def test_each_layer_is_drawn_input_to_output_with_the_global_norm_and_the_clip_line():
    figure = build_gradient_figure([("runs/a", _records(), 0.5)])
    axes = figure.axes[0]
    lines = _lines(axes)
    assert list(lines)[:4] == ["embed", "lstm_0", "lstm_1", "head"]
    assert lines["all layers (global)"].get_ydata()[0] == pytest.approx(_records()[0]["grad_norm"])
    assert list(lines[CLIP].get_ydata()) == [0.5, 0.5]
    assert axes.get_yscale() == "log"
    assert axes.get_title() == "runs/a (--clip 0.5)"
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend[:5] == ["all layers (global)", "embed", "lstm_0", "lstm_1", "head"]
    assert "--clip (the threshold)" in legend


def test_a_layer_named_with_control_characters_is_drawn_by_their_escapes(tmp_path):
    """A shared run's log can name a layer anything: its escape sequence has
    no glyph (matplotlib warned of each) and its $ would be read as TeX."""
    import warnings

    records = _records(recurrent=("lstm_0", "l\x1b[31m$x$"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "Glyph 27 missing from font", say
        warnings.simplefilter("ignore", DeprecationWarning)  # but not pyparsing's of matplotlib before 3.10.7
        plot_gradients([("runs/a", records, 1.0)], tmp_path / "g.png")
    assert "l\\x1b[31m\\$x\\$" in _lines(build_gradient_figure([("runs/a", records, 1.0)]).axes[0])


def test_layers_keep_one_colour_across_runs_of_different_depths():
    figure = build_gradient_figure(
        [("one", _records(recurrent=("gru_0",)), None), ("two", _records(recurrent=("gru_0", "gru_1")), None)]
    )
    one, two = (_lines(axes) for axes in figure.axes[:2])
    assert one["embed"].get_color() == two["embed"].get_color()
    assert one["head"].get_color() == two["head"].get_color()
    assert "gru_1" not in one and "gru_1" in two
    assert CLIP not in one  # no clip known: no line, and the title says none
    assert figure.axes[0].get_title() == "one"


def test_the_share_of_steps_clipped_is_shaded_on_its_own_axis():
    clipped = build_gradient_figure([("clips", _records(clipped=0.4), 1.0)])
    share = [axes for axes in clipped.axes if axes.get_ylabel() == "steps clipped (%)"]
    assert len(share) == 1 and share[0].get_ylim() == (0, 100)
    assert [c.get_label() for c in share[0].collections] == [CLIPPED]
    assert "share of steps clipped" in [t.get_text() for t in clipped.legends[0].get_texts()]
    # A run that never clipped has no shade and no axis for it.
    assert not [
        a for a in build_gradient_figure([("calm", _records(), 1.0)]).axes if a.get_ylabel() == "steps clipped (%)"
    ]


def test_the_first_lines_clipped_share_covers_the_steps_before_it():
    """The first line's share is of the steps since the start: its shade
    starts at step 0, not at the first line (which drew none of it)."""
    records = _records(steps=30)
    records[0]["clipped_fraction"] = 0.5
    share = next(
        a for a in build_gradient_figure([("run", records, 1.0)]).axes if a.get_ylabel() == "steps clipped (%)"
    )
    extents = share.collections[0].get_paths()[0].get_extents()
    assert (extents.x0, extents.x1, extents.y1) == (0, 30, 50)


def test_a_run_with_one_line_yet_shows_its_points():
    axes = build_gradient_figure([("new", _records(steps=10), 1.0)]).axes[0]
    assert all(line.get_marker() == "o" for name, line in _lines(axes).items() if name != CLIP)
    assert _lines(build_gradient_figure([("older", _records(), 1.0)]).axes[0])["head"].get_marker() in (None, "None")


def test_a_null_or_zero_norm_is_a_gap_not_an_error(tmp_path):
    records = _records(steps=50)
    records[2] = {**records[2], "grad_norm": None, "grad_norms": {**records[2]["grad_norms"], "embed": 0.0}}
    del records[3]["grad_norms"]  # a line from before per-layer norms were logged
    lines = _lines(build_gradient_figure([("diverged", records, 1.0)]).axes[0])
    assert np.isnan(lines["all layers (global)"].get_ydata()[2])
    embed = lines["embed"].get_ydata()
    assert np.isnan(embed[2]) and np.isnan(embed[3]) and embed[0] == pytest.approx(0.02)
    assert png_size(plot_gradients([("diverged", records, 1.0)], tmp_path / "g.png")) == (1200, 330)


@pytest.mark.parametrize("width", [320, 700, 1200])
def test_the_legend_fits_the_picture_at_any_width_it_accepts(width):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = build_gradient_figure([("runs/a", _records(clipped=0.2), 1.0)], width_px=width)
    FigureCanvasAgg(figure).draw()
    (legend,) = figure.legends or [axes.get_legend() for axes in figure.axes if axes.get_legend()]
    extent = legend.get_window_extent()
    assert extent.x0 >= 0 and extent.x1 <= width, (extent.x0, extent.x1)
    assert len(legend.get_texts()) == 7  # global, four layers, --clip, the clipped share


def test_a_run_logged_before_warning_kinds_has_its_gradient_warnings_marked_by_their_words():
    records = _records()
    records[9] = {**records[9], "warnings": ["gradients exploding: the norm exceeded --clip on 80% of ..."]}
    records[12] = {**records[12], "warnings": ["training loss rising: 6.9 against 3.0 at its lowest"]}
    axes = build_gradient_figure([("old", records, 1.0)]).axes[0]
    assert [text.get_text() for text in axes.texts] == ["exploding"]


def test_gradient_warnings_are_marked_and_named_at_their_step():
    records = _records()
    records[9] = {**records[9], "warnings": ["gradients exploding: ..."], "warning_kinds": ["exploding"]}
    records[4] = {**records[4], "warnings": ["the corpus changed"], "warning_kinds": ["corpus changed"]}
    axes = build_gradient_figure([("run", records, 1.0)]).axes[0]
    marked = [line for line in axes.get_lines() if line.get_label().startswith("warned")]
    assert [(line.get_label(), line.get_xdata()[0]) for line in marked] == [("warned: exploding", 100)]
    assert [text.get_text() for text in axes.texts] == ["exploding"]


def test_what_cannot_be_drawn_is_one_error_naming_it(tmp_path):
    with pytest.raises(PlotError, match=f"at most {MAX_RUNS} runs at once, not {MAX_RUNS + 1}"):
        plot_gradients([(f"r{i}", _records(), 1.0) for i in range(MAX_RUNS + 1)], tmp_path / "g.png")
    stopped = [{"step": 0, "stopped": "interrupted"}]
    with pytest.raises(PlotError, match="run runs/new has no gradient norms to plot yet"):
        plot_gradients([("runs/old", _records(), 1.0), ("runs/new", stopped, None)], tmp_path / "g.png")
    with pytest.raises(PlotError, match="ending in .png"):
        plot_gradients([("run", _records(), 1.0)], tmp_path / "g.jpg")
    with pytest.raises(PlotError, match=r"at least 640x200 pixels \(width x height\) to fit 2 runs' panels"):
        plot_gradients([("a", _records(), 1.0), ("b", _records(), 1.0)], tmp_path / "g.png", width_px=500)
    assert not (tmp_path / "g.png").exists()


def test_importing_the_module_does_not_import_matplotlib():
    code = "import sys, charlstm.plots.gradients; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
