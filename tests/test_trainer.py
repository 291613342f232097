import json
import threading

import numpy as np
import pytest
import torch
from conftest import SMALL, TALLY

from bnviz import Lockstep, Run, TrainConfig, Trainer, train
from bnviz import datasets as ds
from bnviz.trainer import (
    EARLY_EVALS,
    HIST_IMAGES,
    MIN_EVAL_EVERY,
    Batches,
    eval_due,
    to_tensor,
)


def test_records_one_row_per_step_with_every_statistic(small_trainer):
    run = small_trainer.run
    n = SMALL["steps"]
    assert run.status == "completed"
    assert run.steps.tolist() == list(range(1, n + 1))
    assert run.metric("train_loss").shape == run.metric("train_acc").shape == (n,)
    for i, channels in enumerate(SMALL["widths"]):
        for stat in ("batch_mean", "batch_var", "running_mean", "running_var", "gamma", "beta"):
            assert run.layer_stat(i, stat).shape == (n, channels)
        for stat in ("input_grad_norm", "param_grad_norm"):
            values = run.layer_stat(i, stat)
            assert values.shape == (n,) and (values > 0).all()
    for name in run.params:
        assert (run.param_stat(name, "grad_norm") > 0).all()
        assert (run.param_stat(name, "update_ratio") > 0).all()
    assert run.metric("train_loss")[-5:].mean() < run.metric("train_loss")[:5].mean()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_running_stats_follow_the_pytorch_update_from_recorded_batch_stats(momentum):
    """running = (1 - m) * running + m * batch, with the unbiased variance in running_var;
    momentum None is the cumulative average. Checked from the recorded numbers alone."""
    trainer = Trainer(TrainConfig(**{**SMALL, "steps": 6, "momentum": momentum}))
    run = trainer.step(6)
    for i, side in enumerate((28, 14)):
        m = SMALL["batch_size"] * side * side  # values per channel
        mean, var = run.layer_stat(i, "batch_mean"), run.layer_stat(i, "batch_var")
        rmean, rvar = run.layer_stat(i, "running_mean"), run.layer_stat(i, "running_var")
        expected_mean, expected_var = np.zeros_like(mean[0]), np.ones_like(var[0])
        for k in range(6):
            f = momentum if momentum is not None else 1 / (k + 1)
            expected_mean = (1 - f) * expected_mean + f * mean[k]
            expected_var = (1 - f) * expected_var + f * var[k] * m / (m - 1)
            np.testing.assert_allclose(rmean[k], expected_mean, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(rvar[k], expected_var, rtol=1e-4, atol=1e-6)


def test_batch_stats_and_first_update_match_a_recomputation():
    """Step 1 by hand: the same batch through the same initial conv; SGD's first update."""
    config = TrainConfig(**SMALL)
    trainer = Trainer(config)
    conv = torch.nn.Conv2d(1, 8, 3, padding=1, bias=False)
    conv.load_state_dict(trainer.model.blocks[0].conv.state_dict())
    data = ds.load("shapes")
    idx = Batches(len(data.y_train), config.seed).next(config.batch_size)
    with torch.no_grad():
        h = conv(to_tensor(data, data.x_train[idx])).double()
    run = trainer.step(1)
    np.testing.assert_allclose(run.layer_stat(0, "batch_mean")[0], h.mean((0, 2, 3)), atol=1e-5)
    expected_var = h.var((0, 2, 3), unbiased=False)
    np.testing.assert_allclose(run.layer_stat(0, "batch_var")[0], expected_var, rtol=1e-4)
    # first SGD step (empty momentum buffer): update = lr * grad
    name = "blocks.0.conv.weight"
    weight = trainer.model.blocks[0].conv.weight.detach()
    expected_ratio = config.lr * run.param_stat(name, "grad_norm")[0] / weight.norm()
    np.testing.assert_allclose(run.param_stat(name, "update_ratio")[0], expected_ratio, rtol=1e-4)
    np.testing.assert_allclose(
        run.layer_stat(0, "gamma")[0], trainer.model.blocks[0].norm.weight.detach()
    )


def test_evaluation_leaves_running_buffers_alone_and_uses_both_modes(small_trainer):
    model = small_trainer.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    acc_running, acc_batch = small_trainer.accuracy()  # measures without recording
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    x, y = small_trainer.eval_x, small_trainer.eval_y
    with torch.no_grad():
        model.eval()
        expected = (model(x).argmax(1) == y).float().mean().item()
        model.train()
    assert acc_running == pytest.approx(expected)
    assert 0 <= acc_batch <= 1 and acc_batch != acc_running


def test_eval_record(small_trainer):
    run = small_trainer.run
    assert run.eval_steps == [0, 10, 20, 30, 40]
    assert len(run.acc_running_stats) == len(run.acc_batch_stats) == 5
    assert run.acc_running_stats[-1] > run.acc_running_stats[0]


def test_automatic_cadence_measures_densely_early_and_each_value_at_its_step():
    trainer = Trainer(TrainConfig(widths=(4,), steps=60))
    assert trainer.eval_every == MIN_EVAL_EVERY
    measured = {}
    for step in range(1, 61):
        trainer.step(1)
        if step in (5, 20):  # the accuracy of the model as it is after that step
            measured[step] = trainer.accuracy()[0]
    run = trainer.run
    assert run.eval_steps == [0, *EARLY_EVALS, 25, 50, 60]
    acc = dict(zip(run.eval_steps, run.acc_running_stats))
    for step, value in measured.items():
        assert acc[step] == pytest.approx(value, abs=1e-6)
    assert [eval_due(s, 25, early=False) for s in (0, 5, 25)] == [True, False, True]


def test_snapshots_histograms_are_complete_and_edges_fixed(small_trainer):
    run = small_trainer.run
    for i, (info, snaps) in enumerate(zip(run.layers, run.snapshots)):
        assert snaps.steps == [1, 5, 9, 13, 17, 21, 25, 29, 33, 37]
        side = (28, 14)[i]
        for kind in ("pre_norm", "post_norm", "post_act"):
            assert len(snaps.edges[kind]) == 41
            counts = np.array(snaps.hist[kind])
            assert counts.shape == (10, 40)
            images = min(SMALL["batch_size"], HIST_IMAGES)
            assert (counts.sum(1) == images * info.channels * side * side).all()
            per_channel = np.array(snaps.channel_hist[kind])
            assert per_channel.shape == (10, info.tracked_channels, 40)
            assert (per_channel.sum(2) == images * side * side).all()
        post_norm = np.array(snaps.hist["post_norm"])
        centres = (snaps.edges["post_norm"][1:] + snaps.edges["post_norm"][:-1]) / 2
        first_mean = (post_norm[0] * centres).sum() / post_norm[0].sum()
        assert abs(first_mean) < 0.2  # BN output is centred at initialisation (beta = 0)
        assert snaps.edges["post_act"][0] == 0.0  # relu
        p = np.array(snaps.unit_percentiles)
        assert p.shape == (10, 3) and (p[:, 0] <= p[:, 1]).all() and (p[:, 1] <= p[:, 2]).all()
        dead = np.array(snaps.saturated_fraction)
        # relu after BN (beta = 0): about half of the values are <= 0 at initialisation
        assert 0.35 < dead[0] < 0.65 and info.saturation == "dead"


def test_saturated_fraction_for_sigmoid_without_norm_at_high_lr():
    config = TrainConfig(**{**SMALL, "activation": "sigmoid", "norm": "none", "lr": 5.0})
    run = Trainer(config).step(20)
    fractions = np.array(run.snapshots[-1].saturated_fraction)
    assert fractions[0] < 0.05 < fractions.max()
    assert run.layers[0].saturation == "saturated"


def test_snapshots_are_thinned_to_stay_bounded(monkeypatch):
    from bnviz import record, trainer

    monkeypatch.setattr(trainer, "MAX_SNAPSHOTS", 8)
    monkeypatch.setattr(record, "MAX_SNAPSHOTS", 8)
    t = Trainer(TrainConfig(**{**SMALL, "steps": 30, "snapshot_every": 1, "eval_every": 1}))
    run = t.step(30)
    steps = run.snapshots[0].steps
    assert len(steps) <= 8 and steps[0] == 1
    assert len(set(np.diff(steps))) == 1  # still evenly spaced
    assert len(run.snapshots[0].hist["pre_norm"]) == len(steps)
    assert len(run.eval_steps) <= 8 and run.eval_steps[0] == 0


def test_memory_stays_under_20_mb_for_5000_steps():
    """Extrapolated from the real record: rows grow per step, snapshots stop at 300."""
    t = Trainer(TrainConfig(steps=5000))
    run = t.step(3)
    row_bytes = 4 * sum(c.stop - c.start for c in run.table.columns.values())
    snapshot_bytes = (run.nbytes - run.table.nbytes) / len(run.snapshots[0].steps)
    assert 5000 * row_bytes + 300 * snapshot_bytes < 20e6


def test_same_config_gives_the_same_record_even_in_threads():
    config = TrainConfig(**{**SMALL, "steps": 8})
    alone = train(config).to_dict()
    results = [None, None]

    def work(k):
        results[k] = train(config).to_dict()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == alone and results[1] == alone
    assert train(config.replace(seed=1)).to_dict()["metrics"] != alone["metrics"]


def test_lockstep_shares_batches_and_initial_weights_and_equals_training_alone():
    configs = [
        TrainConfig(**{**SMALL, "steps": 6}),
        TrainConfig(**{**SMALL, "steps": 6, "norm": "none"}),
    ]
    lock = Lockstep(configs)
    seen = [[], []]
    for k, trainer in enumerate(lock.trainers):

        def keep(module, args, k=k, trainer=trainer):
            if trainer._recording:  # a training step, not an evaluation
                seen[k].append(args[0].clone())

        trainer.model.register_forward_pre_hook(keep)
    init = [dict(t.model.named_parameters()) for t in lock.trainers]
    for name in ("blocks.0.conv.weight", "blocks.1.conv.weight", "head.weight", "head.bias"):
        assert torch.equal(init[0][name], init[1][name])
    runs = lock.step(6)
    assert len(seen[0]) == len(seen[1]) == 6
    assert all(torch.equal(a, b) for a, b in zip(*seen))
    for config, run in zip(configs, runs):
        assert run.to_dict() == train(config).to_dict()
    with pytest.raises(ValueError, match="batch_size"):
        Lockstep([configs[0], configs[0].replace(batch_size=8)])


def test_divergence_at_huge_lr_ends_the_run_without_raising():
    run = train(TrainConfig(**{**SMALL, "norm": "none", "lr": 1e4}))
    assert run.status == "diverged"
    assert 1 <= run.diverged_step <= SMALL["steps"]
    assert run.num_steps == run.diverged_step - 1
    assert f"diverged at step {run.diverged_step}" in run.message
    json.dumps(run.to_dict(), allow_nan=False)


def test_eps_zero_on_a_constant_channel_diverges_and_says_why():
    TALLY["fault cases"] += 1
    trainer = Trainer(TrainConfig(**{**SMALL, "eps": 0.0, "bn_impl": "scratch"}))
    with torch.no_grad():
        trainer.model.blocks[0].conv.weight[0].zero_()  # channel 0 is 0 for every image
    trainer.step(3)
    run = trainer.run
    assert run.status == "diverged" and run.diverged_step == 1
    assert run.message.startswith("diverged at step 1: the loss became nan. eps is 0")
    assert "learning rate" not in run.message
    json.dumps(run.to_dict(), allow_nan=False)


def test_torch_batchnorm_refuses_eps_zero_in_training():
    TALLY["fault cases"] += 1
    run = train(TrainConfig(**{**SMALL, "eps": 0.0, "bn_impl": "torch"}))
    assert run.status == "failed" and run.num_steps == 0
    assert "eps must be positive during training" in run.message


def test_the_same_channel_with_eps_above_zero_trains_on():
    trainer = Trainer(TrainConfig(**{**SMALL, "eps": 1e-8, "steps": 5}))
    with torch.no_grad():
        trainer.model.blocks[0].conv.weight[0].zero_()
    trainer.step(5)
    assert trainer.run.status == "completed"


@pytest.mark.parametrize(
    "error, says",
    [
        (RuntimeError("DefaultCPUAllocator: can't allocate memory"), "ran out of memory"),
        (MemoryError(), "ran out of memory"),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), "(RuntimeError: mat1"),
    ],
)
def test_an_error_in_a_step_fails_the_run_and_says_why(monkeypatch, error, says):
    TALLY["fault cases"] += 1
    monkeypatch.delenv("BNVIZ_RAISE", raising=False)
    trainer = Trainer(TrainConfig(**SMALL))
    trainer.step(2)
    before = trainer.run.to_json()

    def fails(x):
        raise error

    monkeypatch.setattr(trainer.model, "forward", fails)
    trainer.step(5)
    run = trainer.run
    assert run.status == "failed" and run.message.startswith("failed at step 3: ")
    assert says in run.message
    loaded = Run.from_json(run.to_json())  # the record as it was, and it saves
    assert loaded.num_steps == 2 and loaded.to_dict()["metrics"] == json.loads(before)["metrics"]


def test_a_bug_while_recording_a_step_is_raised_not_hidden(monkeypatch):
    monkeypatch.delenv("BNVIZ_RAISE", raising=False)
    trainer = Trainer(TrainConfig(**SMALL))
    monkeypatch.setattr(trainer, "_store_snapshots", lambda step: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        trainer.step(1)


def test_one_value_per_channel_fails_with_pytorchs_message():
    config = TrainConfig(widths=(4, 4, 4, 4, 4, 4), batch_size=1, steps=3)
    run = train(config)
    assert run.status == "failed"
    assert "Expected more than 1 value per channel when training" in run.message
    assert np.isnan(run.acc_batch_stats[0])


def test_batch_larger_than_the_data_set_is_refused():
    with pytest.raises(ValueError, match="batch_size must be at most 500"):
        Trainer(TrainConfig(batch_size=501), _tiny_dataset(500))


def _tiny_dataset(n):
    data = ds.load("shapes")
    return ds.make_dataset(
        "shapes", data.x_train[:n].copy(), data.y_train[:n].copy(),
        data.x_test[:50].copy(), data.y_test[:50].copy(), data.classes,
    )  # fmt: skip


def test_scratch_batchnorm_trains_like_torch():
    a = train(TrainConfig(**{**SMALL, "steps": 5}))
    b = train(TrainConfig(**{**SMALL, "steps": 5, "bn_impl": "scratch"}))
    np.testing.assert_allclose(a.metric("train_loss"), b.metric("train_loss"), rtol=1e-4)
    np.testing.assert_allclose(
        a.layer_stat(1, "running_var"), b.layer_stat(1, "running_var"), rtol=1e-3
    )


def test_train_calls_back_and_can_be_stopped():
    calls = []
    run = train(
        TrainConfig(**SMALL), on_record=lambda r: calls.append(r.num_steps),
        should_stop=lambda: len(calls) >= 2, chunk=5,
    )  # fmt: skip
    assert calls == [5, 10]
    assert run.status == "stopped" and run.num_steps == 10
    assert run.eval_steps[-1] == 10


def test_mid_run_changes_apply_from_the_next_step_and_are_recorded():
    trainer = Trainer(TrainConfig(**SMALL))
    trainer.step(2)
    trainer.set(lr=0.01, momentum=0.5, eps=1e-3, batch_size=16)
    run = trainer.step(1)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.01
    bn = trainer.model.blocks[0].norm
    assert (bn.momentum, bn.eps) == (0.5, 1e-3)
    assert {c["field"]: (c["step"], c["new"]) for c in run.changes} == {
        "lr": (3, 0.01), "momentum": (3, 0.5), "eps": (3, 1e-3), "batch_size": (3, 16),
    }  # fmt: skip
    # the running mean moved by momentum 0.5 towards the new step's batch mean
    rm, bm = run.layer_stat(0, "running_mean"), run.layer_stat(0, "batch_mean")
    np.testing.assert_allclose(rm[2], 0.5 * rm[1] + 0.5 * bm[2], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="mid-run"):
        trainer.set(norm="none")
    with pytest.raises(ValueError, match="lr"):
        trainer.set(lr=-1)


def test_default_config_learns_but_not_instantly():
    """The acceptance bar of the built-in data set: >= 80% test accuracy within 300 steps,
    and not above 95% by step 20."""
    trainer = Trainer(TrainConfig(eval_every=20))
    run = trainer.step(300)
    acc = dict(zip(run.eval_steps, run.acc_running_stats))
    assert acc[20] <= 0.95
    assert acc[300] >= 0.80, acc


def test_batch_variance_is_exact_even_when_eps_dwarfs_it():
    """Inputs scaled by 1e-4 give first-block variances far below eps = 1."""
    config = TrainConfig(**{**SMALL, "eps": 1.0, "steps": 1})
    trainer = Trainer(config)
    data = trainer.data
    idx = Batches(len(data.y_train), config.seed).next(config.batch_size)
    trainer.data = ds.make_dataset(
        "shapes", data.x_train.copy(), data.y_train.copy(), data.x_test.copy(),
        data.y_test.copy(), data.classes,
    )  # fmt: skip
    object.__setattr__(trainer.data, "std", tuple(s * 1e4 for s in data.std))
    conv = trainer.model.blocks[0].conv
    with torch.no_grad():
        h = conv(to_tensor(trainer.data, data.x_train[idx])).double()
    run = trainer.step(1)
    expected = h.var((0, 2, 3), unbiased=False).numpy()
    assert expected.max() < 1e-3
    np.testing.assert_allclose(run.layer_stat(0, "batch_var")[0], expected, rtol=1e-3)


def test_a_clone_continues_exactly_like_the_original_and_shares_only_the_data():
    c = TrainConfig(**SMALL)
    lock = Lockstep([c, c.replace(norm="none")])
    lock.step(6)
    clone = lock.clone()
    original = [run.to_json() for run in lock.runs]
    clone.step(8)
    assert [run.to_json() for run in lock.runs] == original  # the original did not move
    lock.step(8)
    assert [run.to_json() for run in clone.runs] == [run.to_json() for run in lock.runs]
    a, b = lock.trainers[0], clone.trainers[0]
    assert a.data is b.data and a.eval_x is b.eval_x
    assert a.model is not b.model and a.run is not b.run
    assert all(p is not q for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert b.optimizer.param_groups[0]["params"][0] is next(b.model.parameters())


def test_a_completed_run_resumed_with_more_steps_equals_a_longer_run():
    trainer = Trainer(TrainConfig(**SMALL))
    trainer.step(SMALL["steps"])
    trainer.resume(extra_steps=10)
    assert trainer.run.status == "running" and trainer.run.config.steps == SMALL["steps"] + 10
    trainer.step(100)
    longer = train(TrainConfig(**{**SMALL, "steps": SMALL["steps"] + 10}))
    assert trainer.run.status == "completed" and trainer.run.num_steps == longer.num_steps
    np.testing.assert_array_equal(trainer.run.metric("train_loss"), longer.metric("train_loss"))
    assert Run.from_json(trainer.run.to_json()).to_json() == trainer.run.to_json()


@pytest.mark.parametrize(
    "failing, fixed",
    [
        (dict(eps=0.0), dict(eps=1e-5)),  # torch refuses eps 0 at the first step
        (dict(widths=(4,) * 6, batch_size=1), dict(batch_size=2)),  # one value per channel
    ],
)
def test_a_failed_step_changes_nothing_and_the_run_goes_on_in_lockstep(failing, fixed):
    """The step that failed undoes what it did (running statistics, the batch drawn), so the
    run resumed with the setting fixed is the run that had that setting from there on."""
    base = {**SMALL, **failing, "steps": 6}
    lock = Lockstep([TrainConfig(**base), TrainConfig(**{**base, "norm": "none"})])
    if "widths" in failing:
        lock.set(batch_size=2)
        lock.step(2)
        lock.set(batch_size=1)
    lock.step(3)
    failed_at = lock.runs[0].num_steps
    assert lock.runs[0].status == "failed" and lock.runs[1].num_steps == failed_at
    lock.set(**fixed)
    lock.resume()
    lock.step(10)
    config = TrainConfig(**{**base, **fixed})
    reference = Lockstep([config, config.replace(norm="none")])
    reference.step(10)
    for run, ref in zip(lock.runs, reference.runs):
        assert run.status == "completed" and run.num_steps == ref.num_steps
        np.testing.assert_array_equal(run.metric("train_loss"), ref.metric("train_loss"))
        Run.from_json(run.to_json())
    main, ref = lock.runs[0], reference.runs[0]  # the running statistics too
    np.testing.assert_array_equal(
        main.layer_stat(0, "running_var"), ref.layer_stat(0, "running_var")
    )


def test_lockstep_follows_the_first_trainer_when_another_one_diverges():
    """The twin diverging does not hold up the main run; the main run failing holds the twin
    at its step, so that both can resume together."""
    main = TrainConfig(**{**SMALL, "lr": 30.0, "steps": 12})
    lock = Lockstep([main, main.replace(norm="none")])
    lock.step(12)
    assert lock.runs[1].status == "diverged" and lock.runs[0].num_steps == 12


def test_plain_steps_train_the_runs_model_on_its_batches_and_record_nothing():
    """plain_steps draws the batches step() would draw, updates the model as step() would, and
    leaves the record alone: the same weights as recorded steps, no rows."""
    config = TrainConfig(**{**SMALL, "steps": 3})
    recorded, plain = Trainer(config), Trainer(config)
    recorded.step(3)
    assert plain.plain_steps(3) == ("completed", 3)
    assert plain.run.num_steps == 0
    for a, b in zip(recorded.model.state_dict().values(), plain.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert plain.eval_accuracy() == recorded.accuracy()[0]


def test_plain_step_reports_divergence_and_one_value_per_channel():
    trainer = Trainer(TrainConfig(**{**SMALL, "norm": "none", "lr": 1e6}))
    status, done = trainer.plain_steps(50)
    assert status == "diverged" and 1 <= done <= 50
    single = Trainer(TrainConfig(**{**SMALL, "batch_size": 1, "widths": (4, 4, 4, 4, 4, 4)}))
    assert single.plain_steps(1) == ("failed", 0)


def test_after_backward_and_another_optimizer_steer_a_plain_step():
    trainer = Trainer(TrainConfig(**SMALL))
    gammas = [b.norm.weight for b in trainer.model.blocks]
    before = [p.detach().clone() for p in trainer.model.parameters()]
    optimizer = torch.optim.SGD(gammas, lr=0.1)
    x, y = trainer.next_batch()

    def only_the_first_gamma_channel():
        for gamma in gammas:
            gamma.grad[1:] = 0

    trainer.plain_step(x, y, optimizer=optimizer, after_backward=only_the_first_gamma_channel)
    moved = [
        (name, p.detach() != b)
        for (name, p), b in zip(trainer.model.named_parameters(), before)
        if (p.detach() != b).any()
    ]
    assert [name for name, _ in moved] == [f"blocks.{i}.norm.weight" for i in range(len(gammas))]
    assert all(changed[1:].sum() == 0 and changed[0] for _, changed in moved)


def test_unrecorded_forward_passes_inside_a_step_leave_the_record_alone():
    """A hook that runs the model again during a recorded step (as an experiment might) must
    not overwrite the step's statistics: unrecorded() switches recording off inside."""
    config = TrainConfig(**{**SMALL, "steps": 1})
    plain, nested = Trainer(config), Trainer(config)
    seen = []

    def again(module, inputs, output):
        if nested.recording:
            seen.append(True)
            with nested.unrecorded():
                assert not nested.recording
                nested.model.eval()
                nested.model(nested.eval_x[:4])
                nested.model.train()
            assert nested.recording

    nested.model.blocks[-1].act.register_forward_hook(again)
    plain.step(1)
    nested.step(1)
    assert seen == [True]
    for i in range(len(SMALL["widths"])):
        np.testing.assert_array_equal(
            plain.run.layer_stat(i, "batch_mean"), nested.run.layer_stat(i, "batch_mean")
        )


def test_an_mlp_trains_and_records_one_value_per_unit_and_image():
    """arch='mlp': every block's feature maps are 1x1, so a batch of N gives each unit
    (channel) m = N values; the recorded batch statistics and the tracked unit's percentiles
    are those of that unit over the batch, as BatchNorm1d would normalize it."""
    from bnviz.trainer import percentiles

    config = TrainConfig(arch="mlp", activation="sigmoid", widths=(12, 12), batch_size=16,
                         steps=6, snapshot_every=3, eval_every=3)  # fmt: skip
    trainer = Trainer(config)
    seen = []
    trainer.model.blocks[1].norm.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    act_in = []
    trainer.model.blocks[1].act.register_forward_hook(lambda m, i, o: act_in.append(i[0]))
    trainer.step(1)
    run = trainer.run
    assert [(info.side, info.values_per_channel, info.unit) for info in run.layers] == [
        (1, 1, (0, 0, 0))
    ] * 2
    x = seen[0][:, :, 0, 0].detach().double()
    assert run.layer_stat(1, "batch_mean")[0] == pytest.approx(x.mean(0).numpy(), abs=1e-6)
    var = x.var(0, unbiased=False).numpy()
    assert run.layer_stat(1, "batch_var")[0] == pytest.approx(var, rel=1e-4)
    expected = percentiles(act_in[0][:, 0, 0, 0].detach().numpy())
    np.testing.assert_allclose(run.snapshots[1].unit_percentiles[0], expected, rtol=1e-6)
    trainer.step(5)
    assert run.status == "completed" and run.eval_steps == [0, 3, 6]
    assert np.isfinite(run.metric("train_loss")).all()


def test_an_mlp_with_batchnorm_and_one_image_fails_with_pytorchs_message():
    trainer = Trainer(TrainConfig(arch="mlp", widths=(8,), batch_size=1, steps=2))
    trainer.step(1)
    assert trainer.run.status == "failed"
    assert "Expected more than 1 value per channel" in trainer.run.message
