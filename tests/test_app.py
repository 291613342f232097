"""The Streamlit app driven by AppTest (no browser): keyed widgets and buttons, and the
figures' contents read back from the plotly specs."""

import base64
import json
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
from conftest import open_app
from streamlit.testing.v1 import AppTest

from bnviz import Run, TrainConfig, train
from bnviz.cache import SharedCache, Worker
from bnviz.datasets import DatasetUnavailable
from bnviz.ui import page
from bnviz.ui.page import FIRST_STEPS, STEP_CHUNK
from bnviz.ui.session import Session

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 120


@pytest.fixture
def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def session(at: AppTest) -> Session:
    return at.session_state["session"]


def figure(at: AppTest, key: str) -> dict:
    """The plotly spec of the chart with that widget key."""
    charts = {chart.key: chart for chart in at.get("plotly_chart")}
    assert key in charts, f"no chart {key!r}; have {list(charts)}"
    return json.loads(charts[key].proto.spec)


def values(trace: dict, axis: str = "y") -> np.ndarray:
    """A trace's data, decoding plotly's typed-array form ({"dtype", "bdata"})."""
    data = trace.get(axis)
    if isinstance(data, dict) and "bdata" in data:
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"]))
    return np.asarray(data if data is not None else [], dtype=float)


def longest(spec: dict) -> int:
    return max(len(values(t)) for t in spec["data"])


def traces(spec: dict, name_part: str) -> list[dict]:
    return [t for t in spec["data"] if name_part.lower() in str(t.get("name", "")).lower()]


def open_view(at: AppTest, name: str) -> AppTest:
    at.session_state["view"] = name
    at.run()
    assert not at.exception, at.exception
    return at


def status_text(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown)


def test_first_load_trains_and_shows_a_real_chart(app):
    run = session(app).run
    assert run.num_steps == FIRST_STEPS
    assert f"step {FIRST_STEPS} of 300" in status_text(app)
    loss = figure(app, "loss")
    main = traces(loss, "main")
    np.testing.assert_allclose(values(main[0]), run.metric("train_loss"), rtol=1e-5)
    assert any("dash" == t.get("line", {}).get("dash") for t in loss["data"])  # the twin


def test_step_button_advances_a_fixed_number_of_steps(app):
    app.button(key="step").click().run()
    assert session(app).run.num_steps == FIRST_STEPS + STEP_CHUNK
    assert session(app).twin.num_steps == FIRST_STEPS + STEP_CHUNK
    assert f"step {FIRST_STEPS + STEP_CHUNK} of 300" in status_text(app)
    loss = figure(app, "loss")
    assert longest(loss) == FIRST_STEPS + STEP_CHUNK


def test_play_trains_in_the_background_and_pause_stops_it(app):
    app.button(key="play").click().run()
    assert session(app).playing and "playing" in status_text(app)
    deadline = time.monotonic() + 30
    while session(app).run.num_steps < FIRST_STEPS + 5 and time.monotonic() < deadline:
        time.sleep(0.05)  # training goes on between script runs, on the worker's threads
    assert session(app).run.num_steps >= FIRST_STEPS + 5
    app.button(key="pause").click().run()
    assert not session(app).playing and "paused" in status_text(app)
    at_pause = session(app).run.num_steps
    training_done(app).result(timeout=60)  # the training job ends
    stopped_at = session(app).run.num_steps
    assert stopped_at <= at_pause + 1  # at most the step under way when Pause was pressed
    app.run()  # a redraw while paused queues no training
    assert page.worker.position(("train", session(app).serial)) is None
    assert session(app).run.num_steps == stopped_at and "paused" in status_text(app)


def training_done(at: AppTest) -> Future:
    """The worker's training job of this session: done once training has stopped (a job that
    is done at once when none is queued or running)."""
    return page.worker.run(("train", session(at).serial), lambda: None)


def test_sessions_opening_one_configuration_share_its_first_steps(caplog):
    apps = [AppTest.from_file(APP, default_timeout=TIMEOUT) for _ in range(3)]
    with caplog.at_level("INFO", logger="bnviz"):
        for at in apps:
            at.query_params["seed"] = "4242"  # a configuration no other test opens
            at.run()
            assert not at.exception, at.exception
    computed = [r.message for r in caplog.records if "bnviz compute: opening" in r.message]
    assert len(computed) == 1, computed
    a, b = session(apps[0]), session(apps[1])
    assert a.trainer.model is not b.trainer.model and a.run is not b.run
    assert a.run.num_steps == b.run.num_steps == FIRST_STEPS
    assert a.run.to_json() == b.run.to_json()
    apps[0].button(key="step").click().run()  # one session moves on, the other does not
    assert session(apps[0]).run.num_steps == FIRST_STEPS + STEP_CHUNK
    assert session(apps[1]).run.num_steps == FIRST_STEPS


def test_training_waits_in_a_queue_when_every_thread_is_busy(app, monkeypatch):
    busy, gate = Worker(SharedCache(), threads=1), threading.Event()
    busy.run("another session", lambda: gate.wait(30))
    monkeypatch.setattr("bnviz.ui.page.worker", busy)
    try:
        app.button(key="play").click().run()
        status = status_text(app)
        assert "waiting for a free trainer (1 of 1 busy), 1st in line" in status
        assert "playing" not in status and "queued" not in status  # nothing moves yet
        assert session(app).run.num_steps == FIRST_STEPS
    finally:
        gate.set()
    deadline = time.monotonic() + 30
    while session(app).run.num_steps == FIRST_STEPS and time.monotonic() < deadline:
        time.sleep(0.05)
    app.run()
    assert "waiting" not in status_text(app) and session(app).run.num_steps > FIRST_STEPS
    app.button(key="pause").click().run()


def test_structural_change_resets_and_live_change_applies_from_the_next_step(app):
    app.button(key="step").click().run()
    first = session(app)
    app.select_slider(key="batch_size").set_value(16).run()
    assert session(app) is first
    changes = first.run.changes
    assert changes == [
        {"step": FIRST_STEPS + STEP_CHUNK + 1, "field": "batch_size", "old": 64, "new": 16}
    ]
    app.button(key="step").click().run()
    assert first.trainer.batch_size == 16 and first.lock.trainers[1].batch_size == 16
    loss = figure(app, "loss")
    annotations = " ".join(a.get("text", "") for a in loss["layout"].get("annotations", []))
    assert "16" in annotations  # the change is marked on the time axis
    app.selectbox(key="norm").set_value("group").run()
    assert session(app) is not first
    assert session(app).run.num_steps == FIRST_STEPS
    assert session(app).run.config.norm == "group"
    assert session(app).run.config.batch_size == 16


def test_momentum_control_shows_the_keras_equivalent(app):
    app.slider(key="momentum").set_value(0.25).run()
    captions = " ".join(c.value for c in app.caption)
    assert "1 - 0.25" in captions and "0.75" in captions
    app.checkbox(key="momentum_none").check().run()
    app.button(key="step").click().run()
    assert session(app).trainer.model.blocks[0].norm.momentum is None


def test_activations_view_histograms_and_scrubber(app):
    open_view(app, "Activations")
    run = session(app).run
    hist = figure(app, "histograms")
    bars = [t for t in hist["data"] if t["type"] == "bar"]
    assert len(bars) >= 3
    for bar in bars[:3]:
        assert values(bar).sum() == pytest.approx(1.0, abs=1e-5)
    first_step = run.snapshots[0].steps[0]
    app.select_slider(key="snapshot").set_value(first_step).run()
    hist = figure(app, "histograms")
    assert f"step {first_step}" in json.dumps(hist["layout"]).lower()
    first_counts = np.array(run.snapshots[0].hist["post_norm"][0], dtype=float)
    post_norm = [t for t in hist["data"] if t["type"] == "bar"][1]
    np.testing.assert_allclose(values(post_norm), first_counts / first_counts.sum(), rtol=1e-5)
    figure(app, "percentiles")
    figure(app, "saturation")


def test_running_statistics_view_shows_recorded_values_and_the_formula(app):
    open_view(app, "Running statistics")
    run = session(app).run
    spec = figure(app, "running_stats")
    lines = [t for t in spec["data"] if "running mean" in str(t.get("name", "")).lower()]
    running_mean = values(lines[0])  # starts from the initial value 0 at step 0
    assert running_mean[0] == 0
    np.testing.assert_allclose(running_mean[1:], run.layer_stat(0, "running_mean")[:, 0], rtol=1e-5)
    assert any("leftarrow" in latex.value for latex in app.get("latex"))
    assert any("window" in m.label.lower() for m in app.metric)
    figure(app, "gain")


def test_gradients_and_train_vs_eval_views(app):
    open_view(app, "Gradients")
    spec = figure(app, "update_ratio")
    assert spec["layout"]["yaxis"]["type"] == "log"
    open_view(app, "Train vs eval")
    figure(app, "eval_gap")
    figure(app, "batch_noise")


def test_theory_view_shows_source_equations_and_a_live_check(app):
    open_view(app, "Theory")
    assert any("def batch_norm" in code.value for code in app.code)
    assert len(app.get("latex")) >= 6
    diffs = {m.label: float(m.value) for m in app.metric}
    assert diffs["max |Δ output|"] < 1e-4


def test_replay_of_a_saved_run_and_bad_uploads(tmp_path):
    run = train(TrainConfig(widths=(8, 16), batch_size=32, steps=12, snapshot_every=3))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["session"] = Session.replaying(Run.from_json(run.to_json()))
    at.run()
    assert not at.exception
    assert "replay" in status_text(at) and "step 12 of 12" in status_text(at)
    loss = figure(at, "loss")
    assert longest(loss) == 12
    for view in ("Activations", "Running statistics", "Gradients", "Train vs eval", "Theory"):
        open_view(at, view)
    with pytest.raises(ValueError, match="not a valid bnviz run"):
        Run.from_json(b"\x80\x04pickle")


def test_unavailable_data_set_falls_back_to_shapes(monkeypatch):
    def offline(name):
        raise DatasetUnavailable("MNIST is not available. No internet connection.")

    monkeypatch.setattr("bnviz.datasets.load_real", offline)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.selectbox(key="dataset").set_value("mnist").run()
    assert not at.exception
    assert any("No internet" in w.value for w in at.warning)
    assert session(at).run.config.dataset == "shapes"
    assert session(at).run.num_steps == FIRST_STEPS


def test_one_value_per_channel_is_explained_not_crashed_on(app):
    app.select_slider(key="depth").set_value(6).run()
    app.select_slider(key="batch_size").set_value(1).run()
    app.button(key="reset").click().run()
    assert not app.exception
    assert session(app).run.status == "failed"
    assert any("Expected more than 1 value per channel" in e.value for e in app.error)
    assert any("teaching moment" in i.value for i in app.info)


def test_changes_after_the_run_finished_wait_for_reset(app):
    app.select_slider(key="steps").set_value(100).run()
    while not app.button(key="step").disabled:
        app.button(key="step").click().run()
    assert session(app).state == "finished"
    app.select_slider(key="lr").set_value(0.01).run()
    assert session(app).run.changes == []  # no marker past the end of the run
    app.button(key="reset").click().run()
    assert session(app).run.config.lr == 0.01


def test_the_community_cloud_entry_point_runs_the_same_app():
    cloud = Path(APP).parent / "cloud" / "streamlit_app.py"
    at = AppTest.from_file(str(cloud), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert session(at).run.num_steps == FIRST_STEPS
    assert "torch==2.13.0+cpu" in (cloud.parent / "requirements.txt").read_text()


def test_status_line_shows_the_settings_in_force_and_ended_runs_offer_continue():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["lr"] = "1000"
    at.query_params["norm"] = "none"
    at.run()
    assert session(at).state == "diverged"
    at.select_slider(key="lr").set_value(0.05).run()
    offer = " ".join(i.value for i in at.info)
    assert "**Continue** goes on from step" in offer and "lr = 0.05" in offer
    assert "**Reset** starts again" in offer and "grown the weights" in offer
    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    fresh.select_slider(key="batch_size").set_value(8).run()
    captions = " ".join(c.value for c in fresh.caption)
    assert "batch 8" in captions and "batch 64" not in captions


def wait_for_steps(at: AppTest, steps: int) -> None:
    """Until the worker has trained the session to `steps` (Play trains between script runs):
    each step the worker takes notifies this wait."""
    lock, stepped = session(at).lock, threading.Condition()
    step = lock.step

    def notifying(n: int = 1):
        runs = step(n)
        with stepped:
            stepped.notify_all()
        return runs

    lock.step = notifying
    try:
        with stepped:
            assert stepped.wait_for(lambda: session(at).run.num_steps >= steps, timeout=60)
    finally:
        del lock.step


def test_continue_trains_a_finished_run_on_with_a_larger_budget():
    at = open_app(steps="100")
    session(at).advance(200)
    at.run()
    assert session(at).state == "finished" and at.button(key="play").disabled
    assert at.button(key="continue").label == "Continue +300"
    at.button(key="continue").click().run()
    run = session(at).run
    assert run.config.steps == 400 and run.parent.status == "completed"
    assert session(at).playing and "of 400" in status_text(at)
    wait_for_steps(at, 110)
    at.button(key="pause").click().run()
    assert session(at).state == "paused" and not at.button(key="play").disabled
    at.button(key="play").click().run()  # Play trains on too
    steps = session(at).run.num_steps
    wait_for_steps(at, steps + 5)
    at.button(key="pause").click().run()
    annotations = [a["text"] for a in figure(at, "loss")["layout"]["annotations"]]
    assert "continued" in annotations  # where the run went on
    assert Run.from_json(session(at).run.to_json()).num_steps == session(at).run.num_steps


def test_continue_and_fork_after_torch_refuses_eps_zero():
    at = open_app(eps="0")  # bn_impl torch: "eps must be positive" at the first step
    assert session(at).state == "failed" and session(at).run.num_steps == 0
    assert any("eps must be positive" in e.value for e in at.error)
    at.select_slider(key="eps").set_value(1e-5).run()
    assert session(at).run.changes == []  # nothing applies until Continue
    assert any("**Continue** goes on from step 1 with eps = 1e-05" in i.value for i in at.info)
    at.button(key="continue").click().run()
    wait_for_steps(at, 5)
    at.button(key="pause").click().run()
    run = session(at).run
    assert run.status == "running" and run.changes[0] == {
        "step": 1,
        "field": "eps",
        "old": 0.0,
        "new": 1e-5,
    }
    assert run.parent.status == "failed" and session(at).twin.num_steps == run.num_steps
    loss = figure(at, "loss")
    annotations = [a["text"] for a in loss["layout"]["annotations"]]
    assert "failed; branch: ε 0→1e-05" in annotations
    assert not any("eps must be positive" in e.value for e in at.error)
    # Fork the live branch: lr changes from the next step, in the sidebar too
    forked_at = run.num_steps
    at.selectbox(key="fork_field").set_value("lr").run()
    at.select_slider(key="fork_lr").set_value(0.01).run()
    at.button(key="fork").click().run()
    run = session(at).run
    assert run.changes[-1] == {"step": forked_at + 1, "field": "lr", "old": 0.05, "new": 0.01}
    assert run.parent.num_steps == forked_at and at.select_slider(key="lr").value == 0.01
    at.button(key="step").click().run()
    assert session(at).trainer.run.setting_at("lr") == 0.01
    assert len(session(at).run.changes) == 2  # the sidebar agrees: no change applied twice
    loss = figure(at, "loss")
    assert traces(loss, "before the branch")  # the run before the fork, drawn under it
    assert any(a["text"] == "branch: lr 0.05→0.01" for a in loss["layout"]["annotations"])
    open_view(at, "Save & replay")
    saved = Run.from_json(session(at).run.to_json())
    assert saved.changes == session(at).run.changes and saved.status == "running"


def test_test_accuracy_says_the_step_it_was_measured_at(app):
    run, twin = session(app).run, session(app).twin
    assert run.eval_steps[-1] == FIRST_STEPS  # measured densely early: not step 0's value
    labels = {m.label: m.value for m in app.metric}
    running = f"Test accuracy at step {FIRST_STEPS}, running stats"
    assert labels[running] == f"{run.acc_running_stats[-1]:.1%}"
    twin_label = f"Twin ({twin.config.norm}): test accuracy at step {FIRST_STEPS}"
    assert labels[twin_label] == f"{twin.acc_running_stats[-1]:.1%}"
    app.button(key="step").click().run()  # step 30: no new measurement since step 25
    labels = {m.label for m in app.metric}
    assert f"Test accuracy at step {run.eval_steps[-1]}, batch stats" in labels
    assert run.eval_steps[-1] == 25


def test_a_hidden_field_cannot_be_changed():
    at = open_app(scenario="momentum-lag", hide="eps,momentum")
    keys = {w.key for kind in ("checkbox", "slider", "select_slider") for w in at.get(kind)}
    assert not keys & {"momentum", "momentum_none", "eps"}  # no widget sets momentum or eps
    momentum = session(at).trainer.model.blocks[0].norm.momentum
    assert momentum == 0.01  # the scenario's
    at.session_state["momentum_none"] = True  # forced, as a stray widget would
    at.session_state["momentum"] = 0.5
    at.run()
    at.button(key="step").click().run()
    assert not at.exception, at.exception
    assert session(at).trainer.model.blocks[0].norm.momentum == momentum
    assert session(at).run.changes == []


def test_a_hidden_learning_rate_survives_a_change_of_optimizer():
    at = open_app(lr="0.3", hide="lr")
    at.radio(key="optimizer").set_value("adam").run()
    assert session(at).run.config.optimizer == "adam" and session(at).run.config.lr == 0.3


def test_a_replayed_run_keeps_its_twin(app):
    from bnviz.ui.views.export import saved_json

    app.button(key="step").click().run()
    live = session(app).frame()
    assert live.twin is not None
    replayed = Run.from_json(saved_json(live))  # what "Run record (JSON)" downloads
    app.session_state["session"] = Session.replaying(replayed)
    open_view(app, "Training")
    loss = figure(app, "loss")
    dashed = [t for t in loss["data"] if t.get("line", {}).get("dash") == "dash"]
    assert dashed  # the twin's curve, from the file
    np.testing.assert_allclose(values(dashed[0]), live.twin.metric("train_loss"), rtol=1e-5)
    step = live.twin.eval_steps[-1]
    labels = {m.label: m.value for m in app.metric}
    twin_label = f"Twin ({live.twin.config.norm}): test accuracy at step {step}"
    assert labels[twin_label] == f"{live.twin.acc_running_stats[-1]:.1%}"
    open_view(app, "Save & replay")
    replay_note = " ".join(s.value for s in app.success)
    steps = f"step {live.run.num_steps} of {live.run.config.steps}"
    assert f"saved at {steps}, before it finished" in replay_note  # paused: not "running"
    assert "status running" not in replay_note and "with its twin" in replay_note


def test_a_refused_link_leaves_the_sidebar_showing_the_settings_in_force():
    at = open_app(batch_size="512", width="64", depth="6", steps="5000", lr="0.3")
    config = session(at).run.config
    assert (config.batch_size, config.widths[0], len(config.widths), config.steps) == (
        64, 16, 3, 300,
    )  # fmt: skip
    sidebar = {k: at.select_slider(key=k).value for k in ("batch_size", "width", "depth", "steps")}
    assert sidebar == {"batch_size": 64, "width": 16, "depth": 3, "steps": 300}
    assert config.lr == 0.3 and at.select_slider(key="lr").value == 0.3  # the rest of the link
    refusal = " ".join(e.value for e in at.error)
    assert "batch size 512 x width of the first block 64" in refusal.lower()
    assert "widths[0]" not in refusal and "5,000 steps x 704 channels" in refusal
    at.select_slider(key="batch_size").set_value(512).run()  # later, from the sidebar:
    at.select_slider(key="width").set_value(32).run()  # 512 x 32 is over the cap
    assert not at.exception, at.exception
    assert (at.select_slider(key="batch_size").value, at.select_slider(key="width").value) == (
        512, 16,
    )  # fmt: skip
    config = session(at).run.config_at()
    assert (config.batch_size, config.widths[0]) == (512, 16)
    assert "x width of the first block 32" in " ".join(e.value for e in at.error)


def test_the_address_bar_follows_the_picked_scenario_and_view(app):
    app.selectbox(key="scenario").set_value("momentum-lag").run()
    assert app.query_params["scenario"] == "momentum-lag"
    open_view(app, "Gradients")
    copied = dict(app.query_params)  # the URL a student copies now
    assert copied["view"] == "Gradients"
    reopened = open_app(**copied)
    assert reopened.session_state["scenario"] == "momentum-lag"
    assert reopened.session_state["view"] == "Gradients"
    assert session(reopened).trainer.model.blocks[0].norm.momentum == 0.01


def test_labels_say_what_they_show(app):
    from bnviz.trainer import HIST_IMAGES

    loss, accuracy = figure(app, "loss"), figure(app, "accuracy")
    (train_loss,) = [t for t in traces(loss, "main")]
    (train_acc,) = [t for t in traces(accuracy, "training batches") if "main" in t["name"]]
    assert train_acc["line"]["color"] == train_loss["line"]["color"]  # one colour per network line
    open_view(app, "Activations")
    captions = " ".join(c.value for c in app.caption)
    assert f"first {HIST_IMAGES} images" in captions
    open_view(app, "Train vs eval")
    titles = " ".join(
        a.get("text", "") for a in figure(app, "batch_noise")["layout"]["annotations"]
    )
    noise = app.session_state["batch_noise"][2]
    assert f"the mean over all test images: {noise.full_mean:.4g}" in titles  # not a std
    app.slider(key="momentum").set_value(1.0).run()
    app.button(key="step").click().run()
    open_view(app, "Running statistics")
    assert {m.label: m.value for m in app.metric}["Averaging window"] == "≈ 1 step"


def test_the_update_formula_brackets_negative_factors():
    from bnviz.ui.views.running_stats import formula_latex

    numbers = dict(
        factor=0.1, running_before=-0.002226, batch=-0.5, running_after=-0.05200,
        var_running_before=1.0, var_batch_biased=0.25, var_running_after=0.925, m=64,
    )  # fmt: skip
    mean, var = formula_latex(numbers)
    assert r"(1 - 0.1)\times(-0.002226) + 0.1\times(-0.5) = -0.052" in mean
    assert r"\,-" not in mean and r"(1 - 0.1)\times1 + 0.1\times" in var


def test_the_update_ratio_caption_cites_its_heuristic_and_quotes_this_run(app):
    open_view(app, "Gradients")
    caption = " ".join(c.value for c in app.caption)
    assert "makemore part 3" in caption and "heuristic" in caption
    assert "far above it the updates are too large" not in caption
    for r in (session(app).run, session(app).twin):
        conv = [r.param_stat(n, "update_ratio")[-20:] for n in r.params if "conv.weight" in n]
        assert f"{np.median(np.concatenate(conv)):.1e}" in caption  # this run's own ratios
