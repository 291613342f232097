"""Homework: a saved run or a classroom scenario as a runnable Jupyter notebook.

`run_notebook(run)` embeds the run record (gzip + base64: the notebook needs no other file), loads
it with `bnviz.Run.load`, redraws its figures with `bnviz.figures`, and rebuilds the same training
through the Python API (`TrainConfig`, `Trainer` or `Lockstep` with its twin, the recorded live
changes applied at their steps with `.set`), so a student can change a line and train again.

`scenario_notebook(scenario_id)` writes the scenario's explanation from its shipped results, its
experiments as code cells (one call per job, the student picks which to run), its figures from
the shipped results and from the student's own, and the verdicts again.

The notebooks run in Jupyter and in Colab: an install cell, skipped where bnviz is importable,
pins the versions of requirements.txt (read when the notebook is written). Built with nbformat,
imported only here and only when a notebook is asked for, so the app and the command line work
without it. Nothing here computes a result: the precompute fingerprint leaves it out."""

from __future__ import annotations

import base64
import gzip
import json
import textwrap
from pathlib import Path

from .config import FIELDS, TrainConfig
from .record import Run

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
# Requirements the notebooks do not import: the app's web framework (large, and Colab ships
# versions of its dependencies that it would replace for nothing), and the library that writes
# notebooks.
NOT_NEEDED = ("streamlit", "nbformat")
MISSING = (
    "writing notebooks needs nbformat, one of the app's requirements: "
    "pip install -r requirements.txt"
)
LINE = 1000  # characters per line of embedded data


class NotebookUnavailable(RuntimeError):
    """nbformat is not installed."""


def _nbformat():
    try:
        import nbformat
    except ImportError as e:
        raise NotebookUnavailable(MISSING) from e
    return nbformat


# --- pieces shared by both notebooks --------------------------------------------------------


def requirements(path: Path = REQUIREMENTS) -> tuple[list[str], list[str]]:
    """(pip options, pinned requirements) of requirements.txt, less NOT_NEEDED."""
    options, pins = [], []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            options.append(line)
        elif line.split("==", 1)[0].strip().lower() not in NOT_NEEDED:
            pins.append(line.replace(" ", ""))
    return options, pins


def install_cell_source(path: Path = REQUIREMENTS) -> str:
    options, pins = requirements(path)
    pip = " ".join(["%pip install -q", *options, *pins])
    return textwrap.dedent(
        f"""\
        # Skipped where bnviz is already importable (a checkout of its repository, say).
        # Otherwise: the versions bnviz was tested with (its requirements.txt, less streamlit,
        # which only the app needs), then bnviz itself from BNVIZ_REPO (see the note above).
        BNVIZ_REPO = "bnviz"  # a copy of the bnviz repository: the folder that holds bnviz/
        try:
            import bnviz
        except ImportError:
            {pip}
            import sys

            sys.path.insert(0, BNVIZ_REPO)
            import bnviz"""
    )


INSTALL_NOTE = (
    "**Setup.** bnviz is not on PyPI. Where `import bnviz` already works (this notebook opened "
    "from the root of a copy of the bnviz repository, say) the next cell does nothing. "
    "Elsewhere (Colab, a fresh environment) it installs the pinned versions of bnviz's "
    "`requirements.txt` and imports bnviz from `BNVIZ_REPO`: first put a copy of the bnviz "
    "repository there (in Colab: upload it as a zip and unzip it, so that `bnviz/bnviz/` "
    "exists next to the notebook, or set `BNVIZ_REPO` to where it is)."
)


def _embedded(text: str) -> str:
    """Text as gzip + base64 in lines of LINE characters (b64decode ignores the newlines)."""
    data = base64.b64encode(gzip.compress(text.encode("utf-8"), mtime=0)).decode("ascii")
    return "\n".join(data[i : i + LINE] for i in range(0, len(data), LINE))


def _notebook(cells: list) -> object:
    nbformat = _nbformat()
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    return nb


def dumps(nb) -> str:
    """The notebook as .ipynb text."""
    return _nbformat().writes(nb)


def _config_source(config: TrainConfig, name: str = "config") -> str:
    """TrainConfig(...) with every field on its own line: one line to change per knob."""
    fields = "".join(f"    {f}={getattr(config, f)!r},\n" for f in FIELDS)
    return f"{name} = TrainConfig(\n{fields})"


# --- a run ----------------------------------------------------------------------------------


def _changes_by_step(run: Run) -> list[tuple[int, dict]]:
    """The recorded live changes, grouped by the step they apply from, in order."""
    grouped: dict[int, dict] = {}
    for change in run.changes:
        grouped.setdefault(change["step"], {})[change["field"]] = change["new"]
    return sorted(grouped.items())


def _describe(run: Run, twin: Run | None) -> str:
    config = run.config
    where = {
        "completed": f"completed all {run.num_steps} steps",
        "running": f"saved at step {run.num_steps} of {config.steps}, before it finished",
    }.get(run.status, f"ended {run.status} after step {run.num_steps} of {config.steps}")
    twin = "" if twin is None else f", trained with its twin ({twin.config.norm} norm)"
    return (
        f"{config.norm} norm on {config.dataset}, widths {list(config.widths)}, batch "
        f"{config.batch_size}, {config.optimizer} lr {config.lr:g}, seed {config.seed}: "
        f"{where}{twin}."
    )


FIGURES = """\
from bnviz import figures

twin = run.twin  # None for a run without one; the figures draw it dashed
for fig in [
    figures.loss_figure(run, twin),
    figures.accuracy_figure(run, twin),
    figures.eval_gap_figure(run, twin),
    figures.grad_norm_figure(run, twin),
    figures.update_ratio_figure(run, twin),
    figures.saturation_figure(run, twin),
    figures.percentile_figure(run, len(run.layers) - 1, twin),  # one unit of the last block
]:
    fig.show()"""


LAYER_FIGURES = """\
# one block at a time: change `layer` (0 is the first block) and `channel`
layer, channel = 0, 0
figures.running_stats_figure(run, layer, channel).show()
figures.affine_figure(run, layer).show()
figures.gain_figure(run, layer).show()  # at the last step; gain_figure(run, layer, step - 1)
if run.snapshots[layer].steps:
    figures.histogram_figure(run, layer, -1).show()  # the last snapshot"""


def _rebuild_source(run: Run, twin: Run | None) -> str:
    changes = _changes_by_step(run)
    lines = ["from bnviz import Lockstep, TrainConfig, Trainer", ""]
    lines.append(_config_source(run.config))
    if twin is not None:
        diff = {
            f: getattr(twin.config, f)
            for f in FIELDS
            if getattr(twin.config, f) != getattr(run.config, f)
        }
        args = ", ".join(f"{f}={v!r}" for f, v in diff.items())
        lines += [
            f"twin_config = config.replace({args})  # the twin: same batches and initial weights",
            "trainer = Lockstep([config, twin_config])",
            "lead = trainer.trainers[0]  # the other trainer never goes past its step",
        ]
    else:
        lines += ["trainer = Trainer(config)", "lead = trainer"]
    lines += ["", f"STEPS = {run.num_steps}  # where the saved run stopped"]
    if changes:
        lines.append("# the live changes made during the saved run: {step: settings from then on}")
        lines.append("CHANGES = {")
        lines += [f"    {step}: {values!r}," for step, values in changes]
        lines.append("}")
    else:
        lines.append("CHANGES = {}  # e.g. {100: {'lr': 0.01}}: lr 0.01 from step 100 on")
    lines += [
        "for step, settings in sorted(CHANGES.items()):",
        "    trainer.step(step - 1 - lead.steps_done)",
        "    trainer.set(**settings)",
        "trainer.step(STEPS - lead.steps_done)",
    ]
    if twin is not None:
        lines.append("new_run, new_twin = trainer.runs")
    else:
        lines += ["new_run, new_twin = trainer.run, None"]
    lines.append('print(new_run.status, new_run.num_steps, "steps")')
    return "\n".join(lines)


COMPARE = """\
import numpy as np

saved, again = run.metric("train_loss"), new_run.metric("train_loss")
n = min(len(saved), len(again))
print(f"saved run: {len(saved)} steps; rebuilt: {len(again)} steps")
if n:
    print(f"largest difference in training loss over {n} steps: "
          f"{np.max(np.abs(saved[:n] - again[:n])):.3g}")
figures.loss_figure(new_run, new_twin).show()"""


def run_notebook(run: Run, twin: Run | None = None, title: str | None = None):
    """A notebook that loads `run` and its twin (by default run.twin) embedded, redraws its
    figures and rebuilds its training."""
    twin = run.twin if twin is None else twin
    nbformat = _nbformat()
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    data = _embedded(run.to_json(twin))
    changes = _changes_by_step(run)
    said = (
        "The live changes made while it trained are applied at the same steps: "
        + "; ".join(
            f"from step {step}, " + ", ".join(f"{k} {v}" for k, v in values.items())
            for step, values in changes
        )
        + "."
        if changes
        else "No setting was changed while it trained."
    )
    cells = [
        md(
            f"# {title or 'A bnviz run'}\n\n{_describe(run, twin)}\n\n"
            "This notebook holds the saved run record: it redraws the app's figures from it, "
            "then trains the same network again through bnviz's Python API, where you can "
            "change any line and run it again."
        ),
        md(INSTALL_NOTE),
        code(install_cell_source()),
        md(
            "## The saved run\n\nThe run record, compressed, as the app saved it "
            "(format: bnviz's `docs/run-format.md`). This cell writes it to `run.json` "
            "next to the notebook and loads it with `bnviz.Run.load`."
        ),
        code(
            "import base64, gzip\n\nfrom bnviz import Run\n\n"
            f'RUN = """\n{data}\n"""\n'
            'with open("run.json", "wb") as f:\n'
            "    f.write(gzip.decompress(base64.b64decode(RUN)))\n"
            'run = Run.load("run.json")  # run.twin: the twin\'s record, or None\n'
            'print(run.status, run.num_steps, "steps")'
        ),
        md("## Its figures\n\nThe app's figures, drawn from the record by `bnviz.figures`."),
        code(FIGURES),
        code(LAYER_FIGURES),
        md(
            "## Train it again\n\nThe same configuration, seed and batch order through the "
            f"Python API. {said} Change a line (a width, the norm, the learning rate, a "
            "change's step) and run the cells again."
        ),
        code(_rebuild_source(run, twin)),
        md(
            "With nothing changed, the rebuilt losses equal the saved ones, up to the last "
            "bits of float arithmetic on another CPU."
        ),
        code(COMPARE),
    ]
    return _notebook(cells)


# --- a scenario -----------------------------------------------------------------------------


def shipped_results(scenario_id: str) -> dict:
    """The scenario's shipped results, by job label (only current jobs: bnviz.precompute.load)."""
    from . import precompute
    from .scenarios import SCENARIOS

    jobs = SCENARIOS[scenario_id].jobs()
    if not jobs:
        return {}
    loaded = precompute.load(scenario_id)
    return {job.label: loaded[job.key] for job in jobs if job.key in loaded}


def _call_source(job) -> str:
    """The job as a call a student can read and change: fn(key=value, ...)."""
    args = ", ".join(f"{k}={v!r}" for k, v in job.kwargs)
    source = f"{job.fn.__name__}({args})"
    # the call must mean the same job: values whose repr is not Python to rebuild it are refused
    again = eval(source, {job.fn.__name__: lambda **kw: kw, "TrainConfig": TrainConfig})  # noqa: S307
    if tuple(sorted(again.items())) != job.kwargs:
        raise ValueError(f"cannot write the job {job.label!r} as code")
    return source


def _experiments_source(jobs: list) -> str:
    functions = sorted({(job.fn.__module__, job.fn.__name__) for job in jobs})
    modules: dict[str, list[str]] = {}
    for module, name in functions:
        modules.setdefault(module, []).append(name)
    lines = ["from bnviz import TrainConfig"]
    lines += [f"from {module} import {', '.join(names)}" for module, names in modules.items()]
    lines += ["", "# job label -> the call that computes it (numbers only, a JSON-ready dict)"]
    lines.append("EXPERIMENTS = {")
    lines += [f"    {job.label!r}: lambda: {_call_source(job)}," for job in jobs]
    lines.append("}")
    lines.append('print(len(EXPERIMENTS), "experiments")')
    return "\n".join(lines)


RUN_EXPERIMENTS = """\
import time

# Which experiments to run: the first few by default. list(EXPERIMENTS) runs them all, or pick
# labels, e.g. [label for label in EXPERIMENTS if "seed 0" in label].
CHOSEN = list(EXPERIMENTS)[:3]

my_results = {}
started = time.perf_counter()
for label in CHOSEN:
    my_results[label] = EXPERIMENTS[label]()
    print(f"{label}: done, {time.perf_counter() - started:.1f} s so far")
each = (time.perf_counter() - started) / max(len(CHOSEN), 1)
print(f"about {each:.1f} s each here: all {len(EXPERIMENTS)} would take about "
      f"{each * len(EXPERIMENTS) / 60:.1f} min")"""

MINE = """\
# the shipped results with yours in their place: figures and verdicts from both
results = {**shipped, **my_results}
for fig in scenario.draw(results):
    fig.show()
for verdict in scenario.verdicts(results):
    print(verdict.text)"""


def scenario_notebook(scenario_id: str):
    """A notebook of one scenario: explanation, experiments, figures. Unknown id: KeyError."""
    from .scenarios import SCENARIOS

    scenario = SCENARIOS[scenario_id]
    nbformat = _nbformat()
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    jobs = scenario.jobs()
    results = shipped_results(scenario_id)
    explanation = scenario.explain(results, None, None)
    cells = [
        md(f"# {scenario.title}\n\n*{scenario.summary}*"),
        md(INSTALL_NOTE),
        code(install_cell_source()),
    ]
    if jobs and not results:
        note = (
            "The app's explanation without results: none of the results shipped with bnviz "
            "match this version of its engine (`python -m bnviz precompute` makes them "
            "again), so it quotes no measurement. Run the experiments below."
        )
    elif jobs:
        note = (
            f"The app's explanation, from the results shipped with bnviz ({len(results)} of "
            f"{len(jobs)} experiments)."
        )
    else:
        note = "The app's explanation."
    if explanation:
        cells.append(md(f"## What it shows\n\n*{note}*\n\n{explanation}"))
    cells.append(
        code(
            "from bnviz.scenarios import SCENARIOS\n\n"
            f"scenario = SCENARIOS[{scenario_id!r}]\n"
            "print(scenario.title)"
        )
    )
    if not jobs:
        cells.append(
            md(
                "This scenario has no experiments of its own: it is about the live run. "
                "Train one with `bnviz.Trainer` (see the run notebooks: "
                "`python -m bnviz notebook --run run.json`) or in the app."
            )
        )
        return _notebook(cells)
    cells += [
        md(
            "## The shipped results\n\nWhat the app shows, computed with the seeds of "
            "`bnviz.scenarios.evidence.SEEDS` (`python -m bnviz precompute`), embedded here: "
            "job label -> result."
        ),
        code(
            "import base64, gzip, json\n\n"
            f'SHIPPED = """\n{_embedded(json.dumps(results))}\n"""\n'
            "shipped = json.loads(gzip.decompress(base64.b64decode(SHIPPED)))\n"
            "for fig in scenario.draw(shipped):\n"
            "    fig.show()\n"
            "for verdict in scenario.verdicts(shipped):\n"
            "    print(verdict.text)"
        ),
        md(
            f"## The experiments\n\nEach of the {len(jobs)} experiments is one call of a "
            "function in `bnviz.experiments`; the app runs the same calls. Change an argument "
            "(a seed, a learning rate, a width) and run it."
        ),
        code(_experiments_source(jobs)),
        md("Run a few first: the cell prints how long they take and how long all of them would."),
        code(RUN_EXPERIMENTS),
        md(
            "## Your results\n\nThe figures and verdicts with your results in place of "
            "the shipped ones."
        ),
        code(MINE),
        md(
            "The same loop the app runs, over every job, for reference:\n\n"
            "```python\nresults = {job.label: job() for job in scenario.jobs()}\n```\n\n"
            "`scenario.jobs(seeds=(100, 101, 102, 103, 104))` gives the same experiments with "
            "other seeds (a replication)."
        ),
    ]
    return _notebook(cells)


def write(nb, path: str | Path) -> Path:
    """Write the notebook (.ipynb) to `path`."""
    path = Path(path)
    path.write_text(dumps(nb), encoding="utf-8")
    return path
