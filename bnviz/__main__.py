"""Command line: python -m bnviz train --set batch_size=16 --set norm=none --out run.json,
python -m bnviz precompute (the scenarios' default results shipped in assets/precomputed/), and
python -m bnviz replicate (the scenarios' verdicts again with other seeds), and
python -m bnviz notebook (a saved run or a scenario as a runnable Jupyter notebook)."""

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
  python -m bnviz precompute --jobs 2
  python -m bnviz precompute --scenario momentum-lag --scenario epsilon --all
  python -m bnviz replicate --scenario high-lr --seeds 100-104 --jobs 2
  python -m bnviz notebook --run run.json --out run.ipynb
  python -m bnviz notebook --scenario high-lr --out high-lr.ipynb
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
        if args.jobs < 1:
            raise ValueError(f"--jobs must be at least 1; got {args.jobs}")
        out = args.out or precompute.DEFAULT_DIR  # where the app looks, wherever we run from
        manifest = precompute.precompute(
            out, args.scenario or None, workers=args.jobs, force=args.all
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = sum(entry["bytes"] for entry in manifest["scenarios"].values())
    print(
        f"{len(manifest['scenarios'])} scenario files, {total / 1024:.0f} kB, in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return 0


def parse_seeds(text: str) -> tuple[int, ...]:
    """'100-104' -> (100, ..., 104); '3,7,9' -> (3, 7, 9)."""
    seeds: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"--seeds takes numbers and ranges like 100-104 or 3,7; got {text!r}")
        seeds += range(int(low), int(high) + 1) if dash else [int(low)]
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"--seeds must name distinct seeds; got {text!r}")
    return tuple(seeds)


def _holds(verdict) -> str:
    if verdict.pending:
        return f"pending ({verdict.seeds} seeds)"
    word = {True: "holds", False: "reversed", None: "not distinguishable"}[verdict.holds]
    return f"{word} ({verdict.agree}/{verdict.seeds} agree)"


def cmd_replicate(args) -> int:
    """Run every job of the scenarios again with other seeds and compare their verdicts with the
    shipped results' verdicts. Exit status 1 if any verdict differs."""
    from . import precompute
    from .scenarios import SCENARIOS
    from .scenarios.evidence import REPLICATION_SEEDS

    try:
        seeds = parse_seeds(args.seeds) if args.seeds else REPLICATION_SEEDS
        if args.jobs < 1:
            raise ValueError(f"--jobs must be at least 1; got {args.jobs}")
        ids = args.scenario or [i for i, s in SCENARIOS.items() if s.jobs()]
        unknown = [i for i in ids if i not in SCENARIOS]
        if unknown:
            raise ValueError(f"unknown scenario {', '.join(unknown)}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    fresh = precompute.run_jobs(
        ids, args.jobs, seeds=seeds, progress=lambda m: print(m, flush=True)
    )
    differ = lost = 0  # lost: a finding the shipped text claims (holds or reversed) changed
    for sid in ids:
        again = SCENARIOS[sid].verdicts({job.label: r for job, r in fresh[sid]})
        path = precompute.scenario_file(precompute.DEFAULT_DIR, sid)
        shipped_jobs = precompute.read_gzip(path)["jobs"] if path.exists() else []
        shipped = {
            v.key: v
            for v in SCENARIOS[sid].verdicts({j["label"]: j["result"] for j in shipped_jobs})
        }
        print(f"\n{sid}: seeds {', '.join(map(str, seeds))} against the shipped seeds")
        for v in again:
            before = shipped.get(v.key)
            same = before is not None and before.holds == v.holds
            differ += not same
            lost += not same and (before is None or before.holds is not None)
            print(f"  {'same' if same else 'DIFFERS'}: {v.key}: shipped "
                  f"{_holds(before) if before else 'absent'}, replication {_holds(v)}")  # fmt: skip
    print(
        f"\n{differ} verdicts differ, {lost} of them findings the shipped results claim; "
        f"{time.perf_counter() - started:.0f} s"
    )
    return 1 if differ else 0


def cmd_notebook(args) -> int:
    """Write a saved run or a scenario as a Jupyter notebook (bnviz/notebook.py)."""
    from . import notebook
    from .record import Run

    try:
        if args.run:
            try:
                run = Run.load(args.run)
            except FileNotFoundError:
                raise ValueError(f"no such run file: {args.run}") from None
            except OSError as e:
                raise ValueError(f"cannot read {args.run}: {e.strerror or e}") from None
            except ValueError as e:
                raise ValueError(f"{args.run} is not a bnviz run file: {e}") from None
            nb = notebook.run_notebook(run)
        else:
            from .scenarios import SCENARIOS

            if args.scenario not in SCENARIOS:
                known = ", ".join(SCENARIOS)
                raise ValueError(f"unknown scenario {args.scenario!r}; known: {known}")
            nb = notebook.scenario_notebook(args.scenario)
        try:
            print(f"saved: {notebook.write(nb, args.out)}")
        except OSError as e:
            raise ValueError(f"cannot write {args.out}: {e.strerror or e}") from None
    except (ValueError, notebook.NotebookUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes (default: 1)")
    p.add_argument(
        "--all", action="store_true", help="also the scenarios whose files are up to date"
    )
    p.set_defaults(func=cmd_precompute)
    p = commands.add_parser(
        "replicate",
        help="run the scenarios' experiments with other seeds and compare their verdicts",
        description="Run every job of the scenarios (default: all with jobs) with other seeds "
        "and print, verdict by verdict, whether it agrees with the shipped results. Exit "
        "status 1 if any verdict differs.",
    )
    p.add_argument(
        "--scenario", action="append", metavar="ID", help="only this scenario (repeatable)"
    )
    p.add_argument(
        "--seeds",
        help="the seeds to run, e.g. 100-104 or 3,7,9 (default: "
        "bnviz.scenarios.evidence.REPLICATION_SEEDS)",
    )
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes (default: 1)")
    p.set_defaults(func=cmd_replicate)
    p = commands.add_parser(
        "notebook",
        help="write a saved run or a scenario as a runnable Jupyter notebook (homework)",
        description="Write a Jupyter notebook (also for Colab) that holds a saved run, redraws "
        "its figures and trains it again through the Python API; or one that holds a "
        "scenario's explanation, experiments and figures. Needs nbformat "
        "(requirements-dev.txt).",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="PATH", help="a run record saved by the app or train")
    source.add_argument("--scenario", metavar="ID", help="a scenario id, e.g. high-lr")
    p.add_argument("--out", required=True, metavar="PATH", help="the notebook to write (.ipynb)")
    p.set_defaults(func=cmd_notebook)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
