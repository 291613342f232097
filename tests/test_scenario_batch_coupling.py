"""The batch-coupling scenario: the hand-written backward pass is Ioffe & Szegedy's and equals
autograd, ghost batch norm normalizes what it says, eval mode ignores the batch mates, and the
verdicts and their prose follow per-seed numbers whose answer is known."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import check_explain_without_runs, check_layout, check_preset
from torch import nn

from bnviz import TrainConfig, Trainer
from bnviz.experiments.batch_coupling import (
    GhostBatchNorm2d,
    backward_check,
    bn_backward,
    coupling,
    ghost_run,
)
from bnviz.scenarios.batch_coupling import (
    CHECK,
    COUPLING,
    GHOST_SIZES,
    LIVE_SETS,
    SCENARIO,
    WHOLE,
    ghost_label,
    render_swap,
    swap_batch_mates,
)
from bnviz.scenarios.evidence import REPLICATION_SEEDS, SEEDS

TINY = dict(widths=(4, 8), warmup=3)


def test_id_view_preset_and_jobs():
    assert SCENARIO.id == "batch-coupling" and SCENARIO.view == "Training"
    check_preset(SCENARIO)
    jobs = SCENARIO.jobs()
    assert len(jobs) == (2 + len(GHOST_SIZES)) * len(SEEDS)
    assert {dict(j.kwargs)["seed"] for j in jobs} == set(SEEDS)
    assert {dict(j.kwargs)["ghost"] for j in jobs if "ghost" in dict(j.kwargs)} == set(GHOST_SIZES)
    other = SCENARIO.jobs(seeds=REPLICATION_SEEDS)
    assert {int(j.label.rsplit(" ", 1)[1]) for j in other} == set(REPLICATION_SEEDS)


# ---------------------------------------------------------------- the experiments


def test_the_backward_pass_by_hand_is_autograds():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    gamma = torch.randn(3, dtype=torch.float64, requires_grad=True)
    beta = torch.randn(3, dtype=torch.float64, requires_grad=True)
    y = F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)
    dy = torch.randn_like(y)
    auto = torch.autograd.grad(y, (x, gamma, beta), dy)
    hand = bn_backward(dy, x.detach(), gamma.detach(), 1e-5)
    for a, h in zip(auto, hand):
        assert torch.allclose(a, h, atol=1e-12, rtol=0)
    # through the statistics, each channel's input gradient sums to 0 over the batch
    assert hand[0].sum((0, 2, 3)).abs().max() < 1e-12
    const = bn_backward(dy, x.detach(), gamma.detach(), 1e-5, through_stats=False)[0]
    assert const.sum((0, 2, 3)).abs().max() > 1e-3
    assert torch.allclose(const + (hand[0] - const), hand[0])
    assert not torch.allclose(const, hand[0])


def test_backward_check_agrees_in_every_block():
    r = backward_check(seed=0, **TINY, batch_size=8)
    assert r["largest_difference"] < 1e-12 * r["largest_gradient"]
    assert len(r["share_through_stats"]) == 2 and all(s > 0 for s in r["share_through_stats"])
    assert max(r["channel_sum"]) < 1e-12 < min(r["channel_sum_constants"])


@pytest.mark.parametrize("ghost", [2, 4])
def test_ghost_batch_norm_normalizes_each_ghost_batch_on_its_own(ghost):
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    gbn = GhostBatchNorm2d(bn, ghost)
    x = torch.randn(8, 3, 5, 5) * 3 + 1
    y = gbn(x)
    reference = nn.BatchNorm2d(3)
    reference.load_state_dict(bn.state_dict())
    for chunk, out in zip(x.split(ghost), y.split(ghost)):
        assert torch.allclose(reference(chunk), out, atol=1e-5)
    # the whole batch as one ghost batch is ordinary BatchNorm, running estimates included
    whole, plain = GhostBatchNorm2d(bn, 8), nn.BatchNorm2d(3)
    plain.load_state_dict(bn.state_dict())
    assert torch.allclose(whole(x), plain(x), atol=1e-5)
    assert torch.allclose(whole.running_mean, plain.running_mean, atol=1e-6)
    assert torch.allclose(whole.running_var, plain.running_var, atol=1e-5)
    whole.eval(), plain.eval()
    assert torch.allclose(whole(x), plain(x), atol=1e-5)


def test_eval_mode_ignores_the_batch_mates_and_train_mode_does_not():
    r = coupling(seed=0, mate_sets=3, batch_size=8, **TINY)
    assert r["eval"]["loss_sd"] == 0 and r["eval"]["grad"]["largest"] == 0
    assert len(set(r["eval"]["loss"])) == 1
    assert r["train"]["loss_sd"] > 0 and r["train"]["grad"]["relative"] > 0
    assert r["mates"] == 7 and len(r["train"]["loss"]) == 3


def test_a_ghost_run_measures_its_last_evaluations():
    r = ghost_run(ghost=2, seed=0, widths=(4, 8), batch_size=8, steps=6, evals=2, eval_every=2)
    assert r["eval_steps"] == [4, 6] and len(r["acc_eval"]) == len(r["acc_train"]) == 2
    assert all(0 <= a <= 1 for a in r["acc_eval"] + r["acc_train"])


# ---------------------------------------------------------------- verdicts on known numbers


def _coupling(train_sd: float, eval_sd: float = 0.0) -> dict:
    def mode(sd):
        return {
            "loss": [1.0 - sd, 1.0, 1.0 + sd],
            "predicted": [3, 3, 3],
            "loss_range": 2 * sd,
            "loss_sd": sd,
            "logits": {"largest": 10 * sd, "relative": sd},
            "grad": {"largest": 5 * sd, "relative": 3 * sd},
        }

    return {
        "widths": [8, 16, 32],
        "batch_size": 32,
        "mates": 31,
        "mate_sets": 3,
        "warmup": 60,
        "label": 3,
        "train": mode(train_sd),
        "eval": mode(eval_sd),
    }


def _check(share: float, difference: float = 1e-15) -> dict:
    return {
        "widths": [8, 16, 32],
        "batch_size": 16,
        "largest_difference": difference,
        "largest_gradient": 0.2,
        "share_through_stats": [share, share / 2, share / 3],
        "param_share_through_stats": 2 * share,
        "channel_sum": [1e-17] * 3,
        "channel_sum_constants": [0.5] * 3,
    }


def _ghost(acc: float, gap: float) -> dict:
    return {
        "widths": [8, 16, 32],
        "batch_size": 64,
        "steps": 150,
        "lr": 0.05,
        "status": "completed",
        "eval_steps": [130, 140, 150],
        "acc_eval": [acc - 0.01, acc, acc + 0.01],
        "acc_train": [acc - 0.02, acc, acc + 0.02],
        "loss_eval": [1.0 + gap] * 3,
        "loss_train": [1.0] * 3,
        "train_loss": [2.3, 1.0],
    }


def fake(train_sd, share, acc: dict, gap: dict, eval_sd=None, difference=1e-15) -> dict:
    """Per seed: the coupling and check results, and each ghost size's accuracy and gap."""
    out = {}
    for s in range(len(train_sd)):
        out[f"{COUPLING}, seed {s}"] = _coupling(train_sd[s], eval_sd[s] if eval_sd else 0.0)
        out[f"{CHECK}, seed {s}"] = _check(share[s], difference)
        for g in GHOST_SIZES:
            out[f"{ghost_label(g)}, seed {s}"] = _ghost(acc[g][s], gap[g][s])
    return out


SD = [0.06, 0.07, 0.08, 0.07, 0.065]
SHARE = [0.5, 0.4, 0.6, 0.45, 0.55]
FLAT = [0.64, 0.65, 0.63, 0.66, 0.64]
SMALL_GAP = [0.03, 0.04, 0.02, 0.03, 0.035]
BIG_GAP = [0.09, 0.08, 0.1, 0.085, 0.095]
# ghost 2 loses, 4 beats the whole batch, 8 and 16 are mixed; every small ghost has a smaller gap
ACC = {2: [0.55, 0.54, 0.56, 0.53, 0.55], 4: [0.7, 0.71, 0.69, 0.72, 0.7]}
ACC |= {8: [0.66, 0.62, 0.65, 0.64, 0.63], 16: [0.63, 0.66, 0.64, 0.65, 0.65], 64: FLAT}
GAP = {g: SMALL_GAP for g in GHOST_SIZES if g != WHOLE} | {WHOLE: BIG_GAP}
CLEAR = fake(SD, SHARE, ACC, GAP)


def _found(results) -> dict:
    return {v.key: v for v in SCENARIO.verdicts(results)}


def test_verdicts_on_known_numbers():
    found = _found(CLEAR)
    assert found["coupling: loss"].holds is True and found["coupling: loss"].agree == 5
    assert found["coupling: gradient"].holds is True
    assert found["backward by hand = autograd"].holds is True
    assert found["gradient through the batch statistics"].holds is True
    assert found["ghost 2: accuracy"].holds is False  # reversed: the whole batch wins
    assert found["ghost 4: accuracy"].holds is True
    assert found["ghost 8: accuracy"].holds is None and found["ghost 16: accuracy"].holds is None
    assert all(found[f"ghost {g}: train/eval gap"].holds is True for g in (2, 4, 8, 16))  # smaller
    assert found["coupling: loss"].spread.mean == pytest.approx(0.069)


def test_a_bad_hand_written_pass_and_a_negligible_share_are_reversed():
    bad = fake(SD, [0.001] * 5, ACC, GAP, difference=1e-6)
    found = _found(bad)
    assert found["backward by hand = autograd"].holds is False
    assert found["gradient through the batch statistics"].holds is False


def test_mates_that_change_nothing_are_not_a_coupling():
    same = fake([0.0] * 5, SHARE, ACC, GAP, eval_sd=[0.0] * 5)
    assert _found(same)["coupling: loss"].holds is None
    assert "did not measurably depend" in SCENARIO.takeaway(same, None, None)


def test_without_all_seeds_the_verdicts_are_pending():
    assert all(v.pending and v.holds is None for v in SCENARIO.verdicts({}))
    three = {k: r for k, r in CLEAR.items() if int(k.rsplit(" ", 1)[1]) < 3}
    assert all(v.pending for v in SCENARIO.verdicts(three))
    assert "Still measuring (3 of 5 seeds" in SCENARIO.explain(three, None, None)


def test_explain_quotes_every_verdict_and_says_when_ghosts_do_not_help():
    text = SCENARIO.explain(CLEAR, None, None)
    assert text.startswith("In train mode BatchNorm")  # ghost 4 beat the whole batch
    for v in SCENARIO.verdicts(CLEAR):
        assert v.text in text
    assert "exactly 0" in text and "SyncBN" in text and "images per GPU" in text
    assert "0.069 ± 0.007" in text  # the train-mode loss sd over seeds
    flat = fake(SD, SHARE, {g: FLAT for g in GHOST_SIZES}, GAP)
    first = SCENARIO.explain(flat, None, None).split("\n")[0]
    assert first.startswith("Not reproduced here") and "Hoffer" in first
    take = SCENARIO.takeaway(CLEAR, None, None)
    assert "**0.069 ± 0.007**" in take and "did not move" in take and len(take) <= 160


def test_takeaway_and_text_before_results():
    assert "Measuring" in SCENARIO.takeaway({}, None, None)
    check_explain_without_runs(SCENARIO)


# ---------------------------------------------------------------- figures


def test_figures_empty_partial_and_full():
    empty = SCENARIO.draw({})
    assert len(empty) == 4
    for fig in empty:
        assert not fig.data and any("measuring" in a.text for a in fig.layout.annotations)
    one = {k: r for k, r in CLEAR.items() if k.endswith("seed 0")}
    partial = SCENARIO.draw(one)
    assert all(fig.data for fig in partial)
    full = SCENARIO.draw(CLEAR)
    coupling_fig, through, ghost, gap = full
    assert len(coupling_fig.data[0].y) == 5 * 3  # every train-mode loss of every seed
    means = [t for t in ghost.data if t.error_y.array is not None]
    assert len(means) == 1 and len(means[0].y) == len(GHOST_SIZES)
    assert means[0].y[-1] == pytest.approx(64.4)
    assert "5/5 seeds agree" in through.layout.title.subtitle.text.replace("<br>", " ")
    assert "g 2 vs 64: 5/5 seeds agree" in gap.layout.title.subtitle.text.replace("<br>", " ")
    for fig in (*empty, *partial, *full):
        check_layout(fig)
        fig.to_json()


# ---------------------------------------------------------------- the live action


@pytest.mark.parametrize("bn_impl", ["torch", "scratch"])
def test_swapping_batch_mates_on_a_live_network_changes_train_mode_only(bn_impl):
    trainer = Trainer(TrainConfig(widths=(4, 8), batch_size=8, steps=5, bn_impl=bn_impl))
    trainer.step(3)
    before = [t.clone() for t in trainer.model.state_dict().values()]
    result = swap_batch_mates(trainer)
    after = list(trainer.model.state_dict().values())
    assert all(torch.equal(a, b) for a, b in zip(before, after))  # the network is untouched
    rows = result["rows"]
    assert len(rows) == LIVE_SETS
    assert len({r["eval"]["loss"] for r in rows}) == 1
    assert len({r["train"]["loss"] for r in rows}) == LIVE_SETS
    text = render_swap(result)
    assert "| set 3 |" in text and "the same every time" in text
    assert all(math.isfinite(r["train"]["p_true"]) for r in rows)


def test_the_action_says_so_for_a_norm_without_batch_statistics():
    trainer = Trainer(TrainConfig(widths=(4, 8), batch_size=4, steps=5, norm="group"))
    text = render_swap(swap_batch_mates(trainer))
    assert "GroupNorm" in text and "change nothing" in text


def test_the_action_on_an_mlp_with_one_image_a_batch_says_why_train_mode_fails():
    config = TrainConfig(arch="mlp", widths=(8,), batch_size=1, steps=5)
    text = render_swap(swap_batch_mates(Trainer(config)))
    assert "more than one value per channel" in text and "n/a" in text
