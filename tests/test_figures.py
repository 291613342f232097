import ast
import math
from collections import Counter
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from conftest import RUN_FIGURES, SMALL, batch_noise

from bnviz import Lockstep, Run, TrainConfig, Trainer
from bnviz import figures as F
from bnviz import plot as P
from bnviz.batchnorm import effective_window
from bnviz.record import momentum_numbers

CONFIG = TrainConfig(**SMALL)
SWITCH = 20  # the twins change lr, momentum and batch size from step SWITCH + 1 on


@pytest.fixture(scope="module")
def run(small_trainer) -> Run:
    return small_trainer.run


@pytest.fixture(scope="module")
def twins() -> tuple[Run, Run]:
    """BatchNorm and its no-norm twin; lr, momentum and batch size change after SWITCH steps."""
    lockstep = Lockstep([CONFIG, CONFIG.replace(norm="none")])
    lockstep.step(SWITCH)
    lockstep.set(lr=0.01, momentum=None, batch_size=16)
    lockstep.step(CONFIG.steps - SWITCH)
    return tuple(lockstep.runs)


@pytest.fixture(scope="module")
def diverged() -> Run:
    trainer = Trainer(CONFIG.replace(norm="none", lr=1e4))
    trainer.step(CONFIG.steps)
    assert trainer.run.status == "diverged"
    return trainer.run


def _stepped(steps: int, **changes) -> Run:
    trainer = Trainer(CONFIG.replace(**changes))
    trainer.step(steps)
    return trainer.run


def _copy(run: Run) -> Run:
    return Run.from_dict(run.to_dict())


def _traces(fig: go.Figure, contains: str) -> list:
    return [t for t in fig.data if t.name and contains in t.name]


def _one(fig: go.Figure, name: str):
    (trace,) = [t for t in fig.data if t.name == name]
    return trace


def _annotations(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def _subtitle(fig: go.Figure) -> str:
    """The subtitle as one line (it is wrapped with <br> to fit a half-width chart)."""
    return fig.layout.title.subtitle.text.replace("<br>", " ")


# ---------------------------------------------------------------- module-wide rules


def test_figures_module_never_imports_streamlit():
    tree = ast.parse(Path(F.__file__).read_text(encoding="utf-8"))
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m.split(".")[0] == "streamlit"]


def _legend_entries(fig: go.Figure) -> list[go.Scatter]:
    return [t for t in fig.data if t.name and t.showlegend is not False]


@pytest.mark.parametrize("name", RUN_FIGURES)
def test_layout_reads_on_a_projector_and_leaves_the_theme_alone(twins, name):
    fig = RUN_FIGURES[name](*twins)
    layout = fig.layout
    assert layout.paper_bgcolor is None and layout.plot_bgcolor is None  # the theme's
    assert layout.font.color is None and layout.legend.font.color is None
    # a short title that a half-width chart does not cut; the details in a wrapped subtitle
    assert len(layout.title.text) <= 45 and layout.title.font.size == 16
    assert layout.title.subtitle.text and layout.title.subtitle.font.size == 13
    assert all(len(line) <= P.SUBTITLE_CHARS for line in layout.title.subtitle.text.split("<br>"))
    axes = [*fig.select_xaxes(), *fig.select_yaxes()]
    assert all(a.tickfont.size == 12 and a.title.font.size == 13 for a in axes)
    assert all(a.title.text for a in fig.select_yaxes(col=1))
    assert any(a.title.text for a in fig.select_xaxes())
    # the legend sits under the plot, at the bottom of the figure, and the figure grows with
    # it: besides the title and the x axis, the plot keeps PLOT_HEIGHT px and the legend a row
    # per entry of its tallest column (the traces of a run share a column)
    legend = layout.legend
    assert (legend.orientation, legend.yref, legend.y, legend.yanchor) == (
        "h", "container", 0, "bottom",
    )  # fmt: skip
    entries = _legend_entries(fig)
    assert layout.showlegend == (len(entries) >= 2)
    groups = Counter(t.legendgroup for t in entries if t.legendgroup)
    rows = max(groups.values(), default=1) if layout.showlegend else 0
    assert layout.height - layout.margin.t - layout.margin.b >= P.PLOT_HEIGHT
    assert layout.margin.b >= P.TICKS_PX + rows * P.LEGEND_ROW
    # margins are set here: plotly's automargin draws a chart twice whenever its tick labels
    # change width, which is every refresh while a run plays
    assert all(a.automargin is False for a in axes) and not layout.title.automargin


def test_the_figure_grows_with_its_legend_and_charts_side_by_side_line_up(twins):
    main, twin = twins
    alone, both = F.update_ratio_figure(main), F.update_ratio_figure(main, twin)
    assert both.layout.height - alone.layout.height >= 4 * P.LEGEND_ROW  # 4 more weights
    assert {e.legendgroup for e in _legend_entries(both)} >= {"BatchNorm (main)", "no norm (twin)"}
    assert both.layout.legend.groupclick == "toggleitem"  # a click hides one line, not a run
    # loss and accuracy are shown side by side: their plots start at the same height
    loss, accuracy = F.loss_figure(main, twin), F.accuracy_figure(main, twin)
    assert loss.layout.margin.t == accuracy.layout.margin.t


# ---------------------------------------------------------------- loss and accuracy


def test_loss_figure_plots_the_recorded_loss_main_solid_twin_dashed(twins):
    main, twin = twins
    fig = F.loss_figure(main, twin)
    solid, dashed = fig.data
    np.testing.assert_array_equal(solid.x, main.steps)
    np.testing.assert_array_equal(solid.y, main.metric("train_loss"))
    np.testing.assert_array_equal(dashed.y, twin.metric("train_loss"))
    assert (solid.line.dash, dashed.line.dash) == (P.MAIN_DASH, P.TWIN_DASH) == ("solid", "dash")
    assert (solid.name, dashed.name) == ("BatchNorm (main)", "no norm (twin)")
    assert "BatchNorm (main)" in solid.hovertemplate and "step %{x}" in solid.hovertemplate


def test_accuracy_figure_smooths_training_batches_and_shows_both_test_modes(twins):
    main, twin = twins
    fig = F.accuracy_figure(main, twin)
    (smooth,) = _traces(fig, "centred mean) · BatchNorm")
    acc = main.metric("train_acc").astype(np.float64)
    np.testing.assert_allclose(smooth.y[10], acc[6:15].mean() * 100, rtol=1e-5)  # 9-step window
    np.testing.assert_allclose(smooth.y[0], acc[:5].mean() * 100, rtol=1e-5)  # shrunk at the ends
    running = _one(fig, "test, running stats (eval mode) · BatchNorm (main)")
    batch = _one(fig, "test, batch stats (train mode) · BatchNorm (main)")
    np.testing.assert_array_equal(running.x, main.eval_steps)
    np.testing.assert_allclose(running.y, np.array(main.acc_running_stats) * 100, rtol=1e-6)
    np.testing.assert_allclose(batch.y, np.array(main.acc_batch_stats) * 100, rtol=1e-6)
    # the no-norm twin has no running statistics: one test curve, dashed
    (twin_test,) = _traces(fig, "test (no running stats")
    assert twin_test.line.dash == "dash" and "(twin)" in twin_test.name
    assert tuple(fig.layout.yaxis.range) == (0, 101) and "%" in fig.layout.yaxis.title.text


# ---------------------------------------------------------------- activations


def test_histogram_shows_fractions_at_the_fixed_bin_centres(run):
    snaps = run.snapshots[1]
    fig = F.histogram_figure(run, 1, -1)
    assert len(fig.data) == 3
    for bar, kind in zip(fig.data, ("pre_norm", "post_norm", "post_act")):
        edges = snaps.edges[kind]
        np.testing.assert_allclose(bar.x, (edges[:-1] + edges[1:]) / 2, rtol=1e-6)
        counts = snaps.hist[kind][-1]
        np.testing.assert_allclose(bar.y, counts / counts.sum())
        assert math.isclose(sum(bar.y), 1.0)
        assert bar.marker.color == F.layer_color(1)
    assert f"step {snaps.steps[-1]}" in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "value"
    assert "fraction" in fig.layout.yaxis.title.text
    dead = f"{snaps.saturated_fraction[-1]:.1%}"
    assert any("dead (relu = 0)" in t and dead in t for t in _annotations(fig))


def test_channel_histogram_is_the_channel_counts_normalised(run):
    snaps = run.snapshots[0]
    fig = F.histogram_figure(run, 0, 2, channel=3)
    for bar, kind in zip(fig.data, ("pre_norm", "post_norm", "post_act")):
        counts = snaps.channel_hist[kind][2][3]
        np.testing.assert_allclose(bar.y, counts / counts.sum())
    assert f"step {snaps.steps[2]}" in fig.layout.title.text
    assert "channel 3" in fig.layout.title.text
    with pytest.raises(ValueError, match="channel"):
        F.histogram_figure(run, 0, 0, channel=run.layers[0].tracked_channels)


def test_histogram_says_post_activation_is_the_norm_input_for_placement_after():
    fig = F.histogram_figure(_stepped(1, placement="after"), 0, 0)
    assert "placement 'after'" in _subtitle(fig)


def test_percentile_figure_band_and_median_main_and_twin(twins):
    main, twin = twins
    fig = F.percentile_figure(main, 1, twin)
    main_p = np.array(main.snapshots[1].unit_percentiles)
    median = _one(fig, "median · BatchNorm (main)")
    np.testing.assert_array_equal(median.x, main.snapshots[1].steps)
    np.testing.assert_allclose(median.y, main_p[:, 1])
    band = _one(fig, "15th–85th percentile · BatchNorm (main)")
    lower = fig.data[list(fig.data).index(band) - 1]  # tonexty fills down to the trace before
    assert band.fill == "tonexty"
    np.testing.assert_allclose(band.y, main_p[:, 2])
    np.testing.assert_allclose(lower.y, main_p[:, 0])
    twin_median = _one(fig, "median · no norm (twin)")
    np.testing.assert_allclose(twin_median.y, np.array(twin.snapshots[1].unit_percentiles)[:, 1])
    assert twin_median.line.dash == "dash"
    twin_band = _one(fig, "15th–85th percentile · no norm (twin)")
    assert float(twin_band.fillcolor.split(",")[-1][:-1]) < float(
        band.fillcolor.split(",")[-1][:-1]
    )
    layer = F.percentile_figure(main, 1, which="layer")
    np.testing.assert_allclose(
        _one(layer, "median · BatchNorm (main)").y,
        np.array(main.snapshots[1].layer_percentiles)[:, 1],
    )
    with pytest.raises(ValueError, match="which"):
        F.percentile_figure(main, 0, which="channel")


def test_saturation_figure_in_percent_per_layer(twins):
    main, twin = twins
    fig = F.saturation_figure(main, twin)
    block2 = _one(fig, "block2 · BatchNorm (main)")
    np.testing.assert_allclose(block2.y, np.array(main.snapshots[1].saturated_fraction) * 100)
    assert "dead" in fig.layout.title.text and "dead (relu = 0)" in _subtitle(fig)
    assert "%" in fig.layout.yaxis.title.text
    assert fig.layout.yaxis.rangemode == "tozero"  # a few points' change looks like one
    assert _one(fig, "block2 · no norm (twin)").line.dash == "dash"


def test_a_layer_has_the_same_colour_in_every_figure(twins):
    main, twin = twins
    colors = {
        F.histogram_figure(main, 1, 0).data[0].marker.color,
        _one(F.percentile_figure(main, 1, twin), "median · no norm (twin)").line.color,
        _one(F.saturation_figure(main, twin), "block2 · BatchNorm (main)").line.color,
        _one(F.grad_norm_figure(main, twin), "block2 · no norm (twin)").line.color,
        _one(F.update_ratio_figure(main), "block2 weight").line.color,
        F.running_stats_figure(main, 1, 0).data[0].marker.color,
        F.gain_figure(main, 1).data[0].marker.color,
    }
    assert colors == {F.layer_color(1)}


# ---------------------------------------------------------------- normalization statistics


def test_running_stats_figure_batch_markers_and_running_lines(run):
    c = 2
    fig = F.running_stats_figure(run, 1, c)
    batch_mean, running_mean = _one(fig, "batch mean"), _one(fig, "running mean")
    assert batch_mean.mode == "markers" and running_mean.mode == "lines"
    np.testing.assert_array_equal(batch_mean.x, run.steps)
    np.testing.assert_array_equal(batch_mean.y, run.layer_stat(1, "batch_mean")[:, c])
    np.testing.assert_array_equal(running_mean.x, np.r_[0, run.steps])  # from the initial 0
    np.testing.assert_array_equal(running_mean.y, np.r_[0, run.layer_stat(1, "running_mean")[:, c]])
    batch_var = _one(fig, "batch variance (biased, ÷m)")
    running_var = _one(fig, "running variance (unbiased, ÷(m−1))")
    np.testing.assert_array_equal(batch_var.y, run.layer_stat(1, "batch_var")[:, c])
    np.testing.assert_array_equal(running_var.y, np.r_[1, run.layer_stat(1, "running_var")[:, c]])
    assert batch_var.yaxis == "y2" and fig.layout.xaxis2.title.text == "step (optimizer steps)"
    assert "biased" in _subtitle(fig) and "unbiased" in _subtitle(fig)
    with pytest.raises(ValueError, match="channel"):
        F.running_stats_figure(run, 0, run.layers[0].channels)


def test_running_stats_figure_without_running_stats_shows_batch_stats_only(twins):
    fig = F.running_stats_figure(twins[1], 0, 0)
    assert {t.name for t in fig.data} == {"batch mean", "batch variance (biased, ÷m)"}
    assert "batch statistics only" in fig.layout.title.text


def test_affine_figure_one_thin_line_per_channel_and_parameter(run):
    fig = F.affine_figure(run, 1)
    channels = run.layers[1].channels
    (gammas,) = [t for t in fig.data if t.yaxis == "y"]
    (betas,) = [t for t in fig.data if t.yaxis == "y2"]
    for trace, stat in ((gammas, "gamma"), (betas, "beta")):
        # one line per channel, the lines parted by gaps, each channel named in its hover
        x, y, c = np.asarray(trace.x, float), np.asarray(trace.y, float), trace.customdata
        lines = np.split(np.arange(len(x)), np.flatnonzero(np.isnan(x)) + 1)[:-1]
        assert len(lines) == channels
        line = lines[5][:-1]  # channel 5, without its trailing gap
        assert set(c[line]) == {5} and "channel %{customdata}" in trace.hovertemplate
        np.testing.assert_array_equal(x[line], run.steps)
        np.testing.assert_allclose(y[line], run.layer_stat(1, stat)[:, 5], rtol=1e-6)
    assert gammas.line.width <= 1


def test_affine_figure_without_gamma_and_beta_explains_itself(twins):
    fig = F.affine_figure(twins[1], 0)
    assert not fig.data
    assert any("no γ and β" in t for t in _annotations(fig))


def test_gain_figure_uses_the_eps_in_force_and_highlights_where_it_dominates(run):
    var = run.layer_stat(0, "batch_var")[-1].astype(np.float64)
    eps = float(np.median(var))  # about half the channels now have eps >= var
    edited = _copy(run)
    edited.changes.append({"step": 5, "field": "eps", "old": 1e-5, "new": eps})
    fig = F.gain_figure(edited, 0)
    normal, dominated = fig.data[0], fig.data[1]
    expected = {c for c in range(len(var)) if eps >= var[c]}
    assert set(dominated.x) == expected and 0 < len(expected) < len(var)
    assert set(normal.x) == set(range(len(var))) - expected
    assert dominated.marker.color != normal.marker.color and "ε" in dominated.name
    gain = 1 / np.sqrt(var + eps)
    np.testing.assert_allclose(dominated.y, gain[sorted(expected)])
    np.testing.assert_allclose(normal.y, gain[sorted(set(normal.x))])
    running = _one(fig, "1/√(running var + ε): eval mode")
    rvar = run.layer_stat(0, "running_var")[-1].astype(np.float64)
    np.testing.assert_allclose(running.y, 1 / np.sqrt(rvar + eps))
    assert fig.layout.yaxis.type == "log"
    low, high = fig.layout.yaxis.range  # log10 units: gain 1 (scale unchanged) is in view
    assert low < 0 < high and high > np.log10(gain.max())
    assert "var" in normal.hovertemplate and "ε" in normal.hovertemplate
    # at step 4 the change had not happened yet: the config's eps applies
    early = F.gain_figure(edited, 0, step_index=3)
    var4 = run.layer_stat(0, "batch_var")[3].astype(np.float64)
    np.testing.assert_allclose(early.data[0].y, 1 / np.sqrt(var4 + 1e-5))
    assert not len(early.data[1].x) and "ε = 1e-05" in _subtitle(early)


def test_gain_figure_with_a_large_eps_config_marks_every_small_variance_channel():
    run = _stepped(2, eps=1.0)
    var = run.layer_stat(1, "batch_var")[-1]
    fig = F.gain_figure(run, 1)
    assert set(fig.data[1].x) == {c for c in range(len(var)) if 1.0 >= var[c]}


# ---------------------------------------------------------------- gradients and updates


def test_grad_norm_figure_per_layer_log_scale(twins):
    main, twin = twins
    fig = F.grad_norm_figure(main, twin)
    for i in range(2):
        for r, label in ((main, "BatchNorm (main)"), (twin, "no norm (twin)")):
            trace = _one(fig, f"block{i + 1} · {label}")
            np.testing.assert_array_equal(trace.y, r.layer_stat(i, "input_grad_norm"))
            assert trace.line.color == F.layer_color(i)
    assert fig.layout.yaxis.type == "log"
    alone = F.grad_norm_figure(main).data[0]  # no twin: short legend name, the run in the hover
    assert alone.name == "block1" and "block1 · BatchNorm (main)" in alone.hovertemplate


def test_a_twin_with_the_same_norm_is_named_by_what_differs(tiny_runs):
    after = _stepped(1, placement="after")
    names = [t.name for t in F.loss_figure(tiny_runs["1 step"], after).data]
    assert names == ["BatchNorm, placement before (main)", "BatchNorm, placement after (twin)"]


def test_update_ratio_figure_has_the_1e3_reference_and_a_log_axis(twins):
    main, twin = twins
    fig = F.update_ratio_figure(main, twin)
    (reference,) = _traces(fig, "1e-3")
    assert set(reference.y) == {1e-3} and "Karpathy" in reference.name
    assert fig.layout.yaxis.type == "log"
    conv = _one(fig, "block1 weight · BatchNorm (main)")
    np.testing.assert_array_equal(conv.y, main.param_stat("blocks.0.conv.weight", "update_ratio"))
    head = _one(fig, "head weight · no norm (twin)")
    np.testing.assert_array_equal(head.y, twin.param_stat("head.weight", "update_ratio"))
    assert head.line.dash == "dash"
    assert len(fig.data) == 2 * (len(CONFIG.widths) + 1) + 1  # conv weights + head, twice


def test_eval_gap_in_percentage_points_with_nan_points_skipped(run):
    edited = _copy(run)
    edited.acc_batch_stats[1] = math.nan
    fig = F.eval_gap_figure(edited)
    (gap,) = fig.data
    keep = [k for k in range(len(run.eval_steps)) if k != 1]
    np.testing.assert_array_equal(gap.x, np.array(run.eval_steps)[keep])
    expected = (np.array(run.acc_batch_stats) - np.array(run.acc_running_stats))[keep] * 100
    np.testing.assert_allclose(gap.y, expected)
    assert "1 point(s) skipped" in _subtitle(fig)
    assert [s.y0 for s in fig.layout.shapes if s.type == "line"] == [0]  # the zero line


def test_eval_gap_leaves_out_a_twin_without_running_statistics(twins):
    main, twin = twins
    fig = F.eval_gap_figure(main, twin)  # the no-norm twin's gap is 0 by construction
    assert [t.name for t in fig.data] == ["BatchNorm (main)"]
    assert "not drawn: no norm (twin), which keeps no running statistics" in _subtitle(fig)
    alone = F.eval_gap_figure(twin)
    assert not alone.data and "no running statistics, so no gap" in _annotations(alone)


def test_log_axes_label_decades_only_when_the_data_span_several(twins):
    def ticks(lo, hi):
        fig = go.Figure(go.Scatter(y=np.r_[np.geomspace(lo, hi, 50), 0.0, np.inf]))
        return P.log_ticks(fig)

    assert ticks(1e-4, 5e-2) == dict(type="log", dtick=1, exponentformat="power")  # 10⁻⁴, 10⁻³…
    assert ticks(9e-4, 4e-2)["dtick"] == 1  # 10⁻³ and 10⁻² are both in range
    # within a decade or two, 1-2-5 (or 1..9 below half a decade), each with its whole value
    assert ticks(3e-3, 4e-2)["ticktext"] == ["0.005", "0.01", "0.02"]
    assert ticks(1.5, 4)["ticktext"] == ["2", "3", "4"]
    assert ticks(0.2, 1.0)["ticktext"] == ["0.2", "0.5", "1"]  # not plotly's "2, 5, 1"
    main = twins[0]
    for fig in (F.grad_norm_figure(*twins), F.update_ratio_figure(*twins), F.gain_figure(main, 0)):
        axis = fig.layout.yaxis
        assert axis.type == "log" and (axis.exponentformat == "power" or axis.ticktext)


def test_gain_axis_at_eps_1_reads_the_gains_themselves():
    trainer = Trainer(TrainConfig(widths=(8,), batch_size=16, steps=3, eps=1.0))
    run = trainer.step(3)
    axis = F.gain_figure(run, 0).layout.yaxis
    assert axis.ticktext and axis.dtick is None
    assert [float(text) for text in axis.ticktext] == list(axis.tickvals)  # "0.5" reads 0.5
    assert all(value <= 1 for value in axis.tickvals)  # gains under 1: eps 1 caps them there


def test_batch_noise_figure_marks_the_full_data_values():
    noise = batch_noise()
    fig = F.batch_noise_figure(noise)
    np.testing.assert_array_equal(fig.data[0].x, noise.batch_means)
    np.testing.assert_array_equal(fig.data[1].x, noise.batch_vars)
    assert [(s.x0, s.xref) for s in fig.layout.shapes] == [(0.25, "x"), (1.1, "x2")]
    assert fig.layout.title.text.startswith("channel 3 of block2: batch statistics")
    assert _subtitle(fig).startswith("batch size 8: 4 batches")
    assert any(f"{noise.batch_means.std():.3g}" in t for t in _annotations(fig))
    assert any("all test images: 1.1" in t for t in _annotations(fig))  # in the panel title


# ---------------------------------------------------------------- the momentum formula


def _check_ema(numbers: dict) -> None:
    f = numbers["factor"]
    for after, before, batch in (
        ("running_after", "running_before", "batch"),
        ("var_running_after", "var_running_before", "var_batch_unbiased"),
    ):
        expected = (1 - f) * numbers[before] + f * numbers[batch]
        assert numbers[after] == pytest.approx(expected, rel=2e-6, abs=1e-7), (after, numbers)


def test_momentum_numbers_satisfy_the_recorded_ema_before_and_after_changes(twins):
    main = twins[0]
    for layer in range(len(main.layers)):
        for i in range(main.num_steps):
            numbers = momentum_numbers(main, layer, 1, i)
            _check_ema(numbers)
    first = momentum_numbers(main, 1, 1, 0)
    assert (first["step"], first["running_before"], first["var_running_before"]) == (1, 0.0, 1.0)
    before = momentum_numbers(main, 1, 1, SWITCH - 1)
    assert (before["momentum"], before["factor"], before["keras_momentum"]) == (0.1, 0.1, 0.9)
    assert before["m"] == 32 * 14 * 14  # block2 of 28x28 images is 14x14
    after = momentum_numbers(main, 1, 1, -1)
    assert after["momentum"] is None and after["keras_momentum"] is None
    assert after["factor"] == 1 / CONFIG.steps and after["m"] == 16 * 14 * 14
    assert after["var_batch_unbiased"] == pytest.approx(
        after["var_batch_biased"] * after["m"] / (after["m"] - 1)
    )
    with pytest.raises(ValueError, match="no running statistics"):
        momentum_numbers(twins[1], 0, 0)


def test_momentum_numbers_cumulative_from_the_start():
    run = _stepped(3, momentum=None)
    numbers = [momentum_numbers(run, 0, 0, i) for i in range(3)]
    assert [n["factor"] for n in numbers] == [1.0, 0.5, 1 / 3]
    assert numbers[0]["running_after"] == pytest.approx(numbers[0]["batch"])
    for n in numbers:
        _check_ema(n)


def test_effective_window():
    assert effective_window(0.1, 50) == 10
    assert effective_window(None, 50) == 50
    assert effective_window(1.0, 50) == 1
    assert effective_window(0.0, 50) == math.inf


# ---------------------------------------------------------------- markers, size, edge cases


def test_mid_run_changes_are_marked_with_one_label_per_step(twins):
    main, twin = twins
    for fig in (
        F.loss_figure(main, twin),
        F.grad_norm_figure(main, twin),
        F.running_stats_figure(main, 0, 0),
    ):
        marks = [s for s in fig.layout.shapes if s.x0 == SWITCH + 1]
        assert marks and all(s.line.dash == "dot" for s in marks)
        (label,) = [t for t in _annotations(fig) if "→" in t]
        assert "lr 0.05→0.01" in label and "momentum 0.1→None" in label and "batch 32→16" in label
    assert len(F.running_stats_figure(main, 0, 0).layout.shapes) == 2  # a line in both rows
    unchanged = _copy(main)
    unchanged.changes.clear()
    fig = F.loss_figure(unchanged)
    assert not fig.layout.shapes and not [t for t in _annotations(fig) if "→" in t]


def test_a_diverged_run_is_marked_in_red(diverged):
    for fig in (F.loss_figure(diverged), F.update_ratio_figure(diverged)):
        (mark,) = [s for s in fig.layout.shapes if s.x0 == diverged.diverged_step]
        assert mark.line.color == P.ALERT
        assert "diverged" in _annotations(fig)


def test_long_runs_are_strided_to_a_small_payload_keeping_the_last_point(run):
    long = _copy(run)
    table = long.table
    last = np.zeros(sum(s.stop - s.start for s in table.columns.values()), np.float32)
    for key, cols in table.columns.items():
        last[cols] = np.atleast_1d(table.get(key)[-1])
    for step in range(run.num_steps + 1, 5001):
        last[table.columns["step"]] = step
        last[table.columns["train_loss"]] = 1 / step
        table.append(last)
    fig = F.loss_figure(long)
    (trace,) = fig.data
    assert len(trace.x) <= P.MAX_POINTS and (trace.x[-1], trace.y[-1]) == (
        5000,
        np.float32(1 / 5000),
    )
    assert np.all(np.diff(trace.x) > 0) and trace.x[0] == 1
    for figure in (F.grad_norm_figure(long), F.accuracy_figure(long)):
        assert max(len(t.x) for t in figure.data) <= P.MAX_POINTS
        assert all(t.x[-1] == 5000 for t in figure.data if len(t.x) > 100)
    affine = F.affine_figure(long, 1)  # every channel in one trace per parameter
    assert all(len(t.x) <= F.AFFINE_POINTS // 2 + long.layers[1].channels for t in affine.data)
    assert all(t.x[-2] == 5000 for t in affine.data)  # each channel's line ends at the last step
    assert len(pio.to_json(affine)) < 200_000
    assert len(pio.to_json(fig)) < 30_000


FIGURES = {
    "loss": lambda r: F.loss_figure(r, r),
    "accuracy": lambda r: F.accuracy_figure(r, r),
    "histogram": lambda r: F.histogram_figure(r, 0, -1, channel=0),
    "percentile": lambda r: F.percentile_figure(r, 1, r, "layer"),
    "saturation": lambda r: F.saturation_figure(r, r),
    "running_stats": lambda r: F.running_stats_figure(r, 0, 0),
    "affine": lambda r: F.affine_figure(r, 0),
    "gain": lambda r: F.gain_figure(r, 1),
    "grad_norm": lambda r: F.grad_norm_figure(r, r),
    "update_ratio": lambda r: F.update_ratio_figure(r, r),
    "eval_gap": lambda r: F.eval_gap_figure(r, r),
}


@pytest.fixture(scope="module")
def tiny_runs() -> dict[str, Run]:
    return {
        "1 step": _stepped(1),
        "1 step, group norm, tanh, after": _stepped(
            1, norm="group", activation="tanh", placement="after"
        ),
        "0 steps": _stepped(0),
    }


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_works_for_one_step_and_zero_steps(tiny_runs, name):
    for label, r in tiny_runs.items():
        fig = FIGURES[name](r)
        assert isinstance(fig, go.Figure)
        pio.to_json(fig)
        if label == "0 steps" and name not in ("accuracy", "eval_gap"):
            assert any("no " in t for t in _annotations(fig)), (name, label)
    with pytest.raises(ValueError, match="no steps"):
        momentum_numbers(tiny_runs["0 steps"], 0, 0)
    one = momentum_numbers(tiny_runs["1 step"], 0, 0)
    assert one["factor"] == 0.1 and one["running_before"] == 0.0


def test_every_per_step_figure_draws_the_run_before_a_branch_and_where_it_starts():
    trainer = Trainer(TrainConfig(**{**SMALL, "eps": 0.0}))
    trainer.step(1)  # torch refuses eps 0: the run fails at step 1
    failed = trainer.run.frozen()
    trainer.set(eps=1e-5)
    trainer.resume()
    trainer.run.parent = failed
    trainer.step(4)
    forked = trainer.run.frozen()  # a fork at step 4 of the branch
    trainer.set(lr=0.01)
    trainer.run.parent = forked
    trainer.step(3)
    run = trainer.run
    figures = {
        "loss": F.loss_figure(run),
        "accuracy": F.accuracy_figure(run),
        "saturation": F.saturation_figure(run),
        "grad_norm": F.grad_norm_figure(run),
        "update_ratio": F.update_ratio_figure(run),
        "percentiles": F.percentile_figure(run, 0),
        "running_stats": F.running_stats_figure(run, 0, 0),
    }
    for name, fig in figures.items():
        notes = [a.text for a in fig.layout.annotations]
        assert "failed; branch: ε 0→1e-05" in notes and "branch: lr 0.05→0.01" in notes, name
        if name == "running_stats":
            continue  # a single-run figure: the marks only
        before = [t for t in fig.data if t.name == F.PARENT_NAME]
        assert before and sum(bool(t.showlegend) for t in before) == 1, name
        assert all(t.line.dash == P.PARENT_DASH and max(t.x) <= 4 for t in before), name
    before = [t for t in figures["loss"].data if t.name == F.PARENT_NAME][0]
    np.testing.assert_array_equal(before.y, forked.metric("train_loss"))
