import collections
import os
from pathlib import Path

import pytest
import skip_guard
import torch

from bnviz import TrainConfig, Trainer

# Bugs in the page reach the tests as exceptions instead of a message (see bnviz.ui.page._guarded).
os.environ.setdefault("BNVIZ_RAISE", "1")

# A small, fast configuration that still records everything: 2 blocks, 40 steps.
SMALL = dict(widths=(8, 16), batch_size=32, steps=40, snapshot_every=4, eval_every=10)


def pytest_configure(config):
    skip_guard.install(config)  # in CI, a skip not on its allow-list fails the run


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


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


def check_explain_without_runs(scenario) -> None:
    """A scenario's explanation is text before the first step (with BN and without, alone and
    with a twin) and when there is no run at all."""
    for norm in ("batch", "none"):
        run = Trainer(TrainConfig(widths=(4,), steps=2, norm=norm)).run
        assert isinstance(scenario.explain({}, run, None), str)
        assert isinstance(scenario.explain({}, run, run), str)
    assert isinstance(scenario.explain({}, None, None), str)


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
