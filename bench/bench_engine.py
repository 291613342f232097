"""Instrumentation overhead: bnviz.Trainer steps against a bare PyTorch loop on the same model,
batch size and optimizer, in one process, rounds interleaved, medians reported; and what the
dense early evaluations (trainer.EARLY_EVALS) add to a default run's first 100 steps.

    python -m bench.bench_engine [--rounds 11] [--steps 30] [--early-rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bnviz import TrainConfig, Trainer, datasets
from bnviz.config import MAX_STEPS_X_CHANNELS
from bnviz.model import build_model
from bnviz.trainer import EARLY_EVALS, Batches, eval_due, eval_every, snapshot_every, to_tensor


class BareLoop:
    """The same model, data order and optimizer, with nothing recorded."""

    def __init__(self, config: TrainConfig, data):
        self.data, self.config = data, config
        self.model = build_model(config, data.x_train.shape[1], len(data.classes))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=0.9)
        self.batches = Batches(len(data.y_train), config.seed)

    def step(self, n: int):
        for _ in range(n):
            idx = self.batches.next(self.config.batch_size)
            x = to_tensor(self.data, self.data.x_train[idx])
            y = torch.from_numpy(self.data.y_train[idx])
            loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()


def seconds_per_step(stepper, steps: int) -> float:
    """CPU seconds of this thread per step. With one torch thread all the work runs on the
    calling thread, and CPU time, unlike wall time, does not count the moments other
    processes on a shared machine hold the core: ratios stay steady run after run."""
    start = time.thread_time()
    stepper(steps)
    return (time.thread_time() - start) / steps


def early_eval_cost(rounds: int, steps: int = 100) -> dict:
    """CPU seconds of a default run's first `steps` steps with the early evaluations and
    without them (the same cadence otherwise), rounds interleaved, medians."""
    config = TrainConfig()
    data = datasets.load(config.dataset)
    seconds = {True: [], False: []}
    for _ in range(rounds):
        for early in (True, False):
            trainer = Trainer(config, data)
            trainer.eval_early = early
            start = time.thread_time()
            trainer.step(steps)
            seconds[early].append(time.thread_time() - start)
    with_early, without = (statistics.median(seconds[e]) for e in (True, False))
    every = eval_every(config)
    return {
        "steps": steps,
        "extra": sum(eval_due(s, every) != eval_due(s, every, False) for s in range(steps + 1)),
        "with": with_early,
        "without": without,
        "ratio": statistics.median(a / b for a, b in zip(seconds[True], seconds[False])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--steps", type=int, default=30, help="steps per round and variant")
    parser.add_argument("--early-rounds", type=int, default=5, help="rounds of the early-eval cost")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core per session, as on the shared server

    default = TrainConfig()
    # the default 300-step run's cadences, with a step budget that outlasts the benchmark
    cadence = {"snapshot_every": snapshot_every(default), "eval_every": eval_every(default)}
    most = MAX_STEPS_X_CHANNELS // sum(default.widths)  # the most steps the engine allows
    long = default.replace(steps=most, **cadence)
    trainers = {
        "default cadence (no eval)": Trainer(long.replace(eval_every=most)),
        "default cadence + eval": Trainer(long),
        "histograms every step": Trainer(long.replace(snapshot_every=1, eval_every=most)),
    }
    bare = BareLoop(default, trainers["default cadence + eval"].data)
    bare.step(3)
    for trainer in trainers.values():
        trainer.step(3)

    ratios = {name: [] for name in trainers}
    bare_times = []
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            base = seconds_per_step(bare.step, args.steps)
            ratios[name].append(seconds_per_step(trainer.step, args.steps) / base)
            bare_times.append(base)

    targets = {"default cadence (no eval)": 1.10, "histograms every step": 1.5}
    print(
        f"torch {torch.__version__}, 1 thread, batch {default.batch_size}, widths "
        f"{default.widths}, {args.rounds} rounds x {args.steps} steps, medians"
    )
    print()
    print("| measure | median | target |")
    print("|---|---|---|")
    for name, values in ratios.items():
        target = f"<= {targets[name]:.2f}" if name in targets else "(reported)"
        print(f"| step time ratio, {name} | {statistics.median(values):.3f} | {target} |")
    bare_step = statistics.median(bare_times)
    print(f"| bare PyTorch step | {bare_step * 1000:.1f} ms | |")
    instrumented = statistics.median(ratios["default cadence + eval"]) * bare_step
    print(f"| default config, steps per second (with eval) | {1 / instrumented:.1f} | |")
    early = early_eval_cost(args.early_rounds)
    print(
        f"| first {early['steps']} steps of a default run with / without the "
        f"{early['extra']} early evaluations (after steps {', '.join(map(str, EARLY_EVALS))}; "
        f"{args.early_rounds} rounds; {early['with']:.2f} s / {early['without']:.2f} s) "
        f"| {early['ratio']:.3f} | (reported) |"
    )


if __name__ == "__main__":
    main()
