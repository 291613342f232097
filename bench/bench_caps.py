"""What the resource caps in bnviz/config.py hold back: the peak memory and time of one training
step of a network and its twin at the default and at the caps, and what the run record costs
per step and channel (in memory and as saved JSON).

    python -m bench.bench_caps

Each step measurement runs in a fresh process (peak RSS above the process after loading the
data set, 3 lockstep steps, one torch thread, as on the server). About two minutes here.
"""

from __future__ import annotations

import json
import subprocess
import sys

STEP = """
import json, resource, time
import torch
torch.set_num_threads(1)
from bnviz import Lockstep, TrainConfig, datasets
datasets.load("shapes")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
config = TrainConfig(batch_size={batch}, widths={widths}, steps=50)
lock = Lockstep([config, config.replace(norm="none")])
lock.step(1)  # first-use costs
start = time.perf_counter()
lock.step(3)
seconds = (time.perf_counter() - start) / 3
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"peak_mb": peak - base, "step_s": seconds}}))
"""

CASES = [
    ("default", 64, (16, 32, 64)),
    ("batch x width at the cap: batch 512, width 16", 512, (16, 32, 64)),
    ("batch x width at the cap: batch 128, width 64, 6 blocks", 128, (64, 128, 128, 128, 128, 128)),
]


def _step(batch: int, widths: tuple) -> dict:
    code = STEP.format(batch=batch, widths=widths)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _record_cost(widths: tuple) -> tuple[float, float]:
    """Bytes per step and channel of the run record: in memory (its table) and as JSON, from
    the difference between 20 and 40 steps (no snapshots or evaluations in between)."""
    from bnviz import TrainConfig, Trainer

    config = TrainConfig(widths=widths, steps=40, snapshot_every=1000, eval_every=1000)
    trainer = Trainer(config)
    trainer.step(20)
    json_20 = len(trainer.run.to_json())
    trainer.step(20)
    json_40 = len(trainer.run.to_json())
    channels = sum(widths)
    row_bytes = trainer.run.table.nbytes / len(trainer.run.table._data)
    return row_bytes / channels, (json_40 - json_20) / 20 / channels


def _saved_mb(steps: int) -> float:
    """The saved JSON of the default network trained `steps` steps, in MiB (the upload cap's
    unit)."""
    from bnviz import TrainConfig, train

    return len(train(TrainConfig(steps=steps)).to_json()) / 2**20


def main() -> None:
    from bnviz.config import MAX_BATCH_X_WIDTH, MAX_STEPS_X_CHANNELS
    from bnviz.runfile import MAX_FILE_MB

    print(f"MAX_BATCH_X_WIDTH {MAX_BATCH_X_WIDTH:,}, MAX_STEPS_X_CHANNELS "
          f"{MAX_STEPS_X_CHANNELS:,}, MAX_FILE_MB {MAX_FILE_MB}\n")  # fmt: skip
    print("| one step of a network and its twin | peak RSS above base | time |")
    print("|---|---|---|")
    for name, batch, widths in CASES:
        r = _step(batch, widths)
        print(f"| {name} | {r['peak_mb']:.0f} MB | {r['step_s'] * 1000:.0f} ms |")
    print("\n| run record, per step and channel | in memory | saved JSON |")
    print("|---|---|---|")
    for widths in ((16, 32, 64), (64, 128, 128, 128, 128, 128)):
        memory, saved = _record_cost(widths)
        print(f"| widths {'/'.join(map(str, widths))} | {memory:.0f} B | {saved:.0f} B |")
    print("\n| saved run of the default network | JSON |")
    print("|---|---|")
    for steps in (300, 1000):
        print(f"| {steps} steps | {_saved_mb(steps):.1f} MB |")
    memory, saved = _record_cost((16, 32, 64))
    print(
        f"\nAt MAX_STEPS_X_CHANNELS: {MAX_STEPS_X_CHANNELS * memory / 1e6:.0f} MB in memory "
        f"and {MAX_STEPS_X_CHANNELS * saved / 1e6:.0f} MB of JSON per network; the default "
        f"run (300 steps, 112 channels) saves {300 * 112 * saved / 1e6:.1f} MB of per-step "
        "statistics, plus its snapshots."
    )


if __name__ == "__main__":
    main()
