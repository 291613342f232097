"""The 'train-vs-eval' experiments: one BatchNorm network per seed, trained at batch 32, then
predicting held-out images one at a time in train and eval mode, tested with batch statistics
of test batches of several sizes and with precise statistics; networks trained at several batch
sizes, for the gap the app's meter shows; and the ValueError of one value per channel."""

from __future__ import annotations

import copy

import torch

from ..config import TrainConfig
from ..measure import precise_statistics
from ..model import block_sides, build_model
from ..trainer import Trainer, to_tensor
from .common import clean, float_list

WIDTHS = (8, 16, 32)
BATCH_SIZE = 32
STEPS = 200
SINGLE_IMAGES = 100  # held-out images predicted one at a time
EVAL_BATCHES = (1, 2, 4, 8, 16, 64)  # test batch sizes for the batch-statistics evaluation
PRECISE_BATCHES = 50  # training batches behind the precise statistics
TRAIN_STEPS = 300  # steps of the networks trained at each batch size
DEEP_WIDTHS = (4, 4, 8, 8, 16, 16)  # six blocks: 28 -> 14 -> 7 -> 4 -> 2 -> 1 pixels


def _config(batch_size: int, steps: int, seed: int, widths: tuple = WIDTHS) -> TrainConfig:
    return TrainConfig(
        widths=tuple(widths),
        batch_size=batch_size,
        steps=steps,
        seed=seed,
        snapshot_every=steps,
        eval_every=steps,
    )


def _batchnorms(model) -> list:
    """The norm layers with running statistics (torch's or bnviz's BatchNorm2d)."""
    return [b.norm for b in model.blocks if getattr(b.norm, "running_mean", None) is not None]


@torch.no_grad()
def predict_modes(trainer: Trainer, images: int = SINGLE_IMAGES, examples: int = 1) -> dict:
    """Predict `images` held-out images one at a time in eval mode (running statistics) and in
    train mode (each image normalized with its own statistics, per channel over H x W), and all
    of them as one batch in train mode. Works on a copy: the trainer's model and its running
    buffers are untouched."""
    model = copy.deepcopy(trainer.model)
    if not _batchnorms(model):
        return {"applicable": False, "norm": trainer.config.norm}
    n = min(images, len(trainer.eval_y))
    x, y = trainer.eval_x[:n], trainer.eval_y[:n]
    model.eval()
    p_eval = torch.cat([model(x[i : i + 1]) for i in range(n)]).softmax(1)
    model.train()
    for norm in _batchnorms(model):
        norm.track_running_stats = False  # batch statistics; buffers neither used nor updated
    p_single = torch.cat([model(x[i : i + 1]) for i in range(n)]).softmax(1)
    p_batch = model(x).softmax(1)
    pred_eval, pred_single, pred_batch = (p.argmax(1) for p in (p_eval, p_single, p_batch))
    classes = list(trainer.data.classes)
    # examples: where the two modes disagree first, then the rest in order
    order = sorted(range(n), key=lambda i: (bool(pred_eval[i] == pred_single[i]), i))[:examples]
    return {
        "applicable": True,
        "images": n,
        "classes": classes,
        "acc_eval": float((pred_eval == y).float().mean()),
        "acc_train_single": float((pred_single == y).float().mean()),
        "acc_train_batch": float((pred_batch == y).float().mean()),
        "agree": float((pred_eval == pred_single).float().mean()),
        "distinct_eval": len(set(pred_eval.tolist())),
        "distinct_single": len(set(pred_single.tolist())),
        "examples": [
            {
                "index": int(i),
                "label": classes[int(y[i])],
                "eval_class": classes[int(pred_eval[i])],
                "eval_prob": float(p_eval[i].max()),
                "train_class": classes[int(pred_single[i])],
                "train_prob": float(p_single[i].max()),
                "p_eval": float_list(p_eval[i]),
                "p_train": float_list(p_single[i]),
                "pixels": trainer.data.x_test[int(i), 0].astype(int).tolist(),
            }
            for i in order
        ],
    }


def one_network(
    seed: int = 0,
    steps: int = STEPS,
    images: int = SINGLE_IMAGES,
    batches: tuple = EVAL_BATCHES,
    widths: tuple = WIDTHS,
) -> dict:
    """Train one network at batch 32 (plain SGD steps), then: its held-out images predicted one
    at a time in both modes (predict_modes); test accuracy with running statistics and with the
    batch statistics of test batches of each size b (trainer.accuracy() at that batch size);
    and, last, with precise statistics (Ioffe & Szegedy's Algorithm 2, from PRECISE_BATCHES
    training batches of 32)."""
    trainer = Trainer(_config(BATCH_SIZE, steps, seed, widths))
    status, done = trainer.plain_steps(steps)
    out = {"seed": seed, "steps": done, "status": status, "batch_size": BATCH_SIZE}
    out["single"] = predict_modes(trainer, images)
    running, batch = [], []
    for b in batches:
        trainer.set(batch_size=b)
        acc_running, acc_batch = trainer.accuracy()
        running.append(acc_running)
        batch.append(clean(acc_batch))
    trainer.set(batch_size=BATCH_SIZE)
    precise = precise_statistics(trainer, batches=PRECISE_BATCHES)
    out.update(
        batch_sizes=[int(b) for b in batches],
        acc_running=running[0],  # eval mode does not depend on the test batch size
        acc_batch=batch,
        gap=[b - running[0] for b in batch],
        acc_precise=precise["acc_after"],
        precise_batches=precise["batches"],
    )
    return out


def train_at_batch(
    batch_size: int, steps: int = TRAIN_STEPS, seed: int = 0, widths: tuple = WIDTHS
) -> dict:
    """Train at this batch size (plain SGD steps); the gap the app's meter shows at the end
    (batch statistics from test batches of the training batch size, minus running statistics)."""
    trainer = Trainer(_config(batch_size, steps, seed, widths))
    status, done = trainer.plain_steps(steps)
    acc_running, acc_batch = trainer.accuracy()
    return {
        "batch_size": batch_size,
        "steps": done,
        "status": status,
        "acc_running": acc_running,
        "acc_batch": clean(acc_batch),
        "gap": clean(acc_batch - acc_running),
    }


@torch.no_grad()
def one_value_error(widths: tuple = DEEP_WIDTHS, seed: int = 0) -> dict:
    """A BatchNorm network whose last block is 1 x 1 pixels, fed one image in train mode:
    PyTorch raises ValueError. Caught; its message returned, with what does work instead."""
    from .. import datasets

    data = datasets.load("shapes")
    config = TrainConfig(widths=tuple(widths), batch_size=1, seed=seed)
    model = build_model(config, data.x_train.shape[1], len(data.classes))
    x = to_tensor(data, data.x_test[:2])
    sides = block_sides(data.x_train.shape[2], len(widths))
    out = {"widths": list(widths), "sides": sides, "values_per_channel": [s * s for s in sides]}

    def attempt(train: bool, images: int) -> str:
        model.train(train)
        try:
            model(x[:images])
        except ValueError as e:
            return str(e)
        return ""

    out["message"] = attempt(True, 1)
    out["raised"] = bool(out["message"])
    out["eval_mode_ok"] = attempt(False, 1) == ""
    out["batch_of_2_ok"] = attempt(True, 2) == ""
    return out
