"""Scenario texts that quote a periodic measurement name the step it came from."""

import pytest

from bnviz import Lockstep, TrainConfig
from bnviz.scenarios import SCENARIOS

# each quotes the live run's latest test accuracy
QUOTING_ACCURACY = ("high-lr", "momentum-lag", "tiny-batches", "norm-family", "placement")


@pytest.fixture(scope="module")
def runs():
    """30 steps: the latest test accuracy is step 25's, the latest step is 30."""
    config = TrainConfig(widths=(4, 8), steps=100)
    lock = Lockstep([config, config.replace(norm="none")])
    lock.step(30)
    assert [r.eval_steps[-1] for r in lock.runs] == [25, 25]
    return lock.runs


@pytest.mark.parametrize("scenario_id", QUOTING_ACCURACY)
def test_live_accuracy_is_quoted_with_its_step(scenario_id, runs):
    run, twin = runs
    text = SCENARIOS[scenario_id].explain({}, run, twin)
    acc = run.acc_running_stats[-1]
    quoted = [f"{value:.1%}"[:-1] for value in (acc, 1 - acc)]  # accuracy or error
    assert any(number in text for number in quoted)  # the number is quoted...
    assert "step 25" in text  # ...with the step it was measured at
