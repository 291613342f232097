"""The train-vs-eval scenario: one image predicted in train mode is normalized with its own
statistics and does worse than eval mode; batch statistics of small test batches do worse than
the running averages, of large ones better (the averages lag, as precise statistics show); one
value per channel raises PyTorch's ValueError, caught and quoted. Verdicts on synthetic results
where the answer is known; the experiments on tiny runs."""

import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from conftest import check_explain_without_runs, check_layout, check_preset

from bnviz.experiments import train_vs_eval as x
from bnviz.scenarios import common
from bnviz.scenarios import evidence as ev
from bnviz.scenarios import train_vs_eval as tve
from bnviz.scenarios.train_vs_eval import ERROR_LABEL, NETWORK, SCENARIO, TRAIN_BATCHES

MESSAGE = "Expected more than 1 value per channel when training"
SIZES = list(x.EVAL_BATCHES)


def network(seed: int, eval_acc=0.7, single=0.1, batch=0.72, running=0.68, precise=0.74,
            by_size=None) -> dict:  # fmt: skip
    """A one_network result with these accuracies; by_size: batch-statistics accuracy per test
    batch size (default: worse than running below 8, better above)."""
    by_size = by_size or {1: 0.1, 2: 0.4, 4: 0.6, 8: 0.68, 16: 0.72, 64: 0.74}
    classes = [f"c{k}" for k in range(10)]
    example = {"index": 3, "label": "c1", "eval_class": "c1", "eval_prob": 0.6,
               "train_class": "c4", "train_prob": 0.3, "p_eval": [0.1] * 10,
               "p_train": [0.1] * 10, "pixels": [[0] * 28] * 28}  # fmt: skip
    return {
        "seed": seed, "steps": x.STEPS, "status": "completed", "batch_size": x.BATCH_SIZE,
        "single": {"applicable": True, "images": 100, "classes": classes, "acc_eval": eval_acc,
                   "acc_train_single": single, "acc_train_batch": batch, "agree": 0.2,
                   "distinct_eval": 9, "distinct_single": 2, "examples": [example]},
        "batch_sizes": SIZES, "acc_running": running,
        "acc_batch": [by_size[b] for b in SIZES],
        "gap": [by_size[b] - running for b in SIZES],
        "acc_precise": precise, "precise_batches": x.PRECISE_BATCHES,
    }  # fmt: skip


def trained(b: int, seed: int, running: float, batch: float) -> dict:
    return {"batch_size": b, "steps": x.TRAIN_STEPS, "status": "completed",
            "acc_running": running, "acc_batch": batch, "gap": batch - running}  # fmt: skip


def fake(noise: float = 0.01, **network_kwargs) -> dict:
    """Five seeds of every job: eval mode far above single images, a negative gap at small
    batches and a positive one at large, precise statistics above the running averages."""
    rng = np.random.default_rng(0)
    params = dict(eval_acc=0.7, single=0.1, batch=0.72, running=0.68, precise=0.74)
    params |= network_kwargs
    out = {}
    for s in ev.SEEDS:
        kw = {k: v + noise * rng.standard_normal() if isinstance(v, float) else v
              for k, v in params.items()}  # fmt: skip
        out[ev.seeded(NETWORK, s)] = network(s, **kw)
        for b in TRAIN_BATCHES:
            gap = -0.06 if b == 2 else 0.03 if b == 64 else 0.0
            out[ev.seeded(tve.trained_label(b), s)] = trained(
                b, s, 0.5, 0.5 + gap + noise * rng.standard_normal()
            )
    out[ERROR_LABEL] = x.one_value_error()
    return out


def by_key(results: dict) -> dict:
    return {v.key: v for v in tve.verdicts(results)}


def test_id_preset_and_jobs():
    assert SCENARIO.id == "train-vs-eval"
    check_preset(SCENARIO)
    assert SCENARIO.view == "Train vs eval"
    assert SCENARIO.preset["batch_size"] <= 8 and SCENARIO.preset["twin"] in ("off", "none")
    jobs = SCENARIO.jobs()
    labels = [j.label for j in jobs]
    assert len(set(labels)) == len(labels) == len(ev.SEEDS) * (1 + len(TRAIN_BATCHES)) + 1
    assert ERROR_LABEL in labels and ev.seeded(NETWORK, 4) in labels
    assert all(j.fn.__module__ == "bnviz.experiments.train_vs_eval" for j in jobs)
    hash(tuple(j.key for j in jobs))


@pytest.fixture(scope="module")
def tiny_network() -> dict:
    return x.one_network(seed=0, steps=30, images=20, batches=(1, 2, 64), widths=(4, 8))


def test_one_network_on_a_tiny_run(tiny_network):
    r = tiny_network
    json.dumps(r)
    single = r["single"]
    assert single["applicable"] and single["images"] == 20 and len(single["examples"]) == 1
    ex = single["examples"][0]
    assert abs(sum(ex["p_eval"]) - 1) < 1e-5 and abs(sum(ex["p_train"]) - 1) < 1e-5
    assert ex["eval_class"] == single["classes"][int(np.argmax(ex["p_eval"]))]
    assert r["batch_sizes"] == [1, 2, 64] and len(r["acc_batch"]) == 3
    np.testing.assert_allclose(r["gap"], np.subtract(r["acc_batch"], r["acc_running"]))
    assert 0 <= r["acc_precise"] <= 1 and r["precise_batches"] == x.PRECISE_BATCHES
    row = x.train_at_batch(4, steps=10, widths=(4,))
    assert row["gap"] == pytest.approx(row["acc_batch"] - row["acc_running"])
    assert row["steps"] == 10


def test_train_mode_prediction_is_the_image_normalized_by_itself(small_trainer):
    # recompute one train-mode prediction by hand: each BN uses the image's own statistics
    model = small_trainer.model
    xs = small_trainer.eval_x[:1]
    with torch.no_grad():
        h = xs
        for block in model.blocks:
            h = block.conv(h)
            mean = h.mean(dim=(0, 2, 3), keepdim=True)
            var = h.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
            w, b = block.norm.weight.view(1, -1, 1, 1), block.norm.bias.view(1, -1, 1, 1)
            h = block.act((h - mean) / torch.sqrt(var + block.norm.eps) * w + b)
        expected = model.head(h.mean(dim=(2, 3))).softmax(1)[0]
    buffers = [b.norm.running_mean.clone() for b in model.blocks]
    r = x.predict_modes(small_trainer, images=1, examples=1)
    np.testing.assert_allclose(r["examples"][0]["p_train"], expected.numpy(), atol=1e-5)
    for block, before in zip(model.blocks, buffers):  # the live model is untouched
        assert torch.equal(block.norm.running_mean, before)
    assert model.training


def test_verdicts_on_synthetic_results():
    v = by_key(fake())
    for key in v:
        assert v[key].holds is True and v[key].agree == 5, key
    # no lag: precise statistics and large test batches the same as the running averages
    flat = {1: 0.1, 2: 0.4, 4: 0.6, 8: 0.68, 16: 0.68, 64: 0.68}
    v = by_key(fake(noise=0.02, precise=0.68, by_size=flat))
    assert v["precise-above-running"].holds is None
    assert v["large-test-batches-above"].holds is None
    # train mode better than eval mode for single images: reversed
    v = by_key(fake(eval_acc=0.1, single=0.7))
    assert v["eval-beats-single"].holds is False
    assert all(v.pending and v.holds is None for v in tve.verdicts({}))


def test_explain_quotes_every_verdict_and_the_numbers():
    results = fake()
    text = SCENARIO.explain(results, None, None)
    for v in tve.verdicts(results):
        assert v.text in text, v.key
    assert "Wu & Johnson (2021)" in text and "batch renormalization (Ioffe 2017)" in text
    assert "FrozenBN" in text
    eval_acc = ev.Spread.of(tve.single(results, "acc_eval").values()).text(100, "%")
    assert eval_acc in text and eval_acc in SCENARIO.takeaway(results, None, None)
    assert "being measured" in SCENARIO.explain({}, None, None)
    assert "Measuring" in SCENARIO.takeaway({}, None, None)
    # a partial set: what is missing is named, what is there is quoted
    partial = {k: r for k, r in results.items() if k.startswith(NETWORK)}
    text = SCENARIO.explain(partial, None, None)
    assert "Still being measured" in text and ERROR_LABEL in text
    for v in tve.verdicts(partial):
        assert v.text in text, v.key


def test_one_value_per_channel_is_caught_and_quoted():
    r = x.one_value_error()
    assert r["raised"] and MESSAGE in r["message"]
    assert r["sides"][-1] == 1 and r["values_per_channel"][-1] == 1
    assert r["eval_mode_ok"] and r["batch_of_2_ok"]
    text = SCENARIO.explain({ERROR_LABEL: r}, None, None)
    assert r["message"] in text and "eval mode" in text


def test_figures_without_partial_and_with_results():
    results = fake()
    partial = {k: r for k, r in results.items() if k.startswith("trained at")}
    for subset in ({}, partial, {ERROR_LABEL: results[ERROR_LABEL]}, results):
        figs = SCENARIO.draw(subset)
        assert len(figs) == 4
        for fig in figs:
            fig.to_json()
            check_layout(fig)
    assert all(common.MEASURING in str(f.layout.annotations) for f in SCENARIO.draw({}))
    single, example, accuracy, gap = SCENARIO.draw(results)
    bars = next(t for t in single.data if t.type == "bar")
    assert bars.error_y.array[0] > 0  # the spread over seeds is drawn
    assert "5/5 seeds agree" in single.layout.title.subtitle.text.replace("<br>", " ")
    assert gap.layout.xaxis.type == "log"
    tested = gap.data[0]
    means = [np.mean([results[ev.seeded(NETWORK, s)]["gap"][k] for s in ev.SEEDS])
             for k in range(len(SIZES))]  # fmt: skip
    assert list(tested.y) == pytest.approx([100 * m for m in means])
    assert isinstance(example, go.Figure) and example.data[0].type == "heatmap"
    assert any(t.fill == "tonexty" for t in accuracy.data)


def test_action_on_the_live_network_and_live_text(small_trainer):
    action = SCENARIO.actions[0]
    r = action.fn(small_trainer)
    md = action.render(r)
    assert common.pct(r["acc_eval"]) in md and common.pct(r["acc_train_single"]) in md
    run = small_trainer.run
    text = SCENARIO.explain({}, run, None)
    gap = run.acc_batch_stats[-1] - run.acc_running_stats[-1]
    assert common.signed_points(gap) in text and f"at step {run.eval_steps[-1]}" in text


def test_explain_before_the_first_step_and_without_a_run():
    check_explain_without_runs(SCENARIO)
