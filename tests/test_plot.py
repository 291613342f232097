"""The plotting kit (bnviz/plot.py): the palette, figures built as plain dicts, and the layout
that every figure gets from it, the run figures' and the scenarios'."""

import ast
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from conftest import check_layout
from plotly.subplots import make_subplots

from bnviz import TrainConfig, Trainer
from bnviz import figures as F
from bnviz import plot as P
from bnviz.scenarios import SCENARIOS, common
from bnviz.series import stride


def test_the_kit_knows_plotly_not_runs():
    tree = ast.parse(Path(P.__file__).read_text(encoding="utf-8"))
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [
        "." * n.level + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
    ]
    allowed = ("__future__", "math", "textwrap", "numpy", "plotly")
    assert [m for m in imported if m.split(".")[0] not in allowed] == []


def _contrast(color: str, background: str) -> float:
    def luminance(hex_color):
        c = np.array([int(hex_color[k : k + 2], 16) / 255 for k in (1, 3, 5)])
        c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(c @ [0.2126, 0.7152, 0.0722])

    low, high = sorted([luminance(color), luminance(background)])
    return (high + 0.05) / (low + 0.05)


def test_layer_colors_are_distinct_and_read_on_light_and_dark_backgrounds():
    assert len(set(P.LAYER_COLORS)) == len(P.LAYER_COLORS) >= 6  # MAX_DEPTH blocks
    for color in (*P.LAYER_COLORS, P.NEUTRAL, P.ALERT):
        assert _contrast(color, "#FFFFFF") >= 3 and _contrast(color, "#0E1117") >= 3, color
    assert P.layer_color(1) == P.LAYER_COLORS[1]
    assert P.layer_color(len(P.LAYER_COLORS)) == P.LAYER_COLORS[0]
    # the scenarios' colour per normalization comes from the same palette, one each
    assert set(P.NORM_COLORS.values()) <= set(P.LAYER_COLORS)
    assert len(set(P.NORM_COLORS.values())) == len(P.NORM_COLORS)


@pytest.mark.parametrize(
    "values, chars",  # plotly writes 1.0, 0.0015, −0.002, 12345 (or 12k), 1.0
    [([0.0, 1.0], 3), ([0.0, 0.002], 6), ([-0.0031, 0.0042], 6), ([0, 12345.0], 5), ([1, 1], 3)],
)
def test_the_left_margin_makes_room_for_the_longest_tick_label(values, chars):
    spec = P.Spec()
    spec.add(dict(type="scatter", x=[0, 1], y=values))
    assert P.tick_chars(spec) == chars
    wide = P.finish(spec, "t", y_title="y").layout.margin.l
    assert wide >= P.TICK_CHAR_PX * chars + P.Y_TITLE_PX


def test_a_histograms_counts_get_room_for_their_digits():
    spec = P.Spec()
    spec.add(dict(type="histogram", x=np.arange(2000.0)))  # up to 2000 values in a bin
    assert P.tick_chars(spec) == 4


@pytest.mark.parametrize("rows, cols, spacing", [(1, 1, 0.08), (2, 1, 0.08), (1, 3, 0.06)])
def test_subplot_grids_are_laid_out_as_make_subplots_lays_them_out(rows, cols, spacing):
    """Figures are built as dicts, without make_subplots: the same axis names, domains, shared
    x axis and panel titles, and a grid that plotly's row= and col= selectors understand."""
    titles = [f"panel {k}" for k in range(rows * cols)]
    ours = P.Spec(rows, cols, spacing, titles=titles if rows == 1 else None).figure()
    plotly = make_subplots(
        rows=rows,
        cols=cols,
        shared_xaxes=True,
        vertical_spacing=spacing if rows > 1 else None,
        horizontal_spacing=spacing if cols > 1 else None,
        subplot_titles=titles if rows == 1 else None,
    )
    plotly.update_annotations(
        font=dict(size=P.PANEL_TITLE_SIZE), name=P.PANEL
    )  # as common.subplots
    assert ours.to_dict() == plotly.to_dict()
    assert ours._grid_ref == plotly._grid_ref
    assert len(list(ours.select_yaxes(row=rows, col=1))) == 1


@pytest.mark.parametrize("n", [0, 1, 599, 600, 601, 5000, 12345])
def test_stride_caps_and_keeps_both_ends(n):
    idx = stride(n, P.MAX_POINTS)
    assert len(idx) <= P.MAX_POINTS and len(set(idx)) == len(idx)
    if n:
        assert idx[0] == 0 and idx[-1] == n - 1


# ---------------------------------------------------------------- figures built with plotly


def test_a_plotly_figure_is_adopted_as_it_is():
    fig = make_subplots(rows=2, cols=2, shared_yaxes=True, subplot_titles=["a", "b", "c", "d"])
    fig.add_scatter(x=np.arange(3.0), y=[1, 2, 3], name="one", row=2, col=2)
    fig.add_hline(y=2, line=dict(color=P.NEUTRAL))
    spec = P.Spec.of(fig)
    assert (spec.rows, spec.cols) == (2, 2) and spec.cells(row=2) == ["3", "4"]
    np.testing.assert_array_equal(spec.data[0]["x"], [0, 1, 2])  # values, not plotly's base64
    again = spec.figure()
    assert again.to_dict() == fig.to_dict() and again._grid_ref == fig._grid_ref
    spec.data[0]["name"] = "changed"
    assert fig.data[0].name == "one"  # a copy

    plain = P.Spec.of(go.Figure())  # one plot, its axes there for finish to lay out
    assert (plain.rows, plain.cols) == (1, 1) and plain.axes("x") == [{}]
    table = P.Spec.of(go.Figure(go.Table(cells=dict(values=[[1, 2]]))))
    assert (table.rows, table.cols) == (0, 0)  # no x-y plot drawn behind the table
    laid_out = P.finish(table, "t", note="n")
    assert "xaxis" not in laid_out.layout.to_plotly_json()


def _main_figure() -> go.Figure:
    return F.loss_figure(Trainer(TrainConfig(widths=(4,), steps=2)).run)


def _scenario_figures() -> dict[str, go.Figure]:
    """Every scenario's figures before its first result (what a cold server shows)."""
    return {
        f"{sid}[{k}]": fig
        for sid, scenario in SCENARIOS.items()
        for k, fig in enumerate(scenario.draw({}))
    }


def test_every_figure_gets_the_kits_layout():
    figures = {"loss (a run figure)": _main_figure(), **_scenario_figures()}
    assert len(figures) > 20
    for name, fig in figures.items():
        try:
            check_layout(fig)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from e


def test_a_scenario_figure_looks_like_a_run_figure():
    """Laid out by the same code: the same title, legend and axis fonts and places, margins
    computed the same way (the top one the same for the same subtitle), and, with no legend
    and one row, the same height."""
    main, scenario = _main_figure(), common.placeholder("t", "x", "y")
    for part in ("title", "legend", "hoverlabel"):
        ours, theirs = (f.layout[part].to_plotly_json() for f in (scenario, main))
        for layout in (ours, theirs):
            layout.pop("text", None), layout.get("subtitle", {}).pop("text", None)
            layout.pop("groupclick", None)  # a scenario's legend group is one entry
        assert ours == theirs, part
    assert scenario.layout.margin.t == main.layout.margin.t  # both: a two-line subtitle
    assert scenario.layout.margin.b == main.layout.margin.b  # both: an x title, no legend
    assert scenario.layout.height == main.layout.height
    assert scenario.layout.xaxis.tickfont.size == main.layout.xaxis.tickfont.size
    assert scenario.layout.xaxis.automargin is main.layout.xaxis.automargin is False


def test_a_scenario_figure_finished_with_plotly_data_keeps_it():
    """common.finish lays out what the scenario drew: traces, shapes and axis settings survive,
    the legend is sized from its entries, and a log axis gets the kit's ticks."""
    fig = go.Figure()
    for k in range(5):
        fig.add_scatter(x=[1e-3, 1e-1, 10], y=[k, k + 1, k + 3], name=f"a long legend entry {k}")
    fig.add_hline(y=1, line=dict(color=P.NEUTRAL, dash="dot"))
    fig.update_yaxes(range=[0, 100])
    out = common.finish(fig, "Title", "lr (log scale)", "accuracy (%)", note="details", log_x=True)
    assert [t.name for t in out.data] == [t.name for t in fig.data]
    assert out.layout.shapes[0].y0 == 1 and tuple(out.layout.yaxis.range) == (0, 100)
    assert out.layout.xaxis.type == "log" and out.layout.xaxis.dtick == 1  # 10⁻³ ... 10¹
    assert out.layout.title.subtitle.text == "details"
    assert out.layout.margin.b >= P.AXIS_PX + 3 * P.LEGEND_ROW  # five entries wrap to 3 rows
    assert out.layout.showlegend and out.layout.legend.groupclick == "togglegroup"
    check_layout(out)
