"""The rule every scenario's verdicts follow (bnviz/scenarios/evidence.py), on numbers whose
answer is known: a difference holds only when the seeds agree and it exceeds its noise."""

import math

import pytest

from bnviz.scenarios import Chart, Scenario, job
from bnviz.scenarios.evidence import (
    MIN_SEEDS,
    Spread,
    across,
    agreeing,
    band,
    by_seed,
    compare,
    decide,
    final,
    plus_minus,
    rounded,
    seeded,
    sweep,
)


def verdict(a, b, **kw):
    return compare("k", "A beat B", "B beat A", dict(enumerate(a)), dict(enumerate(b)), **kw)


def test_agreeing_seeds_and_a_clear_difference_hold():
    v = verdict([0.8, 0.82, 0.79, 0.81, 0.8], [0.5, 0.52, 0.49, 0.5, 0.51], scale=100, unit=" pp")
    assert v.holds is True and v.agree == 5 and v.seeds == 5 and not v.pending
    assert v.text == ("A beat B in 5 of 5 seeds (+30.0 ± 0.3 pp, mean ± s.e.).")
    assert v.mark == "5/5 seeds agree"


def test_the_opposite_direction_is_reported_as_such():
    v = verdict([0.1, 0.2, 0.1, 0.15, 0.1], [0.5, 0.62, 0.5, 0.55, 0.48])
    assert v.holds is False and v.against == 5
    assert v.text.startswith("B beat A in 5 of 5 seeds (+0.400 ± 0.006, mean ± s.e.)")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([0.6, 0.4, 0.6, 0.4, 0.6], [0.5] * 5),  # 3 of 5 agree
        ([0.51, 0.51, 0.51, 0.51, 0.2], [0.5] * 5),  # 4 of 5 agree, but the mean is in the noise
        ([0.6] * 4, [0.5] * 4),  # fewer than five seeds: still measuring
    ],
)
def test_disagreeing_or_noisy_or_too_few_seeds_are_not_a_finding(a, b):
    v = verdict(a, b)
    assert v.holds is None
    assert ("Still measuring" in v.text) == (len(a) < MIN_SEEDS)
    if len(a) >= MIN_SEEDS:
        assert "Not distinguishable at this scale" in v.text


def test_four_of_five_with_a_clear_mean_holds():
    assert decide([3.0, 2.5, 3.2, 2.8, -0.1]) is True
    assert agreeing(5) == 4 and agreeing(10) == 8 and agreeing(3) == 3


def test_a_seed_without_a_number_agrees_with_neither_side():
    v = verdict([0.9, 0.9, 0.9, math.nan, 0.9], [0.1] * 5)
    assert v.seeds == 5 and v.agree == 4 and v.against == 0 and v.holds is True
    v = verdict([0.9, 0.9, math.nan, math.nan, 0.9], [0.1] * 5)
    assert v.holds is None  # 3 of 5


def test_a_threshold_is_compared_seed_by_seed():
    v = compare("k", "it learned", "it did not learn", dict(enumerate([0.6] * 5)), 0.2)
    assert v.holds is True and v.diffs == pytest.approx((0.4,) * 5)


def test_numbers_carry_no_more_digits_than_their_spread():
    assert plus_minus(62.347, 2.1, "%") == "62 ± 2%"
    assert plus_minus(0.41234, 0.0123) == "0.41 ± 0.01"
    assert plus_minus(12.0, 0.5, sign=True) == "+12.0 ± 0.5"
    assert plus_minus(0.4, 1e-17) == "0.400 ± 0.000"  # three significant digits at most
    assert plus_minus(1036, 118, "%", sign=True) == "+1000 ± 100%"
    assert plus_minus(-0.3, 1.2) == "0 ± 1" and rounded(-0.04, 0.3, sign=True) == "0.0"
    assert rounded(62.347, 2.1) == "62" and rounded(math.nan, 1) == "n/a"
    s = Spread.of([1.0, 2.0, 3.0, math.nan])
    assert (s.mean, s.n) == (2.0, 3) and s.sd == pytest.approx(1.0)
    assert s.text() == "2 ± 1"


def test_final_accuracy_averages_the_last_evaluations():
    assert final([0.1, 0.5, 0.6, 0.7]) == pytest.approx(0.6)
    assert final([0.1, math.nan, 0.5], last=2) == pytest.approx(0.3)
    assert math.isnan(final([]))


def test_bands_are_mean_and_one_standard_deviation_per_step():
    mean, low, high = band([[1.0, 2.0], [3.0, math.nan]])
    assert mean.tolist() == [2.0, 2.0]
    assert low[0] == pytest.approx(2 - math.sqrt(2)) and math.isnan(low[1])


def half(x: float, seed: int) -> dict:
    return {"x": x + seed}


def test_a_sweep_labels_its_seeds_and_results_are_read_back_by_seed():
    jobs = sweep("BN, lr 1", half, seeds=(3, 1), x=1.0)
    assert [j.label for j in jobs] == [seeded("BN, lr 1", 3), "BN, lr 1, seed 1"]
    results = {j.label: j() for j in jobs} | {"BN, lr 10, seed 0": {"x": 9.0}}
    assert list(by_seed(results, "BN, lr 1")) == [1, 3]
    assert across(results, "BN, lr 1", "x") == {1: 2.0, 3: 4.0}
    assert across(results, "BN, lr 1", lambda r: -r["x"]) == {1: -2.0, 3: -4.0}


def test_a_chart_draws_a_placeholder_until_its_results_are_in():
    import plotly.graph_objects as go

    drawn = []

    def draw(results):
        drawn.append(sorted(results))
        return go.Figure(go.Scatter(y=[1]))

    scenario = Scenario(
        "toy",
        "Toy",
        "",
        "Training",
        jobs=lambda seeds=(0,): [job("a, seed 0", half, x=1.0, seed=0)],
        figures=(Chart("A", draw, needs=("a,",), x_title="x"), Chart("B", draw)),
    )
    empty = scenario.draw({"other": {}})
    assert "measuring" in str(empty[0].layout.annotations) and drawn == [["other"]]
    scenario.draw({"a, seed 0": {"x": 1}, "other": {}})
    assert drawn[-2:] == [["a, seed 0"], ["a, seed 0", "other"]]
