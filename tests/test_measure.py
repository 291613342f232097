import numpy as np
import torch
from conftest import SMALL

from bnviz import TrainConfig, Trainer
from bnviz.measure import batch_noise, check_scratch_against_torch


def test_batch_noise_matches_a_recomputation_and_shrinks_with_batch_size(small_trainer):
    trainer = small_trainer
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    small = batch_noise(trainer, layer=1, channel=3, batch_size=4)
    large = batch_noise(trainer, layer=1, channel=3, batch_size=128)
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # eval mode: buffers untouched
    assert trainer.model.training
    # the full-data values, recomputed by hand through the same blocks
    captured = []
    handle = trainer.model.blocks[1].norm.register_forward_pre_hook(
        lambda m, a: captured.append(a[0][:, 3])
    )
    trainer.model.eval()
    with torch.no_grad():
        trainer.model(trainer.eval_x)
    trainer.model.train()
    handle.remove()
    values = captured[0]
    assert large.full_mean == np.float32(values.mean())
    np.testing.assert_allclose(large.full_var, values.var(unbiased=False), rtol=1e-5)
    assert len(small.batch_means) == len(large.batch_means) == 64
    assert small.batch_means.std() > 2 * large.batch_means.std()
    assert abs(large.batch_means.mean() - large.full_mean) < 3 * large.batch_means.std() + 1e-6
    assert batch_noise(trainer, 1, 3).batch_size == SMALL["batch_size"]


def test_scratch_check_agrees_with_torch():
    trainer = Trainer(TrainConfig(**{**SMALL, "steps": 3}))
    trainer.step(3)
    check = check_scratch_against_torch(trainer, layer=0)
    assert check.shape == (SMALL["batch_size"], SMALL["widths"][0], 28, 28)
    assert check.max_abs_diff_output < 1e-4
    assert check.max_abs_diff_running_mean < 1e-6
    assert check.max_abs_diff_running_var < 1e-5
