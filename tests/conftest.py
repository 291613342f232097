import pytest
import torch

from bnviz import TrainConfig, Trainer

# A small, fast configuration that still records everything: 2 blocks, 40 steps.
SMALL = dict(widths=(8, 16), batch_size=32, steps=40, snapshot_every=4, eval_every=10)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small_trainer() -> Trainer:
    """A finished SMALL run; tests must not step it further."""
    trainer = Trainer(TrainConfig(**SMALL))
    trainer.step(SMALL["steps"])
    return trainer
