"""The tiny-batches scenario: BatchNorm against GroupNorm at batch sizes 2, 8 and 32, five seeds
each, BatchNorm tested with precise statistics; its verdicts on synthetic results where the
answer is known, its figures with and without results, and one real (tiny) run of the job."""

import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from conftest import check_explain_without_runs, check_layout, check_preset

from bnviz import Lockstep, TrainConfig, Trainer
from bnviz.experiments import tiny_batches as x
from bnviz.scenarios import evidence as ev
from bnviz.scenarios.tiny_batches import (
    BATCHES,
    DESIGN,
    NORMS,
    PUBLISHED,
    SCENARIO,
    TITLE_PUBLISHED,
    _label,
    published_figure,
    verdicts,
)


def fake(errors: dict, lag: float = 0.0) -> dict:
    """Results as the jobs return them: errors[(norm, batch)] is one final error per seed (or
    one number for every seed); BatchNorm's running averages `lag` worse than its precise
    statistics."""
    out = {}
    for (norm, b), values in errors.items():
        values = values if isinstance(values, list | tuple) else [values] * len(ev.SEEDS)
        for seed, e in zip(ev.SEEDS, values):
            running = e + (lag if norm == "batch" else 0.0)
            steps = DESIGN[b]["steps"]
            out[ev.seeded(_label(norm, b), seed)] = {
                "norm": norm,
                "batch_size": b,
                "steps": steps,
                "steps_done": steps,
                "lr": DESIGN[b]["lr"],
                "status": "completed",
                "eval_steps": [round(steps * (k + 1) / x.EVALS) for k in range(x.EVALS)],
                "error": list(np.linspace(0.9, running, x.EVALS - x.LAST)) + [running] * x.LAST,
                "error_precise": [e] * x.LAST,
            }
    return out


# Wu & He's shape: BN degrades as the batch shrinks, GN level (seeds scatter around one value)
SHAPE = {
    ("batch", 2): [0.50, 0.52, 0.48, 0.51, 0.49],
    ("batch", 8): 0.35,
    ("batch", 32): [0.30, 0.31, 0.29, 0.30, 0.32],
    ("group", 2): [0.30, 0.29, 0.31, 0.28, 0.32],
    ("group", 8): 0.30,
    ("group", 32): [0.31, 0.28, 0.30, 0.31, 0.29],
}


def by_key(results: dict) -> dict:
    return {v.key: v for v in verdicts(results)}


def test_id_view_preset_and_jobs():
    assert SCENARIO.id == "tiny-batches" and SCENARIO.view == "Training"
    check_preset(SCENARIO)
    assert SCENARIO.preset["batch_size"] == 2 and SCENARIO.preset["twin"] == "group"
    jobs = SCENARIO.jobs()
    labels = [j.label for j in jobs]
    assert len(labels) == len(set(labels)) == len(NORMS) * len(BATCHES) * len(ev.SEEDS)
    for j in jobs:
        kw = dict(j.kwargs)
        assert j.fn is x.batch_run and j.label == ev.seeded(_label(kw["norm"], kw["batch_size"]),
                                                            kw["seed"])  # fmt: skip
        assert (kw["steps"], kw["lr"]) == (DESIGN[kw["batch_size"]]["steps"],
                                           DESIGN[kw["batch_size"]]["lr"])  # fmt: skip
    # lr × steps the same at every batch size; the smallest batch gets the most steps
    budgets = {round(d["lr"] * d["steps"], 9) for d in DESIGN.values()}
    assert len(budgets) == 1
    assert DESIGN[2]["steps"] > DESIGN[8]["steps"] > DESIGN[32]["steps"]
    other = SCENARIO.jobs(seeds=ev.REPLICATION_SEEDS)
    assert {dict(j.kwargs)["seed"] for j in other} == set(ev.REPLICATION_SEEDS)


def test_a_tiny_run_of_the_job():
    for norm in NORMS:
        r = x.batch_run(norm, 2, steps=20, lr=0.02, widths=(4,), seed=0)
        json.dumps(r)
        assert r["status"] == "completed" and r["steps_done"] == 20
        assert len(r["error"]) == x.EVALS == len(r["eval_steps"]) and r["eval_steps"][-1] == 20
        assert len(r["error_precise"]) == x.LAST
        assert all(0 <= e <= 1 for e in r["error"] + r["error_precise"])
        if norm == "group":  # no running statistics: both tests are the same
            assert r["error_precise"] == r["error"][-x.LAST :]


def test_precise_statistics_leave_the_running_buffers_as_they_were():
    trainer = Trainer(TrainConfig(widths=(4,), batch_size=4, steps=10, seed=0))
    trainer.plain_steps(10)
    before = [b.clone() for b in trainer.model.buffers()]
    running, precise = x._precise(trainer)
    assert 0 <= running <= 1 and 0 <= precise <= 1
    for b, saved in zip(trainer.model.buffers(), before):
        assert torch.equal(b, saved)


def test_the_shape_reproduced_on_synthetic_results():
    v = by_key(fake(SHAPE))
    assert v["gn-beats-bn-small"].holds is True and v["gn-beats-bn-small"].agree == 5
    assert v["bn-degrades"].holds is True
    assert v["gn-not-flat"].holds is None  # level within the noise
    assert v["bn-loses-more-small"].holds is True
    assert v["bn-beats-gn-large"].holds is None
    text = SCENARIO.explain(fake(SHAPE), None, None)
    assert text.startswith("Wu & He's shape reproduces at this scale")


def test_group_norm_degrading_too_is_said_first():
    degrading = SHAPE | {("group", 2): [0.40, 0.41, 0.39, 0.42, 0.40]}
    results = fake(degrading, lag=0.03)
    v = by_key(results)
    assert v["gn-not-flat"].holds is True
    text = SCENARIO.explain(results, None, None)
    first = text.split(". ")[0]
    assert "is not fully reproduced at this scale, because small-batch training" in first
    assert "GroupNorm, which computes the same thing at any batch size" in first


def test_mixed_seeds_are_not_distinguishable_and_a_reversal_is_named():
    mixed = SHAPE | {("group", 2): [0.45, 0.55, 0.45, 0.55, 0.50]}
    assert by_key(fake(mixed))["gn-beats-bn-small"].holds is None
    reversed_ = SHAPE | {("group", 32): [0.20, 0.21, 0.19, 0.22, 0.20]}
    v = by_key(fake(reversed_))
    assert v["bn-beats-gn-large"].holds is False
    assert "Unlike Wu & He, GroupNorm also beat BatchNorm at batch 32" in SCENARIO.explain(
        fake(reversed_), None, None
    )


def test_verdicts_are_quoted_and_pending_without_results():
    results = fake(SHAPE)
    text = SCENARIO.explain(results, None, None)
    for v in verdicts(results):
        assert v.text in text
    assert all(v.pending and v.holds is None for v in verdicts({}))
    empty = SCENARIO.explain({}, None, None)
    assert "being measured" in empty and "precise statistics" in empty
    assert "ResNet-50 on ImageNet" in empty and "not measured here" in empty
    assert "Measuring" in SCENARIO.takeaway({}, None, None)
    take = SCENARIO.takeaway(results, None, None)
    assert "5/5 seeds agree" in take and len(take.replace("**", "")) <= 160


def test_figures_without_partial_and_with_results():
    results = fake(SHAPE)
    partial = {k: r for k, r in results.items() if k.startswith("GroupNorm, batch 2,")}
    for given in ({}, partial, results):
        figs = SCENARIO.draw(given)
        assert len(figs) == 3 and all(isinstance(f, go.Figure) for f in figs)
        for f in figs:
            f.to_json()
            check_layout(f)
    assert any("measuring" in a.text for a in SCENARIO.draw({})[0].layout.annotations)
    sweep, curves, published = SCENARIO.draw(results)
    subtitle = sweep.layout.title.subtitle.text.replace("<br>", " ")
    assert "Measured" in sweep.layout.title.text and "GN < BN at 2: 5/5 seeds agree" in subtitle
    bn = next(t for t in sweep.data if t.name == "BatchNorm (precise statistics)")
    assert list(bn.x) == list(BATCHES) and bn.error_y.array[0] == pytest.approx(
        100 * np.std(SHAPE[("batch", 2)], ddof=1)
    )
    assert any(t.fill == "tonexty" for t in curves.data)  # bands over seeds
    assert published.layout.title.text == TITLE_PUBLISHED
    assert "Wu & He 2018" in TITLE_PUBLISHED and "not measured here" in TITLE_PUBLISHED
    assert all("published" in t.name for t in published.data)
    bn_trace = next(t for t in published_figure().data if t.name.startswith("BatchNorm"))
    assert list(bn_trace.y) == list(PUBLISHED["batch"])


def test_explain_quotes_the_live_run():
    config = TrainConfig(widths=(4, 8), batch_size=4, steps=20, eval_every=10)
    lockstep = Lockstep([config, config.replace(norm="group")])
    lockstep.step(20)
    run, twin = lockstep.runs
    text = SCENARIO.explain({}, run, twin)
    assert "**Live run** (batch 4, 20 steps, one seed)" in text
    assert f"{100 * (1 - run.acc_running_stats[-1]):.1f}%" in text
    assert f"{100 * (1 - twin.acc_running_stats[-1]):.1f}%" in text


def test_explain_before_the_first_step_and_without_a_run():
    check_explain_without_runs(SCENARIO)
