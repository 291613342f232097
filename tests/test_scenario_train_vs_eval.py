"""The train-vs-eval scenario: one image predicted in train mode is normalized with its own
statistics and does worse than eval mode; batch statistics from smaller batches move further
from eval mode; one value per channel raises PyTorch's ValueError, caught and quoted."""

import numpy as np
import pytest
import torch
from conftest import check_explain_without_runs, check_layout, check_preset

from bnviz.scenarios import common
from bnviz.scenarios import train_vs_eval as tve
from bnviz.scenarios.train_vs_eval import ERROR_LABEL, EVAL_LABEL, SCENARIO, SINGLE_LABEL

MESSAGE = "Expected more than 1 value per channel when training"


@pytest.fixture(scope="module")
def results():
    return {
        SINGLE_LABEL: tve.single_images(steps=80, images=40),
        EVAL_LABEL: tve.eval_batch_sweep(steps=80, batches=(1, 2, 8, 64)),
        ERROR_LABEL: tve.one_value_error(),
        "train at batch 4": tve.train_at_batch(4, steps=20),
    }


def test_id_preset_and_jobs():
    assert SCENARIO.id == "train-vs-eval"
    check_preset(SCENARIO)
    assert SCENARIO.view == "Train vs eval"
    assert SCENARIO.preset["batch_size"] <= 8 and SCENARIO.preset["twin"] in ("off", "none")
    labels = [j.label for j in SCENARIO.jobs()]
    assert len(set(labels)) == len(labels)
    assert {SINGLE_LABEL, EVAL_LABEL, ERROR_LABEL} <= set(labels)
    hash(tuple(j.key for j in SCENARIO.jobs()))


def test_single_image_in_train_mode_is_worse_than_eval_mode(results):
    r = results[SINGLE_LABEL]
    assert r["applicable"] and r["images"] == 40
    assert r["acc_eval"] > r["acc_train_single"] + 0.1
    # a batch of all 40 images in train mode is far better than one image at a time
    assert r["acc_train_batch"] > r["acc_train_single"]
    ex = r["examples"][0]
    assert abs(sum(ex["p_eval"]) - 1) < 1e-5 and abs(sum(ex["p_train"]) - 1) < 1e-5
    assert ex["eval_class"] == r["classes"][int(np.argmax(ex["p_eval"]))]


def test_train_mode_prediction_is_the_image_normalized_by_itself(small_trainer):
    # recompute one train-mode prediction by hand: each BN uses the image's own statistics
    model = small_trainer.model
    x = small_trainer.eval_x[:1]
    with torch.no_grad():
        h = x
        for block in model.blocks:
            h = block.conv(h)
            mean = h.mean(dim=(0, 2, 3), keepdim=True)
            var = h.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
            w, b = block.norm.weight.view(1, -1, 1, 1), block.norm.bias.view(1, -1, 1, 1)
            h = block.act((h - mean) / torch.sqrt(var + block.norm.eps) * w + b)
        expected = model.head(h.mean(dim=(2, 3))).softmax(1)[0]
    buffers = [b.norm.running_mean.clone() for b in model.blocks]
    r = tve.predict_modes(small_trainer, images=1, examples=1)
    np.testing.assert_allclose(r["examples"][0]["p_train"], expected.numpy(), atol=1e-5)
    for block, before in zip(model.blocks, buffers):  # the live model is untouched
        assert torch.equal(block.norm.running_mean, before)
    assert model.training


def test_gap_grows_as_the_batch_shrinks(results):
    sweep = results[EVAL_LABEL]
    gap = dict(zip(sweep["batch_sizes"], sweep["gap"]))
    assert abs(gap[1]) > abs(gap[8]) and abs(gap[2]) > abs(gap[64])
    assert len(set(sweep["acc_running"])) == 1  # eval mode does not depend on the batch size
    np.testing.assert_allclose(
        sweep["gap"], np.subtract(sweep["acc_batch"], sweep["acc_running"]), atol=1e-12
    )
    row = results["train at batch 4"]
    assert row["gap"] == row["acc_batch"] - row["acc_running"] and row["steps"] == 20


def test_one_value_per_channel_is_caught_and_quoted(results):
    r = results[ERROR_LABEL]
    assert r["raised"] and MESSAGE in r["message"]
    assert r["sides"][-1] == 1 and r["values_per_channel"][-1] == 1
    assert r["eval_mode_ok"] and r["batch_of_2_ok"]
    text = SCENARIO.explain({ERROR_LABEL: r}, None, None)
    assert r["message"] in text and "eval mode" in text


def test_figures_on_empty_and_partial_results(results):
    for subset in ({}, {SINGLE_LABEL: results[SINGLE_LABEL]}, {ERROR_LABEL: results[ERROR_LABEL]},
                   {"train at batch 4": results["train at batch 4"]}, results):  # fmt: skip
        figs = SCENARIO.figures(subset)
        assert len(figs) == 4
        for fig in figs:
            fig.to_json()
            check_layout(fig)
    assert all(common.MEASURING in str(f.layout.annotations) for f in SCENARIO.figures({}))
    gap = SCENARIO.figures(results)[3]
    assert gap.layout.xaxis.type == "log"
    assert list(gap.data[0].y) == pytest.approx([100 * g for g in results[EVAL_LABEL]["gap"]])


def test_explain_quotes_measured_numbers(results):
    assert "being measured" in SCENARIO.explain({}, None, None)
    text = SCENARIO.explain(results, None, None)
    single = results[SINGLE_LABEL]
    for key in ("acc_eval", "acc_train_single", "acc_train_batch"):
        assert common.pct(single[key]) in text
    for g in results[EVAL_LABEL]["gap"]:
        assert common.signed_points(g) in text
    assert common.signed_points(results["train at batch 4"]["gap"]) in text
    assert "The gap's size grew as the batch shrank" in text


def test_gap_wording_follows_the_numbers(results):
    sweep = dict(results[EVAL_LABEL], batch_sizes=[2, 64], gap=[0.01, -0.05],
                 acc_running=[0.5, 0.5], acc_batch=[0.51, 0.45])  # fmt: skip
    text = SCENARIO.explain({EVAL_LABEL: sweep}, None, None)
    assert "Here the gap did not grow as the batch shrank (-5.0 pp at batch 64" in text
    worse = dict(results[SINGLE_LABEL], acc_eval=0.3, acc_train_single=0.4)
    assert "train mode did not do worse" in SCENARIO.explain({SINGLE_LABEL: worse}, None, None)


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
