import numpy as np

from bnviz import TrainConfig, Trainer
from bnviz.scenarios import SCENARIOS
from bnviz.scenarios.basics import SCENARIO, _spread


def test_explanation_quotes_the_live_histograms(small_trainer):
    run = small_trainer.run
    text = SCENARIO.explain({}, run, None)
    pre_mean, pre_std = _spread(run, 0, "pre_norm", -1)
    post_mean, post_std = _spread(run, 0, "post_norm", -1)
    for value in (pre_std, post_std):
        assert f"{value:.3g}" in text
    assert f"{run.snapshots[0].saturated_fraction[-1]:.0%}" in text
    assert f"At step {run.snapshots[0].steps[-1]}" in text
    # BN output is close to zero mean and unit spread at the start, whatever the input scale
    assert abs(post_mean) < 0.5 and 0.5 < post_std < 2


def test_spread_matches_a_direct_computation():
    trainer = Trainer(TrainConfig(widths=(4,), batch_size=8, steps=2, snapshot_every=1))
    run = trainer.step(1)
    snaps = run.snapshots[0]
    edges = np.asarray(snaps.edges["post_act"], dtype=float)
    counts = np.asarray(snaps.hist["post_act"][0], dtype=float)
    centres = (edges[:-1] + edges[1:]) / 2
    assert _spread(run, 0, "post_act", 0)[0] == np.average(centres, weights=counts)


def test_registered_and_waiting_text_before_any_step():
    assert SCENARIOS["bn-basics"] is SCENARIO
    run = Trainer(TrainConfig(widths=(4,), steps=2)).run
    assert "Press **Play**" in SCENARIO.explain({}, run, None)
