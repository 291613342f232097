"""What a classroom scenario is: preset controls, the view to open, extra experiments (jobs)
whose results are cached and shared, its conclusions computed as verdicts from those results
(bnviz/scenarios/evidence.py), figures that declare the results they draw, and an explanation
that quotes only what was measured. Plain Python: the UI runs the jobs and draws the figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go

from ..record import Run
from .common import placeholder

# Experiments per scenario, at most: each runs once per server, on the shared training queue,
# and only when the shipped results are stale. Sweeps are fixed in code (a user cannot ask for a
# larger one); tests hold every scenario to it. Five seeds of each compared variant.
MAX_JOBS = 100


@dataclass(frozen=True)
class Job:
    """One cached unit of work: fn(**kwargs) returns a JSON-ready dict (numbers, lists,
    strings). Jobs with the same function and arguments are computed once and shared by every
    session. Keep one job to a few seconds: the UI redraws after each."""

    label: str  # unique within its scenario; shown while it runs ("BatchNorm, lr 0.3")
    fn: Callable[..., dict]
    kwargs: tuple[tuple[str, Any], ...] = ()  # hashable values only (TrainConfig is hashable)

    @property
    def key(self) -> tuple:
        return (self.fn.__module__, self.fn.__qualname__, self.kwargs)

    def __call__(self) -> dict:
        return self.fn(**dict(self.kwargs))


def job(label: str, fn: Callable[..., dict], **kwargs) -> Job:
    """Job(label, fn, kwargs) with the keyword arguments in a fixed order."""
    return Job(label, fn, tuple(sorted(kwargs.items())))


Results = dict[str, dict]  # job label -> that job's result, for the jobs finished so far


@dataclass(frozen=True)
class Action:
    """A button in the scenario panel that measures something on the live main network,
    e.g. recomputing precise BatchNorm statistics. fn(trainer) returns a JSON-ready dict;
    render(result) turns it into markdown quoting the numbers."""

    label: str
    fn: Callable[[Any], dict]
    render: Callable[[dict], str]
    help: str = ""


@dataclass(frozen=True)
class Chart:
    """One scenario figure, declared: the job labels it draws from (prefixes: 'BatchNorm, lr'
    matches every seed of every lr) and draw(results) with only those results. Until one of them
    is in, the framework draws a placeholder with the same title and axes; a chart with no
    `needs` (published numbers) is drawn at once. draw may assume at least one result."""

    title: str
    draw: Callable[[Results], go.Figure]
    needs: tuple[str, ...] = ()
    x_title: str | None = None
    y_title: str | None = None

    def figure(self, results: Results) -> go.Figure:
        if not self.needs:
            return self.draw(results)
        mine = {label: r for label, r in results.items() if label.startswith(self.needs)}
        if not mine:
            return placeholder(self.title, self.x_title, self.y_title)
        return self.draw(mine)


@dataclass(frozen=True)
class Scenario:
    """One idea for the classroom. `preset` holds sidebar widget values by widget key (see
    CONTROLS in bnviz/ui/controls.py); `hidden` lists widget keys to hide by default."""

    id: str
    title: str
    summary: str  # one sentence: the question the scenario answers
    view: str  # the app view to open: Training, Activations, Running statistics, ...
    preset: dict = field(default_factory=dict)
    # the experiments beyond the live run; jobs(seeds=...) runs other seeds (a replication)
    jobs: Callable[..., list[Job]] = lambda seeds=None: []
    figures: tuple[Chart, ...] = ()
    # the conclusions, as data (evidence.Verdict), from the finished results; the explanation
    # quotes each verdict's text and the figures mark them
    verdicts: Callable[[Results], list] = lambda results: []
    explain: Callable[[Results, Run, Run | None], str] = lambda results, run, twin: ""
    # presenter mode: at most two short sentences (about 160 characters) with the main finding
    # and its key measured number, from the same numbers and verdicts as `explain`; with no
    # results yet, a line that claims no number ("Measuring…")
    takeaway: Callable[[Results, Run, Run | None], str] = lambda results, run, twin: ""
    actions: tuple[Action, ...] = ()
    hidden: tuple[str, ...] = ()

    def draw(self, results: Results) -> list[go.Figure]:
        """Every figure, from the finished results (placeholders for those not yet drawable)."""
        return [chart.figure(results) for chart in self.figures]
