"""The plotting kit: one look and one layout for every chart of the app, the run figures
(bnviz/figures.py) and the scenarios' (bnviz/scenarios/). It knows plotly, not runs.

The palette: a colour and a marker symbol per block (LAYER_COLORS, LAYER_SYMBOLS) and per
normalization (NORM_COLORS, NORM_SYMBOLS), grey for references and red for alarms; line dashes
for a main run, its twin and the run it branched from. No template or background colour is set:
the app's light or dark theme applies, and every colour here keeps a contrast of at least 3:1 on
both white and Streamlit's dark background, enough for lines and markers. Text is never drawn in
these colours: no grey has 4.5:1 on both backgrounds, so text takes the theme's own colour.

The layout, for a projector: finish() gives a figure a short title with the details in a
wrapped subtitle, its legend under the plot (a column per legend group), projector-sized fonts,
margins computed here rather than by plotly's automargin, and a height that grows with the
legend so that the plot keeps its size (PLOT_HEIGHT).

Figures are built as plain dicts (Spec) and handed to go.Figure unvalidated: plotly's validation
of every add_*, update_* and make_subplots call cost 20-50 times more than the rest, on a server
that trains at the same time. A figure built with plotly's own API (the scenarios draw theirs
once, from finished results) is laid out the same way through Spec.of."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import SubplotRef

# Okabe-Ito hues; orange and sky blue darkened so that every colour has a contrast of at least
# 3:1 against white and against Streamlit's dark background (#0e1117). The first three (the
# default depth) stay apart under protanopia, deuteranopia and tritanopia.
LAYER_COLORS: tuple[str, ...] = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#BF8A00", "#2E8BC0")
# The scenarios colour a run by its normalization; "none" also marks a baseline.
NORM_COLORS = {
    "batch": LAYER_COLORS[0],
    "none": LAYER_COLORS[1],
    "group": LAYER_COLORS[2],
    "layer": LAYER_COLORS[3],
    "instance": LAYER_COLORS[4],
}
# A marker symbol per block, so that its lines tell apart without hue too (a block keeps its
# colour and symbol in every figure; the pairs never repeat within MAX_DEPTH blocks); the head
# layer, grey, has its own. Dashes are taken: they tell a main run, its twin and its parent.
LAYER_SYMBOLS: tuple[str, ...] = (
    "circle", "square", "diamond", "triangle-up", "x", "triangle-down",
)  # fmt: skip
HEAD_SYMBOL = "star"
NORM_SYMBOLS = {norm: LAYER_SYMBOLS[LAYER_COLORS.index(c)] for norm, c in NORM_COLORS.items()}
MARKERS_PER_LINE = 8  # markers on a line at most (plotly's marker.maxdisplayed spreads them)
MARKER_SIZE = 8
NEUTRAL = "#8C8C8C"  # references, change markers, the head layer
ALERT = "#E41A1C"  # divergence, eps-dominated channels
MAIN_DASH = "solid"
TWIN_DASH = "dash"
# The run before a branch (run.parent) is drawn grey and dotted over the branch, which shares
# its steps up to the branch point: what follows is the branch's own.
PARENT_DASH = "dot"
LINE_WIDTH = 2.5  # px, thick enough for the back of a classroom
MAX_POINTS = 300  # per trace, for per-step series: about one point per 2 px of a chart
MAX_MARKERS = 150  # per trace of dots: each is an element of its own for the browser to draw
# Layout for a projector. Sizes in px; the estimates are for these fonts and for a chart in a
# half-width column of Streamlit's wide layout (about 500 px wide in a 1500 px window).
PLOT_HEIGHT = 300  # px of plotting area, whatever the title, subtitle and legend take
TWO_ROW_PLOT_HEIGHT = 400  # two rows sharing the step axis
TITLE_SIZE, SUBTITLE_SIZE, PANEL_TITLE_SIZE, AXIS_TITLE_SIZE, TICK_SIZE = 16, 13, 14, 13, 12
LEGEND_SIZE, NOTE_SIZE, HOVER_SIZE = 13, 12, 13
TITLE_PX, SUBTITLE_LINE_PX = 44, 18  # the title line, and each subtitle line under it
PANEL_TITLE_PX = 26  # subplot titles, above the plots
AXIS_PX, TICKS_PX = 62, 34  # under the plot: tick labels and an x axis title, or tick labels
SUBTITLE_CHARS = 58  # per subtitle line: about 370 px, a half-width chart of a scenario on a laptop
SUBTITLE_LINES = 3  # room kept for at least this many, so charts side by side line up
LEGEND_WIDTH = 420  # px a legend row may take (the plot width of a half-width chart)
CHAR_PX, LEGEND_SYMBOL_PX, LEGEND_ROW, LEGEND_GAP = 6.0, 45, 22, 8  # legend size estimates
TICK_CHAR_PX, Y_TITLE_PX = 7.5, 26  # a tick label's character; a y axis title and its gap
STEP_AXIS = "step (optimizer steps)"
# Names of annotations (plotly's annotation `name`) that alttext.describe() reads back: a subplot's
# title, a note on the plot ("no data yet", "measuring…") and a label on the time axis.
PANEL, NOTE, MARK = "panel", "note", "mark"


def layer_color(i: int) -> str:
    """The colour of block i (cycling past the palette)."""
    return LAYER_COLORS[i % len(LAYER_COLORS)]


def layer_symbol(i: int) -> str:
    """The marker symbol of block i (cycling past the symbols)."""
    return LAYER_SYMBOLS[i % len(LAYER_SYMBOLS)]


def line_markers(symbol: str, color: str | None = None, **props) -> dict:
    """Sparse markers of one symbol along a line (at most MARKERS_PER_LINE of them): with
    mode "lines+markers" they tell lines of one dash apart where hue does not, and the legend
    shows the symbol."""
    marker = dict(symbol=symbol, size=MARKER_SIZE, maxdisplayed=MARKERS_PER_LINE) | props
    return marker | ({"color": color} if color else {})


def rgba(color: str, alpha: float) -> str:
    """A hex colour as an rgba() string."""
    r, g, b = (int(color[k : k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average; the window shrinks at both ends (and for short series)."""
    n = len(y)
    if n == 0:
        return np.asarray(y, dtype=np.float32)
    window = min(window, n if n % 2 else n - 1)
    kernel = np.ones(window)
    total = np.convolve(np.asarray(y, dtype=np.float64), kernel, mode="same")
    count = np.convolve(np.ones(n), kernel, mode="same")
    return (total / count).astype(np.float32)


# ---------------------------------------------------------------- figures as plain dicts


def merge(target: dict, props: dict) -> dict:
    """Set `props` on `target` as plotly's update does: a nested dict merges into the nested
    dict there (copied, so that no dict is shared between two places), and None removes."""
    for key, value in props.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            merge(target.setdefault(key, {}), value)
        else:
            target[key] = value
    return target


def trace(kind: str, **props) -> dict:
    """A trace of plotly type `kind` as a plain dict, without the properties that are None."""
    return merge({"type": kind}, props)


def domains(n: int, spacing: float) -> list[list[float]]:
    """[start, end] of n equal panels side by side with `spacing` between them (fractions of
    the figure), computed the way make_subplots computes them, to the last bit."""
    size = (1.0 - spacing * (n - 1)) / n
    spans = []
    for k in range(n):
        start = sum([size] * k) + k * spacing
        spans.append([max(0.0, start), min(1.0, start + size)])
    return spans


class Spec:
    """A figure being built as plain dicts, a list of traces and one layout, on a grid of
    subplots named and placed as make_subplots names and places them: xaxis/yaxis, xaxis2/
    yaxis2, ... row by row from the top left, each x anchored to its y, and rows sharing the
    bottom row's x axis (which alone shows tick labels). figure() hands the dicts to go.Figure
    unvalidated: about a millisecond, where validating every update_*, add_* and make_subplots
    call costs plotly tens of milliseconds a figure."""

    def __init__(
        self, rows: int = 1, cols: int = 1, spacing: float = 0.08, titles: list[str] | None = None
    ):
        self.rows, self.cols = rows, cols
        self.data: list[dict] = []
        self.layout: dict = {}
        xs, ys = domains(cols, spacing), domains(rows, spacing)[::-1]  # row 1 at the top
        for row in range(1, rows + 1):
            for col in range(1, cols + 1):
                n = self._suffix(row, col)
                self.layout[f"xaxis{n}"] = {"anchor": f"y{n}", "domain": xs[col - 1]}
                self.layout[f"yaxis{n}"] = {"anchor": f"x{n}", "domain": ys[row - 1]}
                if row < rows:
                    shared = f"x{self._suffix(rows, col)}"
                    self.layout[f"xaxis{n}"] |= {"matches": shared, "showticklabels": False}
        for col, text in enumerate(titles or [], 1):  # panel titles, over the top row
            self.annotate(
                text=text,
                x=sum(xs[col - 1]) / 2,
                xref="paper",
                xanchor="center",
                y=ys[0][1],
                yref="paper",
                yanchor="bottom",
                showarrow=False,
                font=dict(size=PANEL_TITLE_SIZE),
                name=PANEL,
            )

    @classmethod
    def of(cls, figure: go.Figure) -> Spec:
        """A figure built with plotly's own API (go.Figure or make_subplots, its subplots all
        x-y plots) as a Spec, to be laid out by finish: its traces and layout as plain dicts,
        on the grid make_subplots gave it, else one plot (none if it only holds tables)."""
        spec = cls.__new__(cls)
        spec.data = [t.to_plotly_json() for t in figure.data]  # copies, arrays left as they are
        spec.layout = figure.layout.to_plotly_json()
        tables = bool(spec.data) and all(t.get("type") == "table" for t in spec.data)
        grid = figure._grid_ref
        spec.rows, spec.cols = (len(grid), len(grid[0])) if grid else (0, 0) if tables else (1, 1)
        for n in spec.cells():
            spec.layout.setdefault(f"xaxis{n}", {})
            spec.layout.setdefault(f"yaxis{n}", {})
        return spec

    def _suffix(self, row: int, col: int) -> str:
        """'' for the first subplot, else its number: the end of its axis names."""
        k = (row - 1) * self.cols + col
        return "" if k == 1 else str(k)

    def cells(self, row: int | None = None, col: int | None = None) -> list[str]:
        """Axis name suffixes of the subplots in `row` and `col` (every one where None)."""
        return [
            self._suffix(r, c)
            for r in range(1, self.rows + 1)
            for c in range(1, self.cols + 1)
            if row in (None, r) and col in (None, c)
        ]

    def axes(self, letter: str, row: int | None = None, col: int | None = None) -> list[dict]:
        """The layout dicts of the x or y axes of the subplots in `row` and `col`."""
        return [self.layout[f"{letter}axis{n}"] for n in self.cells(row, col)]

    def update_axes(self, letters: str, row: int | None = None, col: int | None = None, **props):
        """Merge `props` into the axes ("x", "y" or "xy") of the subplots in `row` and `col`."""
        for letter in letters:
            for axis in self.axes(letter, row, col):
                merge(axis, props)

    def update(self, **props) -> None:
        """Merge `props` into the layout."""
        merge(self.layout, props)

    def add(self, trace: dict, row: int | None = None, col: int | None = None) -> None:
        """Append a trace, drawn on the subplot at (row, col) if given, else on the first."""
        if row is not None:
            n = self._suffix(row, col)
            trace |= {"xaxis": f"x{n}", "yaxis": f"y{n}"}
        self.data.append(trace)

    def annotate(self, **props) -> None:
        """Add a text annotation."""
        self.layout.setdefault("annotations", []).append(merge({}, props))

    def vline(self, x, line: dict, row: int | None = None, col: int | None = None) -> None:
        """A vertical line at x over the whole height of each subplot in `row` and `col`."""
        for n in self.cells(row, col):
            self._shape(x0=x, x1=x, xref=f"x{n}", y0=0, y1=1, yref=f"y{n} domain", line=line)

    def hline(self, y, line: dict) -> None:
        """A horizontal line at y over the whole width of every subplot."""
        for n in self.cells():
            self._shape(x0=0, x1=1, xref=f"x{n} domain", y0=y, y1=y, yref=f"y{n}", line=line)

    def _shape(self, **props) -> None:
        self.layout.setdefault("shapes", []).append(merge({"type": "line"}, props))

    def figure(self) -> go.Figure:
        """The go.Figure, unvalidated; it knows its subplot grid, for row= and col= selectors."""

        def ref(n: str) -> tuple:
            axes = {"xaxis": f"x{n}", "yaxis": f"y{n}"}
            return (SubplotRef("xy", (f"xaxis{n}", f"yaxis{n}"), axes),)

        grid = [[ref(n) for n in self.cells(row=row)] for row in range(1, self.rows + 1)]
        spec = {"data": self.data, "layout": self.layout, "_grid_ref": grid or None}
        return go.Figure(spec, _validate=False)


# ---------------------------------------------------------------- layout


def no_data(fig: Spec, text: str | None = None) -> None:
    """A centred note on an otherwise empty figure."""
    fig.annotate(
        text=text or "no data yet",
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font=dict(size=15),
        name=NOTE,
    )
    fig.update_axes("xy", showticklabels=False)  # no numbers on axes without data


def wrap(text: str, width: int = SUBTITLE_CHARS) -> str:
    """Text broken into lines of at most `width` characters, joined by <br> for plotly."""
    return "<br>".join(textwrap.wrap(text, width, break_on_hyphens=False))


def legend(fig: Spec, groupclick: str = "toggleitem") -> int:
    """Put the legend under the plot (horizontal, at the bottom of the figure, which plotly grows
    its bottom margin for, so it never overlaps the plot or an axis title) and return about how
    many px it takes in a half-width chart. Traces of one legendgroup (one run) stack in a column;
    columns, and ungrouped entries, go side by side and wrap when the next one does not fit.
    A click on an entry hides its trace ("toggleitem") or its whole group ("togglegroup")."""
    groups: dict[str, list[str]] = {}
    for k, entry in enumerate(fig.data):
        if entry.get("name") and entry.get("showlegend") is not False:
            groups.setdefault(entry.get("legendgroup") or f"#{k}", []).append(entry["name"])
    shown = sum(len(names) for names in groups.values()) >= 2
    fig.update(
        showlegend=shown,
        legend=dict(
            orientation="h",
            x=0,
            xanchor="left",
            y=0,
            yanchor="bottom",
            yref="container",
            font=dict(size=LEGEND_SIZE),
            groupclick=groupclick,
            tracegroupgap=LEGEND_GAP,
        ),
    )
    if not shown:
        return 0
    total = line = used = 0
    for names in groups.values():
        width = max(len(name) for name in names) * CHAR_PX + LEGEND_SYMBOL_PX
        if used and used + width > LEGEND_WIDTH:
            total, line, used = total + line + LEGEND_GAP, 0, 0
        used += width
        line = max(line, len(names) * LEGEND_ROW)
    return total + line + LEGEND_GAP


def log_ticks(fig: Spec | go.Figure, letter: str = "y") -> dict:
    """Log-axis ticks that stay readable: decades only (10⁻³, 10⁻², ...) when the data cross
    two or more of them, else 1-2-5 over at least half a decade and 1, 2, ..., 9 below that,
    each labelled with its whole value (0.5, not plotly's bare "5"), else the ends of the data.
    Reads the traces' values along `letter` ("x" or "y"; dicts of a Spec, or a go.Figure's
    trace objects)."""
    values = [
        np.asarray(t[letter], np.float64).ravel()
        for t in fig.data
        if letter in t and t[letter] is not None
    ]
    v = np.concatenate(values) if values else np.ones(1)
    v = np.log10(v[np.isfinite(v) & (v > 0)])
    lo, hi = (v.min(), v.max()) if len(v) else (0.0, 0.0)
    if math.floor(hi) - math.ceil(lo) >= 1:
        return dict(type="log", dtick=1, exponentformat="power")
    for digits in ((1, 2, 5) if hi - lo >= 0.5 else (), range(1, 10)):
        ticks = [
            float(f"{digit}e{power}")
            for power in range(math.floor(lo), math.ceil(hi) + 1)
            for digit in digits
            if lo - 0.01 <= power + math.log10(digit) <= hi + 0.01
        ]
        if len(ticks) >= 2:
            break
    else:
        ticks = sorted({float(f"{10**lo:.2g}"), float(f"{10**hi:.2g}")})
    return dict(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])


def tick_chars(fig: Spec) -> int:
    """About how many characters the longest y tick label takes: plotly's ticks are about a
    sixth of the range apart, written with the decimals that step needs; a log axis writes
    powers of ten (10⁻³) or the labels log_ticks chose. A histogram's counts are at most its
    number of values."""
    longest = 2
    for n in fig.cells():
        axis = fig.layout[f"yaxis{n}"]
        if "ticktext" in axis:
            longest = max(longest, *(len(text) for text in axis["ticktext"]))
            continue
        if axis.get("type") == "log":
            longest = max(longest, 5)
            continue
        ref = f"y{n}" if n else "y"
        ys = []
        for t in fig.data:
            if t.get("yaxis", "y") != ref or t.get("type") == "bar":
                continue
            if t.get("y") is not None:
                ys.append(np.asarray(t["y"], np.float64).ravel())
            elif t.get("type") == "histogram" and t.get("x") is not None:
                ys.append(np.array([0.0, np.size(t["x"])]))
        ys += [np.asarray(axis["range"], np.float64)] if "range" in axis else []
        y = np.concatenate(ys) if ys else np.zeros(1)
        y = y[np.isfinite(y)]
        if not len(y):
            continue
        lo, hi = float(y.min()), float(y.max())
        step = (hi - lo) / 6 or abs(hi) / 6 or 1.0
        decimals = max(0, -math.floor(math.log10(step)))
        chars = max(len(f"{v:.{decimals}f}") for v in (lo, hi))
        longest = max(longest, min(chars, 9))  # past that plotly writes 1.2e−5 or 12M
    return longest


def finish(
    fig: Spec,
    title: str,
    *,
    x_title: str | None = STEP_AXIS,
    y_title: str | list[str] | None = None,
    note: str | None = None,
    log_x: bool = False,
    log_y: bool = False,
    plot_height: int = PLOT_HEIGHT,
    panel_titles: bool = False,
    groupclick: str = "toggleitem",
) -> go.Figure:
    """Short title with the details (`note`) in a wrapped subtitle, axis titles (x under the
    bottom row; y left of each row, one title or one per row), the legend under the plot (see
    legend), projector-sized fonts, and a height that keeps `plot_height` px for the plot; then
    the go.Figure. Margins are set here rather than by plotly's automargin, which draws a chart
    twice whenever its tick labels change width: every refresh, while a run plays."""
    subtitle = wrap(note) if note else ""
    top = TITLE_PX + SUBTITLE_LINE_PX * max(SUBTITLE_LINES, subtitle.count("<br>") + 1)
    top += PANEL_TITLE_PX if panel_titles else 0
    titled = any(axis.get("title", {}).get("text") for axis in fig.axes("x"))
    bottom = (AXIS_PX if x_title or titled else TICKS_PX) + legend(fig, groupclick)
    if log_x:
        fig.update_axes("x", **log_ticks(fig, "x"))
    if log_y:
        fig.update_axes("y", **log_ticks(fig, "y"))
    left = 12 + TICK_CHAR_PX * tick_chars(fig) + (Y_TITLE_PX if y_title else 0)
    fig.update(
        title=dict(
            text=title,
            x=0,
            xanchor="left",
            xref="paper",
            y=1,
            yref="container",
            yanchor="top",
            pad=dict(t=8),
            font=dict(size=TITLE_SIZE),
            subtitle=dict(text=subtitle, font=dict(size=SUBTITLE_SIZE)),
        ),
        height=plot_height + top + bottom,
        margin=dict(l=left, r=16, t=top, b=bottom),
        hoverlabel=dict(font=dict(size=HOVER_SIZE)),
        bargap=fig.layout.get("bargap", 0),  # histograms: bins side by side
    )
    fig.update_axes(
        "xy",
        automargin=False,
        title=dict(font=dict(size=AXIS_TITLE_SIZE)),
        tickfont=dict(size=TICK_SIZE),
    )
    if x_title:
        fig.update_axes("x", row=fig.rows, title=dict(text=x_title))
    titles = [y_title] * fig.rows if isinstance(y_title, str) else (y_title or [])
    for row, text in enumerate(titles, 1):
        fig.update_axes("y", row=row, col=1, title=dict(text=text))
    return fig.figure()
