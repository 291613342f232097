"""Save & replay: download the run as JSON, any figure as standalone HTML, and the run or the
open scenario as a Jupyter notebook (homework); upload a saved run to replay it in every view."""

from __future__ import annotations

import functools
import importlib.util

import streamlit as st

from ... import figures, notebook
from ...record import Run
from ...runfile import MAX_FILE_MB
from ...scenarios import FREE_PLAY, SCENARIOS
from .. import session as sessions
from ..controls import plain
from ..session import Frame, Session


def figure_builders(frame: Frame) -> dict:
    """Every whole-run figure of the current run, by title, built only when asked for."""
    run, twin = frame.run, frame.twin
    last_layer = len(run.layers) - 1
    builders = {
        "Training loss": lambda: figures.loss_figure(run, twin),
        "Accuracy": lambda: figures.accuracy_figure(run, twin),
        "Saturated or dead fraction": lambda: figures.saturation_figure(run, twin),
        "Gradient norms": lambda: figures.grad_norm_figure(run, twin),
        "Update:data ratio": lambda: figures.update_ratio_figure(run, twin),
        "Train vs eval gap": lambda: figures.eval_gap_figure(run, twin),
        "Percentiles of one unit (last block)": lambda: figures.percentile_figure(
            run, last_layer, twin
        ),
    }
    for i, layer in enumerate(run.layers):
        builders[f"Running statistics, {layer.name} channel 0"] = lambda i=i: (
            figures.running_stats_figure(run, i, 0)
        )
        if run.snapshots[i].steps:
            builders[f"Histograms, {layer.name}, last snapshot"] = lambda i=i: (
                figures.histogram_figure(run, i, -1)
            )
    return builders


def saved_json(frame: Frame) -> str:
    """The file "Run record (JSON)" downloads: the run and its twin's record."""
    return frame.run.to_json(frame.twin)


def run_notebook(frame: Frame) -> str:
    """The file "Download this run as a notebook" downloads (bnviz/notebook.py)."""
    return notebook.dumps(notebook.run_notebook(frame.run, frame.twin))


@functools.lru_cache(maxsize=16)
def scenario_notebook(scenario_id: str) -> str:
    """The file "Download this scenario as a notebook" downloads; the same for every session
    while the shipped results are."""
    return notebook.dumps(notebook.scenario_notebook(scenario_id))


def _notebooks(frame: Frame, name: str) -> None:
    """The two notebook downloads, built only when clicked; a caption where nbformat is not
    installed."""
    if importlib.util.find_spec("nbformat") is None:
        st.caption(
            "Notebook downloads need nbformat, which is not installed here "
            "(`pip install -r requirements.txt`)."
        )
        return
    st.download_button(
        "Download this run as a notebook",
        lambda: run_notebook(frame),
        file_name=f"{name}.ipynb",
        mime="application/x-ipynb+json",
        key="download_run_notebook",
        on_click="ignore",
        icon=":material/download:",
    )
    scenario_id = st.session_state.get("scenario", FREE_PLAY)
    if scenario_id in SCENARIOS:
        st.download_button(
            "Download this scenario as a notebook",
            lambda: scenario_notebook(scenario_id),
            file_name=f"bnviz-{scenario_id}.ipynb",
            mime="application/x-ipynb+json",
            key="download_scenario_notebook",
            on_click="ignore",
            icon=":material/download:",
        )
    st.caption(
        "Homework for Jupyter or Colab: the run's figures redrawn, and its training rebuilt in "
        "Python to change and run again; the scenario's explanation, experiments and figures."
    )


def _load_upload(upload) -> None:
    """Validate an uploaded run and switch the session to replaying it. A bad file gets a
    message, in which nothing from the file can become markdown or HTML."""
    if upload.size > MAX_FILE_MB * 2**20:
        st.error(
            f"That file is {upload.size / 2**20:.1f} MB; saved runs are at most {MAX_FILE_MB} "
            "MB, so nothing was loaded."
        )
        return
    try:
        run = Run.from_json(upload.getvalue())
    except ValueError as e:
        st.error(f"This is not a bnviz run file, so nothing was loaded. ({plain(_short(e))})")
        return
    sessions.replace(st.session_state, Session.replaying(run))
    st.session_state["loaded_upload"] = upload.file_id
    st.rerun()


def _saved_state(run: Run) -> str:
    """How far the saved run had got, in words (status "running": saved while paused or
    playing, before its last step)."""
    if run.status == "running":
        where = f"saved at step {run.num_steps} of {run.config.steps}, before it finished"
    elif run.status == "completed":
        where = f"finished, {run.num_steps} steps"
    else:
        where = f"{run.status} after step {run.num_steps} of {run.config.steps}"
    if run.twin is not None:
        where += f", with its twin ({run.twin.config.norm} norm)"
    return where


def _short(error: Exception) -> str:
    text = str(error)
    return text if len(text) < 300 else text[:300] + "..."


def _back_to_live():
    sessions.replace(st.session_state, None)


def render(frame: Frame) -> None:
    run = frame.run
    left, right = st.columns(2)
    with left:
        st.subheader("Download")
        config = run.config_at()
        name = f"bnviz-{config.norm}-bs{config.batch_size}-step{run.num_steps}"
        st.download_button(
            "Run record (JSON)",
            lambda: saved_json(frame),
            file_name=f"{name}.json",
            mime="application/json",
            key="download_run",
            on_click="ignore",
            icon=":material/download:",
        )
        st.caption(
            "Every recorded number, the twin's too; the format is described in "
            f"docs/run-format.md. The app replays saved runs of up to {MAX_FILE_MB} MB (about "
            "1,000 steps of the default network alone, fewer with a twin); larger ones load in "
            "Python with `bnviz.Run.load(path)`."
        )
        builders = figure_builders(frame)
        title = st.selectbox("Figure", list(builders), key="export_figure")
        st.download_button(
            "Figure (standalone HTML)",
            lambda: builders[title]().to_html(include_plotlyjs=True, full_html=True),
            file_name=f"{name}-{title.split(',')[0].lower().replace(' ', '-')}.html",
            mime="text/html",
            key="download_figure",
            on_click="ignore",
            icon=":material/download:",
        )
        st.caption("Opens in any browser, offline, with zoom and hover.")
        _notebooks(frame, name)
    with right:
        st.subheader("Replay a saved run")
        upload = st.file_uploader(
            "Saved run (.json)", type=["json"], key="upload_run", max_upload_size=MAX_FILE_MB
        )
        if upload is not None and st.session_state.get("loaded_upload") != upload.file_id:
            _load_upload(upload)
        if frame.replay is not None:
            st.success(f"Replaying a saved run: {_saved_state(run)}.")
            st.button("Back to live training", key="live", on_click=_back_to_live)
