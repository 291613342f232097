"""Command line: python -m bnviz train --set batch_size=16 --set norm=none --out run.json, and
python -m bnviz precompute (the scenarios' default results shipped in assets/precomputed/)."""

from __future__ import annotations

import argparse
import ast
import sys
import time

from .config import FIELDS, TrainConfig
from .datasets import DatasetUnavailable
from .trainer import train

EXAMPLES = """examples:
  python -m bnviz train
  python -m bnviz train --set batch_size=16 --set norm=none --out run.json
  python -m bnviz train --set widths=32,64 --set momentum=None --set steps=500
  python -m bnviz precompute
  python -m bnviz precompute --scenario momentum-lag --scenario epsilon
"""


def parse_value(text: str):
    """'16' -> 16, '1e-3' -> 0.001, 'None' -> None, '16,32' -> (16, 32), else the string."""
    if "," in text:
        return tuple(parse_value(part) for part in text.split(",") if part)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def config_from_sets(pairs: list[str]) -> TrainConfig:
    """TrainConfig from 'key=value' strings; raises ValueError naming the bad key or value."""
    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"--set takes key=value; got {pair!r}")
        values[key.strip()] = parse_value(text.strip())
    if isinstance(values.get("widths"), int):
        values["widths"] = (values["widths"],)
    return TrainConfig.from_dict(values)


def _progress(run, started: float):
    done, total = run.num_steps, run.config.steps
    width = 30
    filled = width * done // total
    loss = run.metric("train_loss")[-1] if done else float("nan")
    rate = done / max(time.perf_counter() - started, 1e-9)
    bar = "#" * filled + "." * (width - filled)
    sys.stderr.write(f"\r[{bar}] {done}/{total} steps  loss {loss:.3f}  {rate:.0f} steps/s ")
    sys.stderr.flush()


def cmd_train(args) -> int:
    try:
        config = config_from_sets(args.set)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        run = train(config, on_record=lambda r: _progress(r, started))
    except DatasetUnavailable as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    sys.stderr.write("\n")
    seconds = time.perf_counter() - started
    print(f"status: {run.status} ({run.message})")
    print(f"steps: {run.num_steps} in {seconds:.1f} s ({run.num_steps / seconds:.1f} steps/s)")
    if run.num_steps:
        print(f"final train loss: {run.metric('train_loss')[-1]:.4f}")
    print(f"test accuracy, running statistics: {run.acc_running_stats[-1]:.1%}")
    print(f"test accuracy, batch statistics:   {run.acc_batch_stats[-1]:.1%}")
    if args.out:
        print(f"saved: {run.save(args.out)}")
    return 0


def cmd_precompute(args) -> int:
    from . import precompute  # imports every scenario: only when asked

    started = time.perf_counter()
    try:
        out = args.out or precompute.DEFAULT_DIR  # where the app looks, wherever we run from
        manifest = precompute.precompute(out, args.scenario or None)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = sum(entry["bytes"] for entry in manifest["scenarios"].values())
    print(
        f"{len(manifest['scenarios'])} scenario files, {total / 1024:.0f} kB, in "
        f"{time.perf_counter() - started:.1f} s; fingerprint {precompute.fingerprint()[:12]}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bnviz",
        description="Train a small CNN with every BatchNorm statistic recorded.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "train",
        help="train one configuration and save its run record as JSON",
        description="Train one configuration (defaults: bnviz.TrainConfig) and print a summary.",
        epilog=f"config keys: {', '.join(FIELDS)}\n\n{EXAMPLES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config field (repeatable)",
    )
    p.add_argument("--out", metavar="PATH", help="write the run record (JSON) here")
    p.set_defaults(func=cmd_train)
    p = commands.add_parser(
        "precompute",
        help="run every scenario's jobs and write their results for the app to ship",
        description="Run the jobs of every classroom scenario (or the ones named) in this "
        "process, with one torch thread, and write one compressed JSON file per scenario and "
        "manifest.json. The app serves them while they match the engine (bnviz/precompute.py).",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where to write the files (default: the repository's assets/precomputed, where "
        "the app looks)",
    )
    p.add_argument(
        "--scenario",
        action="append",
        metavar="ID",
        help="only this scenario (repeatable; default: all)",
    )
    p.set_defaults(func=cmd_precompute)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
