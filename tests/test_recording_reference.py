"""What the trainer records at a step, against the same step redone by hand: gradients from
torch.autograd.grad, update ratios from the parameters before and after, histograms re-binned
with the stored edges."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL

from bnviz import TrainConfig, Trainer
from bnviz import trainer as trainer_module
from bnviz.model import build_model
from bnviz.record import HIST_KINDS

BEFORE = 8  # steps taken first: step 9 is the third snapshot (every 4 steps: 1, 5, 9)


def _redo(trainer: Trainer) -> dict:
    """The next step of `trainer`, redone on a copy of its model and optimizer (trainer
    itself is left as it was): each block's norm input, norm output and activation output,
    the gradients of the loss, and the parameters before and after the update."""
    config, data = trainer.config, trainer.data
    model = build_model(config, data.x_train.shape[1], len(data.classes))
    model.load_state_dict(trainer.model.state_dict())
    model.train()
    optimizer = trainer_module._optimizer(config, model)
    theirs, ours = trainer.optimizer.param_groups[0]["params"], optimizer.param_groups[0]["params"]
    for their_param, our_param in zip(theirs, ours, strict=True):  # state keyed by parameter
        if their_param in trainer.optimizer.state:
            state = trainer.optimizer.state[their_param]
            optimizer.state[our_param] = {k: v.clone() for k, v in state.items()}
    idx = trainer.batches.next(trainer.batch_size)
    trainer.batches.rewind()  # the trainer's own step draws the same batch
    x = trainer_module.to_tensor(data, data.x_train[idx])
    y = torch.from_numpy(data.y_train[idx])

    seen = {kind: [] for kind in HIST_KINDS}

    def on_norm(module, inputs, output):
        seen["pre_norm"].append(inputs[0])
        seen["post_norm"].append(output)

    def on_act(module, inputs, output):
        seen["post_act"].append(output)

    for block in model.blocks:
        block.norm.register_forward_hook(on_norm)
        block.act.register_forward_hook(on_act)
    loss = F.cross_entropy(model(x), y)
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
    grads = torch.autograd.grad(loss, [*seen["pre_norm"], *params])
    input_grads, param_grads = grads[: len(model.blocks)], grads[len(model.blocks) :]
    before = [p.detach().clone() for p in params]
    for p, g in zip(params, param_grads):
        p.grad = g
    optimizer.step()
    return {
        "tensors": {k: [t.detach() for t in v] for k, v in seen.items()},
        "input_grad_norm": [float(g.double().norm()) for g in input_grads],
        "grad_norm": {n: float(g.double().norm()) for n, g in zip(names, param_grads)},
        "update_ratio": {
            n: float((p.detach().double() - b.double()).norm() / p.detach().double().norm())
            for n, p, b in zip(names, params, before)
        },
    }


@pytest.fixture(scope="module")
def stepped():
    """A SMALL run after BEFORE + 1 steps, and its last step redone by hand."""
    trainer = Trainer(TrainConfig(**SMALL))
    trainer.step(BEFORE)
    reference = _redo(trainer)
    trainer.step(1)
    assert trainer.steps_done == BEFORE + 1
    assert trainer.run.snapshots[0].steps[-1] == BEFORE + 1  # a snapshot step
    return trainer.run, reference


def test_input_and_parameter_gradients_match_autograd(stepped):
    run, reference = stepped
    close = dict(rel=2e-4, abs=1e-7)  # float32 forward and backward, summed in other orders
    for i, info in enumerate(run.layers):
        # the gradient of the loss with respect to the norm's input, not its output
        recorded = float(run.layer_stat(i, "input_grad_norm")[-1])
        assert recorded == pytest.approx(reference["input_grad_norm"][i], **close), info.name
        gamma_beta = [reference["grad_norm"][f"blocks.{i}.norm.{k}"] for k in ("weight", "bias")]
        recorded = float(run.layer_stat(i, "param_grad_norm")[-1])
        assert recorded == pytest.approx(float(np.hypot(*gamma_beta)), **close), info.name
    assert set(run.params) == set(reference["grad_norm"])
    for name in run.params:
        for stat in ("grad_norm", "update_ratio"):
            recorded = float(run.param_stat(name, stat)[-1])
            assert recorded == pytest.approx(reference[stat][name], **close), (name, stat)


def _bins(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value's bin by the edges (bin k holds edges[k] <= v < edges[k + 1]; values beyond
    the edges in the end bins), and whether it lies so close to an inner edge (1e-5 of a bin)
    that float32 rounding may put it on either side."""
    bins = len(edges) - 1
    v = values.astype(np.float64).ravel()
    e = edges.astype(np.float64)
    index = np.clip(np.searchsorted(e, v, side="right") - 1, 0, bins - 1)
    position = (v - e[0]) / (e[-1] - e[0]) * bins
    nearest = np.rint(position)
    ambiguous = (np.abs(position - nearest) < 1e-5) & (nearest > 0) & (nearest < bins)
    return index, ambiguous


def _check_counts(recorded: np.ndarray, values: np.ndarray, edges: np.ndarray, what: str):
    """recorded must be the counts of values in the stored edges: exactly, but for values on an
    inner edge to within rounding, which may count on either side of it."""
    bins = len(edges) - 1
    index, ambiguous = _bins(values, edges)
    certain = np.bincount(index[~ambiguous], minlength=bins)
    near = np.zeros(bins, np.int64)  # values that may count in each bin
    for k in index[ambiguous]:
        near[max(k - 1, 0) : k + 2] += 1
    assert recorded.sum() == values.size, what
    assert (certain <= recorded).all() and (recorded <= certain + near).all(), (
        what,
        recorded.tolist(),
        certain.tolist(),
    )
    assert ambiguous.sum() <= max(2, 1e-4 * values.size), what  # nearly all binned exactly


def test_later_snapshots_count_into_the_stored_edges(stepped):
    run, reference = stepped
    images = trainer_module.HIST_IMAGES
    for i, info in enumerate(run.layers):
        snaps = run.snapshots[i]
        for kind in HIST_KINDS:
            edges = snaps.edges[kind]
            values = reference["tensors"][kind][i][:images].numpy()
            what = f"{info.name} {kind} at step {snaps.steps[-1]}"
            _check_counts(snaps.hist[kind][-1], values, edges, what)
            for channel in range(info.tracked_channels):
                recorded = snaps.channel_hist[kind][-1][channel]
                _check_counts(recorded, values[:, channel], edges, f"{what}, channel {channel}")
