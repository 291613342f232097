"""Homework notebooks (bnviz/notebook.py, `python -m bnviz notebook`, the Save & replay
downloads): valid notebooks, no local paths, a run notebook that executes end to end and trains
the saved run again to the same losses, scenario notebooks whose code compiles."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from bnviz import Lockstep, Run, TrainConfig, Trainer
from bnviz import notebook as nb_module
from bnviz.__main__ import main
from bnviz.scenarios import SCENARIOS

# nbformat (requirements.txt) and the notebook extras (requirements-dev.txt): they skip only
# outside CI, where the skip guard (tests/skip_guard.py) turns a skip into a failure.
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(widths=(4, 8), batch_size=16, steps=30, snapshot_every=5, eval_every=10)


def tiny_run(twin: bool = True) -> Run:
    """A short run with live changes at two steps (one of them two settings at once)."""
    config = TrainConfig(**TINY)
    trainer = Lockstep([config, config.replace(norm="none")]) if twin else Trainer(config)
    trainer.step(8)
    trainer.set(lr=0.02)
    trainer.step(7)
    trainer.set(batch_size=8, momentum=0.2)
    trainer.step(5)  # stopped at step 20 of 30, as a run saved while paused
    if twin:
        run, other = trainer.runs
        return Run.from_json(run.to_json(other))
    return Run.from_json(trainer.run.to_json())


def code_cells(nb) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def compiles(source: str, name: str) -> None:
    """Compile a cell as Python, its IPython magics (%pip) replaced by `pass`."""
    compile(re.sub(r"(?m)^(\s*)%.*$", r"\1pass", source), name, "exec")


def execute(nb, where: Path, monkeypatch, timeout: int = 300) -> None:
    """Run every cell in a python3 kernel in `where`, bnviz importable from this checkout (so the
    install cell does nothing: no network)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(where)}}
    )
    client.execute()


def test_requirements_are_read_from_requirements_txt():
    options, pins = nb_module.requirements()
    text = (ROOT / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in options
    for pin in pins:
        assert pin in text and "==" in pin
    assert {p.split("==")[0] for p in pins} == {"torch", "numpy", "plotly"}  # not streamlit
    source = nb_module.install_cell_source()
    assert all(pin in source for pin in pins)
    # skipped where bnviz imports: the %pip line only runs in the except branch
    assert source.index("import bnviz") < source.index("%pip install")
    assert re.search(r"(?m)^\s+%pip install", source)


def test_a_run_notebook_is_valid_embeds_the_run_and_names_no_local_path():
    run = tiny_run()
    nb = nb_module.run_notebook(run)
    nbformat.validate(nb)
    text = nb_module.dumps(nb)
    assert str(ROOT) not in text and "/tmp" not in text and "/work" not in text
    for i, source in enumerate(code_cells(nb)):
        compiles(source, f"cell {i}")
    source = "\n".join(code_cells(nb))
    assert 'Run.load("run.json")' in source and "Lockstep([config, twin_config])" in source
    assert "twin_config = config.replace(norm='none')" in source
    assert "16: {'batch_size': 8, 'momentum': 0.2}" in source and "9: {'lr': 0.02}" in source
    assert "STEPS = 20" in source
    alone = "\n".join(code_cells(nb_module.run_notebook(tiny_run(twin=False))))
    assert "trainer = Trainer(config)" in alone and "Lockstep" not in alone.split("import")[-1]


def test_a_run_notebook_runs_end_to_end_and_trains_the_same_losses(tmp_path, monkeypatch):
    run = tiny_run()
    nb = nb_module.run_notebook(run)
    # one cell more, for the test: the rebuilt records, saved
    nb.cells.append(nbformat.v4.new_code_cell('new_run.save("rebuilt.json")'))
    nb.cells.append(nbformat.v4.new_code_cell('new_twin.save("rebuilt-twin.json")'))
    execute(nb, tmp_path, monkeypatch)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    figures = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "display_data"]
    assert len(figures) >= 7  # the run's figures, drawn
    assert Run.load(tmp_path / "run.json").to_json(run.twin) == run.to_json(run.twin)
    again, twin = Run.load(tmp_path / "rebuilt.json"), Run.load(tmp_path / "rebuilt-twin.json")
    assert again.num_steps == run.num_steps == 20 and again.changes == run.changes
    np.testing.assert_allclose(again.metric("train_loss"), run.metric("train_loss"), rtol=1e-5)
    np.testing.assert_allclose(twin.metric("train_loss"), run.twin.metric("train_loss"), rtol=1e-5)
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "largest difference in training loss over 20 steps" in printed


@pytest.mark.parametrize("scenario_id", list(SCENARIOS))
def test_a_scenario_notebook_is_valid_and_its_code_compiles(scenario_id):
    scenario = SCENARIOS[scenario_id]
    nb = nb_module.scenario_notebook(scenario_id)
    nbformat.validate(nb)
    text = nb_module.dumps(nb)
    assert str(ROOT) not in text
    for i, source in enumerate(code_cells(nb)):
        compiles(source, f"{scenario_id} cell {i}")
    results = nb_module.shipped_results(scenario_id)
    explanation = scenario.explain(results, None, None)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert explanation in markdown
    source = "\n".join(code_cells(nb))
    for job in scenario.jobs():
        assert repr(job.label) in source  # every experiment, as a call
    if scenario.jobs():
        assert len(results) == len(scenario.jobs())  # the shipped file is fresh
        assert "scenario.draw(shipped)" in source and "scenario.draw(results)" in source


def test_each_experiment_cell_calls_the_jobs_function_with_its_arguments():
    scenario = SCENARIOS["tiny-batches"]
    nb = nb_module.scenario_notebook("tiny-batches")
    (experiments,) = [s for s in code_cells(nb) if "EXPERIMENTS = {" in s]
    namespace: dict = {}
    exec(experiments, namespace)  # imports only: nothing runs until a lambda is called
    calls = namespace["EXPERIMENTS"]
    assert list(calls) == [job.label for job in scenario.jobs()]
    job = scenario.jobs()[0]
    assert calls[job.label].__code__.co_names[0] == job.fn.__name__


def test_a_scenario_notebook_runs_end_to_end(tmp_path, monkeypatch):
    """A scenario notebook executed, with two of its cheapest experiments chosen (under a
    second each): shipped figures and verdicts, the experiments, the student's figures."""
    nb = nb_module.scenario_notebook("high-lr")
    cheap = '[label for label in EXPERIMENTS if "loss ratio at init, seed 0" in label]'
    (cell,) = [c for c in nb.cells if "CHOSEN = list(EXPERIMENTS)[:3]" in c.source]
    cell.source = cell.source.replace("list(EXPERIMENTS)[:3]", cheap)
    execute(nb, tmp_path, monkeypatch)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "one-step loss ratio at init, seed 0: done" in printed
    assert "all 70 would take about" in printed
    figures = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "display_data"]
    assert len(figures) == 2 * len(SCENARIOS["high-lr"].figures)  # shipped, then with yours


# --- the command line -----------------------------------------------------------------------


def test_the_command_line_writes_both_notebooks(tmp_path, capsys):
    path = tiny_run().save(tmp_path / "run.json")
    assert main(["notebook", "--run", str(path), "--out", str(tmp_path / "run.ipynb")]) == 0
    nbformat.validate(nbformat.read(tmp_path / "run.ipynb", as_version=4))
    out = tmp_path / "high-lr.ipynb"
    assert main(["notebook", "--scenario", "high-lr", "--out", str(out)]) == 0
    nb = nbformat.read(out, as_version=4)
    nbformat.validate(nb)
    assert SCENARIOS["high-lr"].title in nb.cells[0].source
    assert "saved:" in capsys.readouterr().out


def test_the_command_line_refuses_a_bad_run_file_or_scenario(tmp_path, capsys):
    out = str(tmp_path / "x.ipynb")
    assert main(["notebook", "--run", str(tmp_path / "missing.json"), "--out", out]) == 2
    assert "no such run file" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    assert main(["notebook", "--run", str(tmp_path / "bad.json"), "--out", out]) == 2
    assert "is not a bnviz run file" in capsys.readouterr().err
    (tmp_path / "binary.json").write_bytes(b"\x80\x81 not json")
    assert main(["notebook", "--run", str(tmp_path / "binary.json"), "--out", out]) == 2
    assert main(["notebook", "--scenario", "no-such-thing", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'no-such-thing'" in err and "high-lr" in err
    assert not Path(out).exists()
    assert main(["notebook", "--run", str(tmp_path), "--out", out]) == 2  # a folder
    assert "cannot read" in capsys.readouterr().err
    path = str(tiny_run(twin=False).save(tmp_path / "run.json"))
    assert main(["notebook", "--run", path, "--out", str(tmp_path)]) == 2
    assert "cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # one of --run and --scenario
        main(["notebook", "--out", out])
    assert e.value.code == 2


def test_without_nbformat_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "nbformat", None)  # as if not installed
    with pytest.raises(nb_module.NotebookUnavailable, match="requirements.txt"):
        nb_module.scenario_notebook("high-lr")
    path = tiny_run(twin=False).save(tmp_path / "run.json")
    assert main(["notebook", "--run", str(path), "--out", str(tmp_path / "x.ipynb")]) == 2
    assert "pip install -r requirements.txt" in capsys.readouterr().err


def test_the_app_and_command_line_import_no_nbformat():
    import subprocess

    code = (
        "import sys, bnviz.__main__, bnviz.notebook, bnviz.ui.views.export; "
        "assert 'nbformat' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- the Save & replay view -----------------------------------------------------------------


def _downloads(monkeypatch, **params):
    """The app's Save & replay view in AppTest, and the notebook downloads' generators."""
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.testing.v1 import AppTest

    generators = {}  # a download's data is made on click: keep its generator
    add_deferred = MediaFileManager.add_deferred

    def remember(self, data_callable, *args, **kwargs):
        file_id = add_deferred(self, data_callable, *args, **kwargs)
        generators[file_id] = data_callable
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", remember)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    at.session_state["view"] = "Save & replay"
    at.run()
    assert not at.exception, at.exception
    buttons = {b.key: b for b in at.get("download_button")}
    return at, buttons, generators


def test_the_view_offers_the_run_and_the_open_scenario_as_notebooks(monkeypatch):
    at, buttons, generators = _downloads(monkeypatch, scenario="tiny-batches")
    assert "download_run_notebook" in buttons and "download_scenario_notebook" in buttons
    assert buttons["download_run_notebook"].proto.label == "Download this run as a notebook"
    run_nb = generators[buttons["download_run_notebook"].proto.deferred_file_id]()
    nb = nbformat.reads(run_nb, as_version=4)
    nbformat.validate(nb)
    session = at.session_state["session"]
    source = "\n".join(code_cells(nb))
    assert f"STEPS = {session.run.num_steps}" in source  # the session's run
    assert "Lockstep([config, twin_config])" in source  # with its twin
    scenario_nb = generators[buttons["download_scenario_notebook"].proto.deferred_file_id]()
    assert (
        SCENARIOS["tiny-batches"].title in nbformat.reads(scenario_nb, as_version=4).cells[0].source
    )


def test_the_view_without_a_scenario_or_nbformat(monkeypatch):
    at, buttons, _ = _downloads(monkeypatch)
    assert "download_run_notebook" in buttons and "download_scenario_notebook" not in buttons
    monkeypatch.setitem(sys.modules, "nbformat", None)  # as if not installed
    at.run()
    assert not at.exception, at.exception
    keys = {b.key for b in at.get("download_button")}
    assert "download_run_notebook" not in keys and "download_run" in keys
    assert any("need nbformat" in c.value for c in at.caption)
