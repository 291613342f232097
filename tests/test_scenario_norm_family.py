"""The norm-family scenario: five normalizations on the same batches and initial weights; the
verdicts and the table follow per-seed numbers whose answer is known."""

import numpy as np
import pytest
from conftest import check_explain_without_runs, check_layout, check_preset

from bnviz import Lockstep, TrainConfig
from bnviz.config import NORM_NAMES
from bnviz.experiments import common as xcommon
from bnviz.experiments import norm_family as experiment
from bnviz.scenarios import common
from bnviz.scenarios import norm_family as nf
from bnviz.scenarios.evidence import REPLICATION_SEEDS, SEEDS
from bnviz.scenarios.norm_family import NORMS, SCENARIO

SMALL = dict(steps=30, widths=(8, 16))


@pytest.fixture(scope="module")
def runs():
    return {f"{NORM_NAMES[n]}, seed 0": experiment.train_norm(n, seed=0, **SMALL) for n in NORMS}


def test_id_preset_and_jobs():
    assert SCENARIO.id == "norm-family"
    check_preset(SCENARIO)
    assert SCENARIO.preset["twin"] in ("layer", "group") and SCENARIO.view == "Training"
    jobs = SCENARIO.jobs()
    assert len({j.label for j in jobs}) == len(jobs) == len(NORMS) * len(SEEDS)
    assert {dict(j.kwargs)["norm"] for j in jobs} == set(NORMS)
    assert {dict(j.kwargs)["seed"] for j in SCENARIO.jobs(seeds=REPLICATION_SEEDS)} == set(
        REPLICATION_SEEDS
    )
    hash(tuple(j.key for j in jobs))


def test_a_job_equals_the_same_config_in_lockstep(runs):
    configs = [
        TrainConfig(
            norm=n, batch_size=experiment.BATCH_SIZE, eval_every=min(experiment.EVAL_EVERY, 30),
            snapshot_every=30, **SMALL,
        )
        for n in ("batch", "group")
    ]  # fmt: skip
    lock = Lockstep(configs)
    lock.step(30)
    for config, run in zip(configs, lock.runs):
        job = runs[f"{NORM_NAMES[config.norm]}, seed 0"]
        assert job["acc_running"] == pytest.approx(xcommon.float_list(run.acc_running_stats))
        assert job["loss"] == pytest.approx(xcommon.loss_curve(run)[1])
    for norm in NORMS:  # only BatchNorm has running statistics to differ from
        job = runs[f"{NORM_NAMES[norm]}, seed 0"]
        assert (job["acc_batch"] == job["acc_running"]) == (norm != "batch")


# ---------------------------------------------------------------- verdicts on known numbers


SWING = (-0.02, -0.01, 0.0, 0.01, 0.02)


def _run(norm: str, seed: int, acc: float) -> dict:
    """A finished run whose last five evaluations average to `acc`."""
    batch = acc + 0.02 + 0.005 * (seed % 2) if norm == "batch" else acc
    return {
        "norm": norm,
        "seed": seed,
        "widths": [8, 16, 32],
        "steps": 400,
        "eval_steps": [0, 300, 325, 350, 375, 400],
        "acc_running": [0.1, *(acc + d for d in SWING)],
        "acc_batch": [0.1, *(batch + d for d in SWING)],
        "loss_steps": [5, 10],
        "loss": [2.0, 1.0],
        "final_loss": 1.0 - acc,
    }


def fake(**accs) -> dict:
    """Five seeds per normalization: norm=[acc of seed 0, ..., seed 4]."""
    return {
        f"{NORM_NAMES[n]}, seed {s}": _run(n, s, a) for n, values in accs.items()
        for s, a in enumerate(values)
    }  # fmt: skip


NONE = [0.55, 0.60, 0.50, 0.62, 0.56]
ORDERED = fake(
    batch=[0.80, 0.81, 0.79, 0.82, 0.80],
    group=[0.75, 0.77, 0.74, 0.76, 0.74],
    layer=[0.70, 0.71, 0.68, 0.72, 0.69],
    instance=[0.65, 0.67, 0.64, 0.66, 0.65],
    none=NONE,
)


def test_verdicts_hold_when_every_seed_agrees():
    found = {v.key: v for v in SCENARIO.verdicts(ORDERED)}
    assert set(found) == {
        "batch-beats-none",
        "group-beats-none",
        "layer-beats-none",
        "instance-beats-none",
        "batch-beats-group",
        "group-beats-layer",
        "layer-beats-instance",
    }
    assert all(v.holds is True and v.agree == 5 for v in found.values())
    assert found["batch-beats-none"].spread.mean == pytest.approx(23.8)  # points
    text = SCENARIO.explain(ORDERED, None, None)
    assert text.startswith("All of these compute")  # Wu & He's order reproduced


def test_mixed_seeds_are_not_distinguishable_and_the_first_sentence_says_so():
    close = [0.80, 0.70, 0.82, 0.69, 0.78]  # GroupNorm against BatchNorm: 2 of 5 seeds
    results = fake(
        batch=[0.80, 0.81, 0.79, 0.82, 0.80],
        group=close,
        layer=[0.50, 0.51, 0.49, 0.52, 0.50],
        instance=[0.45, 0.46, 0.44, 0.47, 0.45],
        none=NONE,
    )
    found = {v.key: v for v in SCENARIO.verdicts(results)}
    assert found["batch-beats-group"].holds is None
    assert found["layer-beats-none"].holds is False  # no norm ahead in every seed
    text = SCENARIO.explain(results, None, None)
    first = text.split(". ")[0]
    assert first.startswith("Not reproduced here: Wu & He's order at 32 images per GPU")
    assert "BatchNorm ahead of GroupNorm (23.6% vs 24.1% error; here not distinguishable)" in text
    assert "Not distinguishable at this scale" in text
    assert "come out either way on BatchNorm vs GroupNorm. These are fragile" in text
    assert "fragile" not in SCENARIO.explain(ORDERED, None, None)
    take = SCENARIO.takeaway(results, None, None)
    assert "ahead: BN, GN; behind: LN, IN." in take
    assert take.endswith("BatchNorm vs GroupNorm at batch 32: not distinguishable.")


def test_explain_quotes_every_verdict_spreads_and_published_numbers():
    text = SCENARIO.explain(ORDERED, None, None)
    for v in SCENARIO.verdicts(ORDERED):
        assert v.text in text
    assert "BatchNorm 80 ± 1%" in text  # mean ± sd of the five seeds' final accuracies
    assert "the evaluations at steps 300, 325, 350, 375, 400" in text
    assert "eval mode was 2.2 ± 0.3 points" in text  # BatchNorm's batch-statistics gap
    assert "Published, ResNet-50 on ImageNet" in text and "not ours" in text
    assert "23.6%" in text and "34.7%" in text


def test_without_all_seeds_nothing_is_claimed(runs):
    assert all(v.pending for v in SCENARIO.verdicts({}))
    assert "being measured" in SCENARIO.explain({}, None, None)
    assert "Measuring" in SCENARIO.takeaway({}, None, None)
    text = SCENARIO.explain(runs, None, None)
    assert "Still measuring (1 of 5 seeds" in text
    assert f"{len(NORMS) * (len(SEEDS) - 1)} run(s) still being measured" in text
    check_explain_without_runs(SCENARIO)


def test_takeaway_names_the_verdicts():
    take = SCENARIO.takeaway(ORDERED, None, None)
    assert take == (
        "Against no norm over 5 seeds, ahead: BN, GN, LN, IN. BatchNorm vs GroupNorm at batch "
        "32: BN ahead."
    )


# ---------------------------------------------------------------- table and figures


def test_table_rows_are_mean_and_sd_over_seeds():
    rows = nf.table_rows(ORDERED)
    assert [r["norm"] for r in rows] == [NORM_NAMES[n] for n in NORMS]
    batch = rows[NORMS.index("batch")]
    assert batch["acc"] == "80 ± 1%" and batch["seeds"] == "5"
    assert batch["gap"] == "2.2 ± 0.3 pp"  # batch statistics minus running statistics
    assert rows[NORMS.index("none")]["gap"] == "none: no running statistics"
    assert "N, H, W" in batch["over"] and "C, H, W" in rows[NORMS.index("layer")]["over"]
    assert "per sample and channel" in rows[NORMS.index("instance")]["over"]
    assert "a group of channels (here 2, 2, 2 channels" in rows[NORMS.index("group")]["over"]
    empty = nf.table_rows({})
    assert all(r["acc"] == common.MEASURING for r in empty)


def test_figures_empty_partial_and_full(runs):
    empty = SCENARIO.draw({})
    assert len(empty) == 4
    assert all(common.MEASURING in str(f.layout.annotations) for f in empty[:3])
    assert common.MEASURING in list(empty[3].data[0].cells.values[2])
    partial = SCENARIO.draw(runs)
    full = SCENARIO.draw(ORDERED)
    accuracy, final, loss, table = full
    assert sum(t.fill == "tonexty" for t in accuracy.data) == len(NORMS)
    mean = next(t for t in accuracy.data if t.name == "BatchNorm, 5 seeds")
    assert np.allclose(mean.y, [10.0, 78.4, 79.4, 80.4, 81.4, 82.4])
    dots = [t for t in final.data if t.name and t.name.endswith(": seeds")]
    assert [len(t.y) for t in dots] == [5] * len(NORMS)
    assert "5/5 seeds agree" in final.layout.title.subtitle.text.replace("<br>", " ")
    assert list(table.data[0].cells.values[2]) == [r["acc"] for r in nf.table_rows(ORDERED)]
    for fig in (*empty, *partial, *full):
        check_layout(fig)
        fig.to_json()


def test_live_text_with_twin():
    lock = Lockstep([TrainConfig(steps=5, widths=(4,), eval_every=5),
                     TrainConfig(steps=5, widths=(4,), eval_every=5, norm="group")])  # fmt: skip
    lock.step(5)
    run, twin = lock.runs
    text = SCENARIO.explain({}, run, twin)
    assert f"BatchNorm at {common.pct(run.acc_running_stats[-1])}" in text
    assert f"GroupNorm, at {common.pct(twin.acc_running_stats[-1])}" in text
