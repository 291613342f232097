import collections
import errno
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import skip_guard
import torch

from bnviz import TrainConfig, Trainer
from bnviz import figures as F

# Bugs in the page reach the tests as exceptions instead of a message (see bnviz.ui.page._guarded).
os.environ.setdefault("BNVIZ_RAISE", "1")

# A small, fast configuration that still records everything: 2 blocks, 40 steps.
SMALL = dict(widths=(8, 16), batch_size=32, steps=40, snapshot_every=4, eval_every=10)


def pytest_configure(config):
    skip_guard.install(config)  # in CI, a skip not on its allow-list fails the run


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_run_tree(monkeypatch):
    """Each test starts on a server of its own: no branch, share code or figure of another."""
    from bnviz import runtree
    from bnviz.cache import SharedCache
    from bnviz.ui import scenario_panel
    from bnviz.ui.views import common

    monkeypatch.setattr(runtree, "tree", runtree.RunTree())
    monkeypatch.setattr(runtree, "leads", runtree.Leads())
    for module in (common, scenario_panel):  # nor any figure drawn for another test's records
        monkeypatch.setattr(module, "_drawn", SharedCache(max_items=64, logged=False))


@pytest.fixture
def stepped(monkeypatch):
    """A condition notified after every training step of any run, and when a test's training
    thread ends: wait on it (wait_for) instead of sleeping and polling."""
    import threading

    from bnviz.trainer import Lockstep

    condition, step = threading.Condition(), Lockstep.step

    def notifying(self, n=1):
        try:
            return step(self, n)
        finally:
            with condition:
                condition.notify_all()

    monkeypatch.setattr(Lockstep, "step", notifying)
    return condition


LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")


def _loopback(host) -> bool:
    return isinstance(host, str) and (host.startswith(LOOPBACK) or host == "")


@pytest.fixture(scope="session", autouse=True)
def _no_network(tmp_path_factory):
    """Tests never reach the network: an empty data cache, and any connection or name lookup
    beyond loopback fails as it does offline (a link to cifar10 falls back to 'shapes' with
    the offline message). Tests of the download code serve files from 127.0.0.1."""
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def refuse(address):
        if isinstance(address, tuple) and not _loopback(address[0]):
            raise OSError(errno.ENETUNREACH, f"tests do not reach the network ({address[0]})")

    def connect(self, address):
        refuse(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        refuse(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not _loopback(name):
            raise socket.gaierror(socket.EAI_NONAME, f"tests do not look up {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BNVIZ_DATA_DIR", str(tmp_path_factory.mktemp("bnviz-data")))
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket.socket, "connect_ex", connect_ex)
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        yield


@pytest.fixture(scope="session")
def small_trainer() -> Trainer:
    """A finished SMALL run; tests must not step it further."""
    trainer = Trainer(TrainConfig(**SMALL))
    trainer.step(SMALL["steps"])
    return trainer


def check_preset(scenario) -> None:
    """A scenario's preset holds only values a sidebar control accepts (each survives the
    app's own parse() as the text a link would carry, unchanged and of the same type), and
    its view is one the app has."""
    from bnviz.ui.controls import CONTROLS, parse, to_text
    from bnviz.ui.links import VIEWS

    for key, value in scenario.preset.items():
        assert key in CONTROLS, key
        parsed = parse(key, to_text(value))
        assert parsed == value and type(parsed) is type(value), (key, value, parsed)
    assert scenario.view in VIEWS, scenario.view


PLACEHOLDERS = ("todo", "tbd", "placeholder", "lorem", "xxx", "fixme")


def check_explanation(text) -> None:
    """An explanation a student can read: sentences of real words, not an empty string or a
    placeholder left in the code."""
    assert isinstance(text, str), type(text)
    words = text.split()
    assert len(words) >= 8 and len(text.strip()) >= 40, f"too short to explain: {text!r}"
    assert text.rstrip()[-1] in ".:)*!?…", f"not a finished sentence: {text!r}"
    low = text.lower()
    assert not any(re.search(rf"\b{p}\b", low) for p in PLACEHOLDERS), f"a placeholder: {text!r}"


def check_explain_without_runs(scenario) -> None:
    """A scenario's explanation is readable text before the first step (with BN and without,
    alone and with a twin) and when there is no run at all."""
    for norm in ("batch", "none"):
        run = Trainer(TrainConfig(widths=(4,), steps=2, norm=norm)).run
        check_explanation(scenario.explain({}, run, None))
        check_explanation(scenario.explain({}, run, run))
    check_explanation(scenario.explain({}, None, None))


def check_layout(fig) -> None:
    """The layout the plotting kit (bnviz.plot.finish) gives every figure, the run figures' and
    the scenarios': a short title and a subtitle in its fonts, the legend under the plot at the
    bottom of the figure, its fonts on every axis, margins it set itself (plotly's automargin
    off), room for a two-line subtitle, and PLOT_HEIGHT px or more for the plot."""
    from bnviz import plot

    layout = fig.layout
    title = layout.title
    assert len(title.text) <= 45 and title.font.size == plot.TITLE_SIZE, title.text
    assert (title.x, title.xanchor, title.yref) == (0, "left", "container")
    assert title.subtitle.font.size == plot.SUBTITLE_SIZE and not title.automargin
    lines = (title.subtitle.text or "").split("<br>")
    assert all(len(line) <= plot.SUBTITLE_CHARS for line in lines), title.subtitle.text
    legend = layout.legend
    assert (legend.orientation, legend.x, legend.xanchor, legend.y, legend.yanchor) == (
        "h", 0, "left", 0, "bottom",
    )  # fmt: skip
    assert legend.yref == "container" and legend.font.size == plot.LEGEND_SIZE
    margin = layout.margin
    assert None not in (margin.l, margin.r, margin.t, margin.b), margin
    assert margin.t >= plot.TITLE_PX + plot.SUBTITLE_LINES * plot.SUBTITLE_LINE_PX
    assert layout.height - margin.t - margin.b >= plot.PLOT_HEIGHT
    axes = [key for key in layout.to_plotly_json() if key.startswith(("xaxis", "yaxis"))]
    assert axes or all(t.type == "table" for t in fig.data)  # a table has none
    for axis in (layout[key] for key in axes):
        assert axis.automargin is False and axis.tickfont.size == plot.TICK_SIZE
        assert axis.title.font.size == plot.AXIS_TITLE_SIZE


APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_app(**params):
    """The app in AppTest, opened with these query parameters, after its first run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


# What the suite tried, printed at the end of every run (fuzz cases, hostile inputs, ...).
TALLY: collections.Counter = collections.Counter()


def pytest_terminal_summary(terminalreporter):
    if TALLY:
        tried = ", ".join(f"{count} {what}" for what, count in sorted(TALLY.items()))
        stats = terminalreporter.stats
        failed = len(stats.get("failed", [])) + len(stats.get("error", []))
        terminalreporter.write_line(f"tried: {tried}; failed tests: {failed}")


def batch_noise():
    """A batch-noise measurement of four batches, for batch_noise_figure."""
    from bnviz.measure import BatchNoise

    return BatchNoise(
        layer=1, channel=3, batch_size=8, batch_means=np.array([0.1, 0.3, 0.2, 0.4]),
        batch_vars=np.array([1.0, 1.5, 0.5, 1.2]), full_mean=0.25, full_var=1.1,
    )  # fmt: skip


# Every run figure, as the views draw it: (main run, twin or None) -> figure.
RUN_FIGURES = {
    "loss": F.loss_figure,
    "accuracy": F.accuracy_figure,
    "histogram": lambda m, t: F.histogram_figure(m, 1, -1),
    "channel histogram": lambda m, t: F.histogram_figure(m, 0, -1, channel=0),
    "percentile": lambda m, t: F.percentile_figure(m, 1, t),
    "saturation": F.saturation_figure,
    "running_stats": lambda m, t: F.running_stats_figure(m, 0, 0),
    "affine": lambda m, t: F.affine_figure(m, 1),
    "gain": lambda m, t: F.gain_figure(m, 1),
    "grad_norm": F.grad_norm_figure,
    "update_ratio": F.update_ratio_figure,
    "eval_gap": F.eval_gap_figure,
    "batch_noise": lambda m, t: F.batch_noise_figure(batch_noise()),
}
