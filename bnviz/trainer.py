"""Instrumented training: Trainer steps one model and records every BatchNorm statistic into a
Run; Lockstep trains several models on the same batches; train() runs a config to the end."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import os
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import datasets, optim
from .config import LIVE_FIELDS, TrainConfig
from .datasets import Dataset
from .model import build_model
from .record import HIST_KINDS, MAX_MESSAGE, MAX_SNAPSHOTS, Run, layer_infos

log = logging.getLogger(__name__)

HIST_BINS = 40
EVAL_SIZE = 500  # held-out images used for test accuracy
EVAL_CHUNK = 100  # evaluated this many at a time (eval mode: each image on its own anyway)
MIN_SNAPSHOT_EVERY = 5  # histograms cost time: at most one snapshot every 5 steps by default
MIN_EVAL_EVERY = 25
# With the automatic cadence, test accuracy is also measured after these steps: the first
# steps are where students look first, and a run's first 25 steps otherwise show step 0's.
EARLY_EVALS = (5, 10, 20)
EXPLODED = 100.0  # a loss this many times the first step's loss counts as diverged
PERCENTILES = (15.0, 50.0, 85.0)
# Histograms, layer percentiles and saturation use the batch's first 8 images: 8 x side x side
# values per channel (392 in the default network's last block, 7 x 7), plenty for 40 bins, at
# half the cost of 16.
HIST_IMAGES = 8
PERCENTILE_SAMPLE = 4096  # layer percentiles from an evenly strided subsample of those


def snapshot_every(config: TrainConfig) -> int:
    """Histogram cadence: at most about MAX_SNAPSHOTS per run, at least MIN_SNAPSHOT_EVERY."""
    if config.snapshot_every is not None:
        return config.snapshot_every
    return max(MIN_SNAPSHOT_EVERY, math.ceil(config.steps / MAX_SNAPSHOTS))


def eval_every(config: TrainConfig) -> int:
    """Test-accuracy cadence: about 20 evaluations per run, at least MIN_EVAL_EVERY steps apart
    (and, when automatic, at EARLY_EVALS as well: see eval_due)."""
    if config.eval_every is not None:
        return config.eval_every
    return max(MIN_EVAL_EVERY, math.ceil(config.steps / 20))


def eval_due(step: int, every: int, early: bool = True) -> bool:
    """Whether test accuracy is measured after `step` steps: every `every` steps (step 0,
    the untrained model, included) and, with `early`, also after each of EARLY_EVALS."""
    return step % every == 0 or (early and step in EARLY_EVALS)


def _generator(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


class Batches:
    """Endless shuffled mini-batches, one permutation per epoch, from the run's own generator."""

    def __init__(self, size: int, seed: int):
        self.size, self.rng = size, _generator(seed, 1)
        self.order, self.pos = self.rng.permutation(size), 0

    def next(self, batch_size: int) -> np.ndarray:
        self.before = (self.order, self.pos, self.rng.bit_generator.state)  # see rewind()
        if batch_size > self.size:
            raise ValueError(f"batch_size {batch_size} is larger than the data set ({self.size})")
        if self.pos + batch_size > self.size:
            self.order, self.pos = self.rng.permutation(self.size), 0
        idx = self.order[self.pos : self.pos + batch_size]
        self.pos += batch_size
        return idx

    def rewind(self) -> None:
        """Put the latest batch back: the next one drawn is the same (at the same size)."""
        self.order, self.pos, self.rng.bit_generator.state = self.before


def to_tensor(data: Dataset, images: np.ndarray) -> torch.Tensor:
    """uint8 images -> float32, normalized by the training set's per-channel mean and std."""
    x = torch.from_numpy(np.array(images, dtype=np.float32)).div_(255)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std)


class _Histogram:
    """Fixed-edge histograms of one tensor kind of one block, over all channels at once."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high
        self.edges = np.linspace(low, high, HIST_BINS + 1, dtype=np.float32)

    def counts(self, x: torch.Tensor) -> torch.Tensor:
        """channels x bins counts; values outside the edges land in the end bins."""
        channels = x.shape[1]
        scale = HIST_BINS / (self.high - self.low)
        # bin positions, clamped into [0, HIST_BINS): truncation toward zero is then floor
        # (a NaN of a diverging run counts into the first bin rather than breaking bincount)
        pos = (x - self.low).mul_(scale).nan_to_num_(0.0).clamp_(0, HIST_BINS - 0.5)
        # one bincount for all channels: channel c counts into bins c * HIST_BINS + ...
        idx = pos.add_(_channel_offsets(channels)).int()
        return torch.bincount(idx.flatten(), minlength=channels * HIST_BINS).view(channels, -1)


@functools.cache
def _channel_offsets(channels: int) -> torch.Tensor:
    return (torch.arange(channels, dtype=torch.float32) * HIST_BINS).view(1, -1, 1, 1)


def percentiles(values: np.ndarray) -> np.ndarray:
    """PERCENTILES of values, as np.percentile's default (linear) method gives them: a sort
    and an interpolation cost a fraction of np.percentile's own overhead at these sizes."""
    ordered = np.sort(values, axis=None)
    position = np.asarray(PERCENTILES) / 100 * (len(ordered) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def _edges_for(kind: str, activation: str, x: torch.Tensor) -> _Histogram:
    """Bin edges chosen at the first snapshot and kept for the whole run."""
    if kind == "post_act" and activation == "sigmoid":
        return _Histogram(0.0, 1.0)
    if kind == "post_act" and activation == "tanh":
        return _Histogram(-1.0, 1.0)
    reach = float(x.abs().max()) * 1.5 or 1.0
    if not math.isfinite(reach):
        reach = 1.0
    if kind == "post_act":  # relu
        return _Histogram(0.0, reach)
    return _Histogram(-reach, reach)


def _batch_stats(norm: nn.Module, x: torch.Tensor, output: torch.Tensor) -> list[torch.Tensor]:
    """Per-channel batch mean and biased variance of the norm's input, as used to normalize.
    For torch's BatchNorm they are read back from what autograd saved (mean and 1/sqrt(var +
    eps)) rather than recomputed: two passes over the activations saved on every step."""
    node = output.grad_fn
    if isinstance(norm, nn.BatchNorm2d) and type(node).__name__ == "NativeBatchNormBackward0":
        var = 1 / node._saved_result2.double().square() - norm.eps
        # float32 invstd carries var + eps to ~1e-7: fine unless eps dwarfs the variance
        if bool((var > 1e-3 * norm.eps).all()):
            return [node._saved_result1, var.float()]
    mean = x.mean(dim=(0, 2, 3))
    # mean of squared deviations: torch.var_mean is several times slower on CPU
    var = (x - mean.view(1, -1, 1, 1)).square_().mean(dim=(0, 2, 3))
    return [mean, var]


def _saturated(activation: str, act_out: torch.Tensor) -> float:
    """relu: fraction exactly 0 (dead); tanh |y| > 0.97; sigmoid y < 0.015 or y > 0.985."""
    if activation == "relu":
        hits = torch.count_nonzero(act_out <= 0)
    elif activation == "tanh":
        hits = torch.count_nonzero(act_out.abs() > 0.97)
    else:
        hits = torch.count_nonzero((act_out - 0.5).abs() > 0.485)
    return int(hits) / act_out.numel()


class _Probe:
    """Forward hooks on one block's norm and activation; collects this step's tensors."""

    def __init__(self, trainer: Trainer, index: int, block: nn.Module):
        self.trainer, self.index, self.block = trainer, index, block
        self.hists: dict[str, _Histogram] = {}
        self.step_stats: list[torch.Tensor] = []
        self.input_grad_norm = torch.zeros(())
        block.norm.register_forward_hook(self._on_norm)
        block.act.register_forward_hook(self._on_act)

    def _on_norm(self, module, inputs, output):
        if not self.trainer._recording:
            return
        x = inputs[0]
        with torch.no_grad():
            self.step_stats = _batch_stats(module, x, output)
            if self.trainer._snapshot:
                self._hist("pre_norm", x[:HIST_IMAGES])
                self._hist("post_norm", output[:HIST_IMAGES])
        if x.requires_grad:
            x.register_hook(self._on_input_grad)

    def _on_input_grad(self, grad):
        flat = grad.detach().reshape(-1)
        self.input_grad_norm = torch.dot(flat, flat).sqrt()  # BLAS: faster than .norm() here

    def _on_act(self, module, inputs, output):
        if not (self.trainer._recording and self.trainer._snapshot):
            return
        with torch.no_grad():
            output = output[:HIST_IMAGES]
            self._hist("post_act", output)
            pre_act = inputs[0]
            channel, y, x = self.trainer.run.layers[self.index].unit
            flat = pre_act[:HIST_IMAGES].flatten()
            sample = flat[:: max(1, flat.numel() // PERCENTILE_SAMPLE)].numpy()
            unit = pre_act[:, channel, y, x].numpy()
            self.snapshot["unit_percentiles"] = percentiles(unit)
            self.snapshot["layer_percentiles"] = percentiles(sample)
            activation = self.trainer.config.activation
            self.snapshot["saturated_fraction"] = _saturated(activation, output)

    def _hist(self, kind: str, x: torch.Tensor):
        if kind not in self.hists:
            self.hists[kind] = _edges_for(kind, self.trainer.config.activation, x)
        counts = self.hists[kind].counts(x)
        tracked = self.trainer.run.layers[self.index].tracked_channels
        self.snapshot[kind] = (counts.sum(0).numpy(), counts[:tracked].numpy())

    def begin_step(self):
        self.snapshot: dict = {}
        self.input_grad_norm = torch.zeros(())


class Trainer:
    """Trains one model, step by step, recording into `self.run` (a bnviz.Run)."""

    def __init__(self, config: TrainConfig, data: Dataset | None = None):
        self.config = config
        self.data = data if data is not None else datasets.load(config.dataset)
        if config.batch_size > len(self.data.y_train):
            raise ValueError(
                f"batch_size must be at most {len(self.data.y_train)}, the size of the "
                f"{config.dataset} training set; got {config.batch_size}"
            )
        in_channels, side = self.data.x_train.shape[1], self.data.x_train.shape[2]
        self.model = build_model(config, in_channels, len(self.data.classes), side)
        self.optimizer = _optimizer(config, self.model)
        self.batches = Batches(len(self.data.y_train), config.seed)
        self.eval_x = to_tensor(self.data, self.data.x_test[:EVAL_SIZE])
        self.eval_y = torch.from_numpy(self.data.y_test[:EVAL_SIZE].copy())
        self.snapshot_every = snapshot_every(config)
        self.eval_every = eval_every(config)
        self.eval_early = config.eval_every is None  # a set cadence is kept exactly
        self.params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self._param_index = {name: i for i, (name, _) in enumerate(self.params)}
        layers = layer_infos(config, side)
        self.run = Run(config, layers, [n for n, _ in self.params], HIST_IMAGES)
        self._recording = self._snapshot = False
        self.probes = [_Probe(self, i, b) for i, b in enumerate(self.model.blocks)]
        self._first_loss: float | None = None
        self._buffers: list[torch.Tensor] = []
        self.evaluate()

    @property
    def finished(self) -> bool:
        return self.run.status != "running"

    @property
    def steps_done(self) -> int:
        return self.run.num_steps

    def step(self, n: int = 1) -> Run:
        """Advance up to n optimizer steps (fewer if the run diverges or fails)."""
        for _ in range(n):
            if self.finished:
                break
            before = self.steps_done
            try:
                self._one_step()
            except Exception as e:
                # Out of memory, say, in the forward or backward pass: the run ends and says
                # why, its record as it was. A failure while recording a step is a bug: raised.
                if self.steps_done != before or os.environ.get("BNVIZ_RAISE"):
                    raise
                log.exception("training step failed")
                self._end("failed", _failure_message(before + 1, e))
        return self.run

    def set(self, **changes) -> None:
        """Change batch_size, lr, eps or momentum from the next step on; recorded in run.changes
        (eps and momentum reach only norms that have them)."""
        for name, value in changes.items():
            if name not in LIVE_FIELDS:
                allowed = ", ".join(LIVE_FIELDS)
                raise ValueError(f"only {allowed} can change mid-run; got {name!r}")
            self.config.replace(**{name: value})  # validates the value
            if name == "batch_size" and value > len(self.data.y_train):
                raise ValueError(f"batch_size must be at most {len(self.data.y_train)}")
            old = self.run.setting_at(name)
            if value == old:
                continue
            if name == "lr":
                for group in self.optimizer.param_groups:
                    group["lr"] = float(value)
            elif name in ("eps", "momentum"):
                for block in self.model.blocks:
                    if hasattr(block.norm, name):
                        setattr(block.norm, name, value)
            step = self.steps_done + 1
            self.run.changes.append({"step": step, "field": name, "old": old, "new": value})

    @property
    def batch_size(self) -> int:
        return self.run.setting_at("batch_size")

    def _one_step(self):
        config, model = self.config, self.model
        step = self.steps_done + 1
        # the running statistics as they were: a step that ends the run puts them back
        self._buffers = [b.clone() for b in model.buffers()]
        idx = self.batches.next(self.batch_size)
        x = to_tensor(self.data, self.data.x_train[idx])
        y = torch.from_numpy(self.data.y_train[idx])
        snapshot = (step - 1) % self.snapshot_every == 0
        for probe in self.probes:
            probe.begin_step()
        self._recording, self._snapshot = True, snapshot
        try:
            logits = model(x)
        except ValueError as e:  # e.g. one value per channel in BatchNorm
            self._end("failed", str(e))
            return
        finally:
            self._recording = False
        loss = F.cross_entropy(logits, y)
        loss_value = loss.item()
        if self._first_loss is None:
            self._first_loss = loss_value
        if not math.isfinite(loss_value) or loss_value > EXPLODED * max(self._first_loss, 1e-3):
            self.run.diverged_step = step
            eps_zero = config.norm != "none" and self.run.setting_at("eps") == 0
            self._end("diverged", _divergence_message(step, loss_value, self._first_loss, eps_zero))
            return
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for _, p in self.params]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        grad_norms = torch._foreach_norm(grads)
        before = [p.detach().clone() for p in params]
        self.optimizer.step()
        with torch.no_grad():
            update_norms = torch._foreach_norm(torch._foreach_sub(params, before))
            weight_norms = torch._foreach_norm(params)
            ratios = torch.stack(update_norms) / torch.stack(weight_norms).clamp_min(1e-12)
            acc = (logits.argmax(1) == y).float().mean()
            row = [torch.tensor([float(step), loss_value]), acc.view(1)]
            for i, (probe, block) in enumerate(zip(self.probes, self.model.blocks)):
                info = self.run.layers[i]
                row += probe.step_stats
                if info.has_running_stats:
                    row += [block.norm.running_mean, block.norm.running_var]
                own = []
                if info.has_affine:
                    row += [block.norm.weight.detach(), block.norm.bias.detach()]
                    prefix = f"blocks.{i}.norm."
                    own = [grad_norms[self._param_index[prefix + k]] for k in ("weight", "bias")]
                param_norm = torch.stack(own).norm() if own else torch.zeros(())
                row += [probe.input_grad_norm.view(1), param_norm.view(1)]
            row += [torch.stack([g, r]) for g, r in zip(grad_norms, ratios)]
            values = torch.cat([t.float().flatten() for t in row]).numpy()
        self.run.table.append(values)
        if snapshot:
            self._store_snapshots(step)
        if eval_due(step, self.eval_every, self.eval_early):
            self.evaluate()
        if step >= config.steps and self.run.status == "running":
            self._end("completed", f"finished {step} steps")

    def _store_snapshots(self, step: int):
        if len(self.run.snapshots[0].steps) >= MAX_SNAPSHOTS:
            for snaps in self.run.snapshots:
                snaps.thin()
            self.snapshot_every *= 2
        for probe, snaps in zip(self.probes, self.run.snapshots):
            snaps.steps.append(step)
            for kind in HIST_KINDS:
                snaps.edges.setdefault(kind, probe.hists[kind].edges)
                layer_counts, channel_counts = probe.snapshot[kind]
                snaps.hist.setdefault(kind, []).append(layer_counts.astype(np.int32))
                snaps.channel_hist.setdefault(kind, []).append(channel_counts.astype(np.int32))
            snaps.unit_percentiles.append(probe.snapshot["unit_percentiles"].astype(np.float32))
            snaps.layer_percentiles.append(probe.snapshot["layer_percentiles"].astype(np.float32))
            snaps.saturated_fraction.append(float(np.float32(probe.snapshot["saturated_fraction"])))

    def evaluate(self) -> tuple[float, float]:
        """Measure test accuracy (see accuracy()) and record it in the run."""
        acc_running, acc_batch = self.accuracy()
        run = self.run
        if len(run.eval_steps) >= MAX_SNAPSHOTS:
            run.eval_steps = run.eval_steps[::2]
            run.acc_running_stats = run.acc_running_stats[::2]
            run.acc_batch_stats = run.acc_batch_stats[::2]
            self.eval_every *= 2
        run.eval_steps.append(self.steps_done)
        run.acc_running_stats.append(float(np.float32(acc_running)))
        run.acc_batch_stats.append(float(np.float32(acc_batch)))
        return acc_running, acc_batch

    @torch.no_grad()
    def accuracy(self) -> tuple[float, float]:
        """Test accuracy with running statistics (eval mode) and with batch statistics (train
        mode, batches of the training batch size); the running buffers are left untouched."""
        model = self.model
        acc_running = self.eval_accuracy()
        if self.config.norm == "batch":
            model.train()
            norms = [b.norm for b in model.blocks]
            for norm in norms:
                norm.track_running_stats = False  # batch statistics, buffers not updated
            try:
                size = min(self.batch_size, len(self.eval_y))
                usable = len(self.eval_y) // size * size
                logits = torch.cat([model(x) for x in self.eval_x[:usable].split(size)])
                acc_batch = _accuracy(logits, self.eval_y[:usable])
            except ValueError:  # one value per channel: batch statistics are undefined
                acc_batch = math.nan
            finally:
                for norm in norms:
                    norm.track_running_stats = True
        else:
            acc_batch = acc_running  # no running statistics: both modes compute the same thing
        model.train()
        return acc_running, acc_batch

    @torch.no_grad()
    def eval_accuracy(self) -> float:
        """Test accuracy in eval mode (running statistics) on the held-out images: the first
        half of accuracy(), at half its cost."""
        self.model.eval()
        try:
            # in chunks: one pass over all 500 images would hold ~100 MB of activations at once
            logits = torch.cat([self.model(x) for x in self.eval_x.split(EVAL_CHUNK)])
            return _accuracy(logits, self.eval_y)
        finally:
            self.model.train()

    # ---- experiments: training and measuring outside the record ----
    # Scenarios and measurements drive the model through these, never through the trainer's
    # batches, optimizer or recording switch: what they do is not part of the run record.

    @property
    def recording(self) -> bool:
        """True only during the forward pass of a recorded training step (step()): a hook of an
        experiment can tell it from evaluation and from plain steps."""
        return self._recording

    @contextlib.contextmanager
    def unrecorded(self):
        """Forward passes inside are not recorded, even when run from a hook within a step."""
        was_recording, self._recording = self._recording, False
        try:
            yield
        finally:
            self._recording = was_recording

    def next_batch(self, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The next training batch in the run's own order (the one step() draws from), as
        normalized images and labels; `batch_size` defaults to the one in force."""
        idx = self.batches.next(batch_size or self.batch_size)
        x, y = self.data.x_train[idx], self.data.y_train[idx]
        return to_tensor(self.data, x), torch.from_numpy(y)

    def plain_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        after_backward: Callable[[], None] | None = None,
    ) -> float:
        """One optimizer step on (x, y) in train mode with nothing recorded: cross-entropy,
        backward, after_backward() (to mask gradients, say), then `optimizer` (by default the
        run's own). Returns the loss before the step; a non-finite loss leaves the weights as
        they were. Raises ValueError where a BatchNorm gets one value per channel."""
        self.model.train()
        loss = F.cross_entropy(self.model(x), y)
        value = loss.item()
        if not math.isfinite(value):
            return value
        optimizer = optimizer or self.optimizer
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward()
        optimizer.step()
        return value

    def plain_steps(self, n: int, **step) -> tuple[str, int]:
        """`n` plain_step()s on the run's next batches (several times cheaper per step than
        step() at tiny batch sizes). Returns (status, steps done): 'completed', 'diverged'
        (a non-finite loss, its step counted) or 'failed' (one value per channel)."""
        for k in range(n):
            x, y = self.next_batch()
            try:
                loss = self.plain_step(x, y, **step)
            except ValueError:
                return "failed", k
            if not math.isfinite(loss):
                return "diverged", k + 1
        return "completed", n

    def stop(self, reason: str = "stopped by the user") -> None:
        """End a running run early (status 'stopped')."""
        if not self.finished:
            self._end("stopped", reason)

    def _end(self, status: str, message: str):
        if status in ("completed", "stopped") and self.run.eval_steps[-1] != self.steps_done:
            self.evaluate()
        if status in ("failed", "diverged"):
            self._undo_step()
        self.run.status, self.run.message = status, message[:MAX_MESSAGE]

    def _undo_step(self) -> None:
        """Undo what the step that failed or diverged did before it stopped: its forward pass
        updated the running statistics of the blocks it went through, and it drew a batch.
        (It never reached the optimizer.) The run can then go on from the step before."""
        with torch.no_grad():
            for buffer, saved in zip(self.model.buffers(), self._buffers):
                buffer.copy_(saved)
        self.batches.rewind()
        if self.steps_done == 0:
            self._first_loss = None  # the reference for divergence is the first recorded loss

    def resume(self, extra_steps: int = 0) -> None:
        """Reopen an ended run (completed, stopped, failed or diverged) to train on, with
        `extra_steps` more steps in its budget (config.steps grows, within the caps). A failed
        or diverged step changed nothing (see _undo_step), so the run goes on from the step
        before it, and the record reads as if it had never ended."""
        if extra_steps:
            self.config = self.config.replace(steps=self.config.steps + extra_steps)
            self.run.config = self.config
        if self.finished and self.steps_done < self.config.steps:
            self.run.status, self.run.message, self.run.diverged_step = "running", "", None


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


def _optimizer(config: TrainConfig, model: nn.Module) -> optim.SGD | optim.Adam:
    """torch.optim's SGD (momentum 0.9) or Adam, bit for bit; see bnviz/optim.py for why."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return optim.Adam(params, lr=config.lr)
    return optim.SGD(params, lr=config.lr, momentum=0.9)


def _failure_message(step: int, error: Exception) -> str:
    if isinstance(error, MemoryError) or "allocate" in str(error):
        return (
            f"failed at step {step}: the server ran out of memory for this run. Choose a "
            "smaller batch or network."
        )
    text = f"{type(error).__name__}: {error}"
    return f"failed at step {step}: an error in the training step ({text[:300]})"


def _divergence_message(step: int, loss: float, first: float, eps_zero: bool = False) -> str:
    if not math.isfinite(loss) and eps_zero:
        return (
            f"diverged at step {step}: the loss became {loss}. eps is 0, so a channel whose "
            "values are all equal in this batch (variance 0, e.g. a ReLU that is off for every "
            "image) was normalized as 0 / sqrt(0 + 0) = nan, and the nan spread to the loss. "
            "This is what eps is for: any eps above 0 avoids it."
        )
    if not math.isfinite(loss):
        what = f"the loss became {loss}"
    else:
        what = f"the loss reached {loss:.3g}, over {EXPLODED:g} times its first value ({first:.3g})"
    return (
        f"diverged at step {step}: {what}. The updates grew too large for the weights: try a "
        "smaller learning rate, or normalization, which keeps activations at a stable scale."
    )


class Lockstep:
    """Several trainers stepped together on the same batches, in the same order, from identical
    conv/linear initial weights (where shapes match). Configs must share dataset, batch size
    and seed; a run in lockstep equals the same config trained alone."""

    def __init__(self, configs: list[TrainConfig]):
        if not configs:
            raise ValueError("Lockstep needs at least one config")
        first = configs[0]
        for c in configs[1:]:
            for name in ("dataset", "batch_size", "seed"):
                if getattr(c, name) != getattr(first, name):
                    raise ValueError(
                        f"Lockstep configs must share {name}; got {getattr(c, name)!r}"
                        f" and {getattr(first, name)!r}"
                    )
        data = datasets.load(first.dataset)
        self.trainers = [Trainer(c, data) for c in configs]

    @property
    def runs(self) -> list[Run]:
        return [t.run for t in self.trainers]

    def clone(self) -> Lockstep:
        """An independent copy that continues exactly as this one would: models, optimizer
        state, data order and records. The data set and held-out images are shared, not
        copied (nothing writes to them)."""
        shared = {}
        for trainer in self.trainers:
            for value in (trainer.data, trainer.eval_x, trainer.eval_y):
                shared[id(value)] = value
        return copy.deepcopy(self, shared)

    @property
    def finished(self) -> bool:
        return all(t.finished for t in self.trainers)

    def step(self, n: int = 1) -> list[Run]:
        """Advance every unfinished trainer by up to n steps, one step each in turn, the first
        one leading: the others never go past its step. So a twin that diverges does not hold
        up the first, and when the first fails or diverges (its step undone, see
        Trainer._undo_step) the others wait at its step, ready to resume together."""
        lead = self.trainers[0]
        for _ in range(n):
            lead.step(1)
            for trainer in self.trainers[1:]:
                if trainer.steps_done < lead.steps_done:
                    trainer.step(1)
        return self.runs

    def resume(self, extra_steps: int = 0) -> None:
        """Trainer.resume on the first trainer and on every other one still at its step (one
        that ended earlier stays ended: its curves end there)."""
        steps = self.trainers[0].steps_done
        for trainer in self.trainers:
            if trainer.steps_done == steps:
                trainer.resume(extra_steps)

    def set(self, **changes) -> None:
        """Trainer.set on every member, so they stay in lockstep."""
        for trainer in self.trainers:
            trainer.set(**changes)


def train(
    config: TrainConfig,
    on_record: Callable[[Run], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    chunk: int = 10,
) -> Run:
    """Train `config` to the end. on_record(run) is called after every chunk of steps;
    should_stop() returning True ends the run with status 'stopped'."""
    trainer = Trainer(config)
    while not trainer.finished:
        if should_stop is not None and should_stop():
            trainer.stop()
            break
        trainer.step(min(chunk, config.steps - trainer.steps_done))
        if on_record is not None:
            on_record(trainer.run)
    return trainer.run
