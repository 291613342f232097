"""Accessibility basics (issue 13): every chart has a text alternative naming its latest values,
lines tell apart by dash or marker as well as by hue, and text reads at WCAG AA contrast on
Streamlit's light and dark backgrounds."""

import gzip
import json
import math
import re
import time

import numpy as np
import plotly.graph_objects as go
import pytest
from conftest import RUN_FIGURES, SMALL, open_app

from bnviz import Lockstep, TrainConfig, Trainer, precompute
from bnviz import alttext as A
from bnviz import figures as F
from bnviz import plot as P
from bnviz.scenarios import SCENARIOS
from bnviz.scenarios.tiny_batches import published_figure
from bnviz.ui.links import VIEWS

BACKGROUNDS = {"light": "#FFFFFF", "dark": "#0E1117"}  # Streamlit's two themes
AA_TEXT = 4.5
CONFIG = TrainConfig(**SMALL)


@pytest.fixture(scope="module")
def twins():
    """BatchNorm and its no-norm twin, with a change of lr halfway (a mark on the time axis)."""
    lockstep = Lockstep([CONFIG, CONFIG.replace(norm="none")])
    lockstep.step(20)
    lockstep.set(lr=0.01)
    lockstep.step(20)
    return tuple(lockstep.runs)


def _shipped(scenario_id: str) -> dict:
    """A scenario's shipped results by job label, read whatever engine made them (editing a
    scenario module makes precompute.load call them stale)."""
    path = precompute.scenario_file(precompute.DEFAULT_DIR, scenario_id)
    if not path.exists():
        return {}
    with gzip.open(path, "rb") as f:
        payload = json.loads(f.read().decode())
    return {j["label"]: j["result"] for j in payload["jobs"]}


def _scenario_figures() -> list[tuple[str, go.Figure]]:
    out = []
    for sid, scenario in SCENARIOS.items():
        for state, results in (("empty", {}), ("shipped", _shipped(sid))):
            out += [(f"{sid} {state} {k}", f) for k, f in enumerate(scenario.draw(results))]
    return out + [("tiny-batches published", published_figure())]


def _latest(fig: go.Figure) -> list[str]:
    """The latest finite value of each scatter trace, as describe writes numbers."""
    out = []
    for t in fig.data:
        if t.type == "scatter" and t.y is not None and len(t.y):
            y = np.asarray(t.y, dtype=np.float64)
            y = y[np.isfinite(y)]
            if len(y):
                out.append(A.number(y[-1]))
    return out


def _check_description(fig: go.Figure, where: str) -> str:
    text = A.describe(fig)
    assert text.strip() and len(text) <= A.MAX_DESCRIPTION, (where, text)
    title = A._plain(fig.layout.title.text)
    assert text.startswith(title), (where, text)
    if any(t.type != "table" for t in fig.data) or not fig.data:
        assert len(text) > len(title) + 2, (where, text)  # more than the title
    latest = _latest(fig)
    if latest:  # a line's latest value is read out (or a summary's ends)
        summarized = " lines, latest " in text or " lines (" in text
        assert summarized or any(v in text for v in latest), (where, latest, text)
    return text


# ---------------------------------------------------------------- text alternatives


@pytest.mark.parametrize("name", RUN_FIGURES)
def test_every_run_figure_describes_its_latest_values(twins, name):
    fig = RUN_FIGURES[name](*twins)
    _check_description(fig, name)


def test_descriptions_name_the_runs_and_their_latest_values(twins):
    main, twin = twins
    text = A.describe(F.loss_figure(main, twin))
    assert text.startswith("Training loss.")
    last = A.number(main.metric("train_loss")[-1]), A.number(twin.metric("train_loss")[-1])
    assert f"Latest at step {main.num_steps}: BatchNorm (main) {last[0]}" in text, text
    assert f"no norm (twin) {last[1]}" in text, text
    assert "Marked: lr 0.05→0.01 at step 21" in text, text
    # 16 channels' lines of γ and β are summarized, not listed
    affine = A.describe(F.affine_figure(main, 1))
    assert "γ: 16 lines, latest from" in affine and "β: 16 lines" in affine, affine
    # bars by their range and peak; a histogram panel by its title
    histogram = A.describe(F.histogram_figure(main, 1, -1))
    assert "pre-norm (the norm's input): 40 bars over value" in histogram, histogram
    assert "highest" in histogram
    # a band (15th to 85th percentile) as its two ends
    assert " to " in A.describe(F.percentile_figure(main, 1)).split("percentile")[-1]


def test_an_empty_figure_says_so(twins):
    run = Trainer(CONFIG).run
    for fig in (F.loss_figure(run), F.saturation_figure(run), F.affine_figure(run, 0)):
        text = A.describe(fig)
        assert "no data yet" in text or "no snapshot yet" in text, text


def test_numbers_are_read_with_about_three_significant_digits():
    assert [A.number(v) for v in (2.1834, 0.001234, 40.0, 12345.6, 3.2e-7, 1e7)] == [
        "2.18", "0.00123", "40", "12346", "3.2e-07", "1e+07",
    ]  # fmt: skip


def test_every_scenario_figure_describes_itself_empty_and_with_results():
    names = []
    for where, fig in _scenario_figures():
        text = _check_description(fig, where)
        if " empty " in where and not fig.data:
            assert "measuring…" in text, (where, text)
        # a series named after its panel is read once, not "BatchNorm: BatchNorm: 15th"
        assert not re.search(r"(?:^|[.;] )([^:;.]{3,}): \1:", text), (where, text)
        names.append(where)
    assert len([n for n in names if " shipped " in n]) >= 20


def test_describing_a_long_runs_figures_is_cheap():
    """Charts redraw every 1.2 s while a run plays: the text alternatives of a 300-step run's
    figures, with a twin, take a few ms at most each."""
    config = CONFIG.replace(steps=300, widths=(8, 16, 16))
    lockstep = Lockstep([config, config.replace(norm="none")])
    lockstep.step(300)
    main, twin = lockstep.runs
    worst = 0.0
    for build in RUN_FIGURES.values():
        fig = build(main, twin)
        start = time.perf_counter()
        for _ in range(5):
            A.describe(fig)
        worst = max(worst, (time.perf_counter() - start) / 5)
    assert worst < 0.005, f"{worst * 1000:.2f} ms"


def test_every_chart_on_every_view_has_a_text_alternative():
    at = open_app()
    seen = 0
    for view in VIEWS:
        at.session_state["view"] = view
        at.run(timeout=240)
        assert not at.exception, at.exception
        for chart in at.get("plotly_chart"):
            alt = chart.proto.alt
            title = json.loads(chart.proto.spec)["layout"]["title"]["text"]
            assert alt.strip() and alt.startswith(A._plain(title)), (view, chart.key, alt)
            seen += 1
    assert seen >= 10


# ---------------------------------------------------------------- not by hue alone


def _has(mode, part: str) -> bool:
    return part in (mode or "lines")


def _look(t) -> tuple:
    """What tells a line apart besides its colour: whether it is a line, its dash, and the
    symbol of its markers if it has any."""
    dash = t.line.dash or "solid" if _has(t.mode, "lines") else None
    symbol = str(t.marker.symbol or "circle") if _has(t.mode, "markers") else None
    pattern = t.fillpattern.shape if t.fill and t.fill != "none" else None
    return (_has(t.mode, "lines"), dash, symbol, t.fill or "none", pattern or "")


def _check_not_by_hue_alone(fig: go.Figure, where: str) -> None:
    entries = [t for t in fig.data if t.type == "scatter" and t.name and t.showlegend is not False]
    for k, a in enumerate(entries):
        for b in entries[k + 1 :]:
            color_a = a.line.color if _has(a.mode, "lines") else a.marker.color
            color_b = b.line.color if _has(b.mode, "lines") else b.marker.color
            if color_a != color_b:
                assert _look(a) != _look(b), (where, a.name, b.name, _look(a))


def test_blocks_never_share_both_colour_and_marker():
    trainer = Trainer(TrainConfig(widths=(4,) * 6, steps=3, snapshot_every=1))  # MAX_DEPTH
    trainer.step(3)
    run = trainer.run
    for fig in (F.grad_norm_figure(run), F.saturation_figure(run), F.update_ratio_figure(run)):
        blocks = [t for t in fig.data if t.name and t.name.split()[0].startswith("block")]
        assert len(blocks) == 6, [t.name for t in fig.data]
        looks = [(t.line.color, t.marker.symbol) for t in blocks]
        assert len(set(looks)) == 6, looks
        assert len({s for _, s in looks}) == 6  # the symbols alone tell them apart
        assert all("markers" in t.mode and 0 < t.marker.maxdisplayed <= 10 for t in blocks)
    assert len(set(P.LAYER_SYMBOLS)) == len(P.LAYER_SYMBOLS) >= 6
    assert P.HEAD_SYMBOL not in P.LAYER_SYMBOLS
    assert len(set(P.NORM_SYMBOLS.values())) == len(P.NORM_SYMBOLS)


@pytest.mark.parametrize("name", RUN_FIGURES)
def test_run_figure_lines_differ_by_more_than_hue(twins, name):
    _check_not_by_hue_alone(RUN_FIGURES[name](*twins), name)
    _check_not_by_hue_alone(RUN_FIGURES[name](twins[0], None), name)


def test_scenario_figure_lines_differ_by_more_than_hue():
    for where, fig in _scenario_figures():
        _check_not_by_hue_alone(fig, where)


# ---------------------------------------------------------------- contrast


def contrast(color: str, background: str) -> float:
    """The WCAG 2 contrast ratio of two #RRGGBB colours."""

    def luminance(hex_color: str) -> float:
        c = np.array([int(hex_color[k : k + 2], 16) / 255 for k in (1, 3, 5)])
        c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(c @ [0.2126, 0.7152, 0.0722])

    low, high = sorted([luminance(color), luminance(background)])
    return (high + 0.05) / (low + 0.05)


def _text_colors(node, path: str = "") -> list[tuple[str, str]]:
    """(where, colour) of every colour set on a font in a figure's JSON, but in plotly's
    default template, which Streamlit's theme (theme="streamlit") replaces with its own."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "template":
                continue
            here = f"{path}.{key}"
            if "font" in key.lower() and isinstance(value, dict) and value.get("color"):
                colors = value["color"]
                for c in colors if isinstance(colors, list) else [colors]:
                    found.append((here, c))
            found += _text_colors(value, here)
    elif isinstance(node, list):
        for k, value in enumerate(node):
            found += _text_colors(value, f"{path}[{k}]")
    return found


def _hex(color: str) -> str:
    if color.startswith("#") and len(color) == 7:
        return color
    raise AssertionError(f"a text colour the test cannot check: {color!r}")


def test_the_palette_greys_fail_aa_for_text_which_is_why_text_takes_the_theme_colour():
    # the check works: plotly's old grey text and our NEUTRAL and ALERT would fail it
    assert contrast(P.NEUTRAL, BACKGROUNDS["light"]) < AA_TEXT
    assert contrast(P.ALERT, BACKGROUNDS["dark"]) < AA_TEXT
    assert math.isclose(contrast("#000000", "#FFFFFF"), 21)


def test_every_fixed_text_colour_meets_aa_on_light_and_dark(twins):
    figures = [(name, build(*twins)) for name, build in RUN_FIGURES.items()]
    figures += [(name, build(twins[0], None)) for name, build in RUN_FIGURES.items()]
    figures += [("empty loss", F.loss_figure(Trainer(CONFIG).run))]
    figures += _scenario_figures()
    for where, fig in figures:
        for path, color in _text_colors(fig.to_plotly_json()):
            for theme, background in BACKGROUNDS.items():
                ratio = contrast(_hex(color), background)
                assert ratio >= AA_TEXT, f"{where}{path}: {color} on {theme} {ratio:.2f}:1"
