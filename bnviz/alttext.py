"""Text alternatives of figures: what a chart shows, said in words, for screen readers (the
app passes it as st.plotly_chart's alt). Read from the figure itself (a go.Figure or a plot.Spec):
its title, what its axes show, the latest value of each series, its notes and the labels on
its time axis, so every figure gets one without a hand-written string."""

from __future__ import annotations

import base64
import math
import re

import numpy as np

from .plot import MARK, NOTE, PANEL, Spec

MAX_LISTED = 8  # series a description names one by one; more are summarized
MAX_MARKS = 3  # labels on the time axis a description names
MAX_DESCRIPTION = 700  # characters: a text alternative is read out whole


def _plain(text) -> str:
    """Plotly text as plain text: line breaks as spaces, no tags."""
    text = re.sub(r"<br\s*/?>", " ", str(text or ""))
    return " ".join(re.sub(r"<[^>]+>", "", text).split())


def _values(value) -> np.ndarray:
    """A trace's data array (plotly's typed-array form {"dtype", "bdata"} decoded)."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        return flat.reshape(value["shape"]) if "shape" in value else flat
    return np.asarray(value if value is not None else [])


def _numeric(values: np.ndarray) -> np.ndarray | None:
    """The values as floats, or None when they are categories (text)."""
    if values.dtype.kind in "biuf":
        return values.astype(np.float64, copy=False)
    try:
        return values.astype(np.float64)
    except (TypeError, ValueError):
        return None


def number(value) -> str:
    """A value for reading out: about 3 significant digits, whole numbers as they are."""
    if isinstance(value, str):
        return value
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == round(value) and abs(value) < 1e6:
        return str(int(value))
    if 1000 <= abs(value) < 1e6:
        return str(round(value))
    return f"{value:.3g}"


def _title(layout: dict, key: str) -> str:
    title = layout.get(key, {}).get("title")
    return _plain(title.get("text") if isinstance(title, dict) else title)


def _short(axis_title: str) -> str:
    """An axis title without its details: 'step (optimizer steps)' -> 'step'."""
    return axis_title.split(" (")[0].split(",")[0]


def _figure_dicts(fig) -> tuple[list[dict], dict]:
    """A Spec's or go.Figure's traces and layout as plain dicts, read in place (a go.Figure
    keeps them in _data and _layout: to_dict would copy every array)."""
    if isinstance(fig, Spec):
        return fig.data, fig.layout
    data, layout = getattr(fig, "_data", None), getattr(fig, "_layout", None)
    if data is None or layout is None:
        json = fig.to_plotly_json()
        data, layout = json["data"], json["layout"]
    return data, layout


def describe(fig) -> str:
    """A text alternative of a figure (a go.Figure or Spec), read from the figure itself: its
    title, what its axes show, and the latest value of each series (its last finite point,
    with its x), summarized when there are more than MAX_LISTED; bars and histograms by their
    range and peak, a table by its columns; then its notes ('no data yet') and the labels on
    its time axis. At most MAX_DESCRIPTION characters; about a millisecond."""
    data, layout = _figure_dicts(fig)
    annotations = layout.get("annotations") or []
    panels = [_plain(a.get("text")) for a in annotations if a.get("name") == PANEL]
    x_axes = sorted(k for k in layout if re.fullmatch(r"xaxis\d*", k))
    if len(panels) != len(x_axes):
        panels = []
    titled = [_title(layout, k) for k in x_axes if _title(layout, k)]
    x_name = _short(titled[0]) if titled else ""
    sentences = [
        _plain(
            layout.get("title", {}).get("text")
            if isinstance(layout.get("title"), dict)
            else layout.get("title")
        )
        or "Chart"
    ]
    y_titles = list(
        dict.fromkeys(
            t for k in sorted(layout) if re.fullmatch(r"yaxis\d*", k) and (t := _title(layout, k))
        )
    )
    if y_titles:
        against = f" against {x_name}" if x_name else ""
        sentences.append(f"Plotted: {' and '.join(y_titles)}{against}")
    series: dict[str, list] = {}  # label -> [(x, y latest), ...] of its lines
    others: list[str] = []
    edge: list = []  # the lines of the trace before, which a band (fill="tonexty") starts from
    for t in data:
        kind = t.get("type", "scatter")
        ref = str(t.get("xaxis", "x"))[1:]
        panel = panels[int(ref or 1) - 1] if panels else ""
        name = _plain(t.get("name"))
        named = panel and name and len(panels) > 1 and not name.startswith(panel)  # not twice
        label = f"{panel}: {name}" if named else name or panel
        label = label or _title(layout, f"yaxis{str(t.get('yaxis', 'y'))[1:]}") or "values"
        if kind == "table":
            header = _values((t.get("header") or {}).get("values"))
            cells = (t.get("cells") or {}).get("values") or [[]]
            columns = ", ".join(_plain(h) for h in header.ravel())
            others.append(f"A table of {len(cells[0])} rows; columns: {columns}")
        elif kind == "heatmap":
            z = _numeric(_values(t.get("z")))
            z = z[np.isfinite(z)] if z is not None else np.zeros(0)
            if len(z):
                label = name or panel or "an image"
                others.append(f"{label}: {z.size} pixels, values {_span(z)}")
        elif kind == "histogram":
            v = _numeric(_values(t.get("x")))
            v = v[np.isfinite(v)] if v is not None else np.zeros(0)
            if len(v):
                counts, edges = np.histogram(v, bins=int(t.get("nbinsx") or 20))
                k = int(counts.argmax())
                peak = number((edges[k] + edges[k + 1]) / 2)
                others.append(f"{label}: {len(v)} values {_span(v)}, most near {peak}")
        elif kind == "bar":
            others.append(_bars(label, t, x_name))
        elif t.get("y") is not None:
            lines: list = []
            _latest(lines, t)
            if t.get("fill") == "tonexty" and len(lines) == len(edge):
                lines = [(x, (lo, y)) for (_, lo), (x, y) in zip(edge, lines)]  # a band
            if t.get("showlegend") is False and t.get("hoverinfo") == "skip":
                edge = lines  # a band's lower edge, drawn for the band alone
                continue
            series.setdefault(label, []).extend(lines)
        edge = []
    sentences += _series_sentences(series, x_name)
    sentences += [s for s in others if s]
    notes = [_plain(a.get("text")) for a in annotations if a.get("name") == NOTE]
    sentences += [n for n in notes if n]
    marks = [(a.get("x"), _plain(a.get("text"))) for a in annotations if a.get("name") == MARK]
    if marks:
        where = x_name or "x"
        shown = "; ".join(f"{text} at {where} {number(x)}" for x, text in marks[:MAX_MARKS])
        more = f" and {len(marks) - MAX_MARKS} more" if len(marks) > MAX_MARKS else ""
        sentences.append(f"Marked: {shown}{more}")
    text = " ".join(s.rstrip(".") + "." for s in sentences)
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1].rstrip() + "…"


def _latest(lines: list, t: dict) -> None:
    """Append (x, y) of the last finite point of each line of scatter trace t (a trace may hold
    several lines separated by NaN x gaps)."""
    y = _numeric(_values(t.get("y")))
    if y is None or not len(y):
        return
    x = _values(t.get("x")) if t.get("x") is not None else np.arange(len(y))
    xn = _numeric(x)
    ok = np.isfinite(y)
    if xn is not None and len(xn) == len(y):
        gaps = np.flatnonzero(np.isnan(xn))
        ok &= np.isfinite(xn)
    else:
        gaps = np.zeros(0, dtype=int)
    starts = np.r_[0, gaps + 1]
    ends = np.r_[gaps, len(y)]
    for a, b in zip(starts, ends):
        idx = np.flatnonzero(ok[a:b])
        if len(idx):
            k = a + idx[-1]
            lines.append((x[k] if xn is None else xn[k], y[k]))


def _series_sentences(series: dict[str, list], x_name: str) -> list[str]:
    """The latest values of the series: each named, or summarized when there are many."""
    series = {label: lines for label, lines in series.items() if lines}
    if not series:
        return []
    where = f"{x_name} " if x_name else ""
    xs = {str(x) for lines in series.values() for x, _ in lines}
    same_x = len(xs) == 1
    total = sum(len(lines) for lines in series.values())
    if len(series) > MAX_LISTED:
        ys = np.array([np.max(y) for lines in series.values() for _, y in lines], np.float64)
        labels = list(series)
        at = _at(where, [x for lines in series.values() for x, _ in lines])
        return [f"{total} lines ({labels[0]} … {labels[-1]}), latest {_span(ys)} {at}"]
    parts = []
    for label, lines in series.items():
        if len(lines) == 1:
            x, y = lines[0]
            at = "" if same_x or str(x) == label else f" at {where}{number(x)}"
            parts.append(f"{label} {_value(y)}{at}")
        else:
            ys = np.array([np.max(y) for _, y in lines], dtype=np.float64)
            at = "" if same_x else " " + _at(where, [x for x, _ in lines])
            parts.append(f"{label}: {len(lines)} lines, latest {_span(ys)}{at}")
    head = (
        f"Latest at {where}{number(next(iter(series.values()))[0][0])}: " if same_x else "Latest: "
    )
    return [head + "; ".join(parts)]


def _value(y) -> str:
    """A latest value, or a band's 'lo to hi'."""
    return f"{number(y[0])} to {number(y[1])}" if isinstance(y, tuple) else number(y)


def _span(values: np.ndarray) -> str:
    """'from 0.1 to 2.3' (or 'all 1' when they round alike)."""
    lo, hi = number(np.min(values)), number(np.max(values))
    return f"all {lo}" if lo == hi else f"from {lo} to {hi}"


def _at(where: str, xs: list) -> str:
    """'at step 20', or 'at step 10 to 20' when the lines end at different x."""
    try:
        values = np.asarray(xs, dtype=np.float64)
        lo, hi = number(values.min()), number(values.max())
    except (TypeError, ValueError):
        lo, hi = str(xs[0]), str(xs[-1])
    return f"at {where}{lo}" if lo == hi else f"at {where}{lo} to {hi}"


def _bars(label: str, t: dict, x_name: str) -> str:
    """A bar trace: each bar when they are few, else how many, over what range, and the peak."""
    y = _numeric(_values(t.get("y")))
    x = _values(t.get("x")) if t.get("x") is not None else np.arange(len(y) if y is not None else 0)
    if y is None or not len(y):
        return ""
    ok = np.isfinite(y)
    if not ok.any():
        return ""
    xn = _numeric(x)
    if len(y) <= MAX_LISTED:
        return f"{label}: " + ", ".join(
            f"{_plain(x[k]) if xn is None else number(xn[k])} {number(y[k])}"
            for k in np.flatnonzero(ok)
        )
    k = int(np.nanargmax(np.where(ok, y, -np.inf)))
    where = f"{x_name} " if x_name else ""
    span = (
        f" over {where}{number(np.nanmin(xn))} to {number(np.nanmax(xn))}" if xn is not None else ""
    )
    peak = _plain(x[k]) if xn is None else number(xn[k])
    return f"{label}: {int(ok.sum())} bars{span}, highest {number(y[k])} at {where}{peak}"
