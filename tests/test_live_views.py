"""Views follow the live run: every step scrubber and "at step N" readout moves with the newest
recorded step, a scrubber the user drags back stays pinned until "back to live", and a busy
browser sending back a step it was shown earlier does not pin it (AppTest; test_browser.py
checks the same in Chromium while the run plays)."""

import json
import threading

from conftest import open_app

from bnviz import TrainConfig, Trainer
from bnviz.ui.page import STEP_CHUNK


def _open(view: str):
    at = open_app()
    at.session_state["view"] = view
    at.run()
    return at


def _step(at):
    at.button(key="step").click().run()
    assert not at.exception, at.exception
    return at.session_state["session"].run


def _histogram_title(at) -> str:
    chart = next(c for c in at.get("plotly_chart") if c.key == "histograms")
    return json.loads(chart.proto.spec)["layout"]["title"]["text"]


def _text(at) -> str:
    return " ".join(e.value for e in [*at.markdown, *at.caption])


def test_activations_scrubber_and_histogram_follow_the_newest_snapshot():
    at = _open("Activations")
    run = at.session_state["session"].run
    assert at.select_slider(key="snapshot").value == run.snapshots[0].steps[-1]
    for _ in range(2):
        run = _step(at)
        newest = run.snapshots[0].steps[-1]
        assert at.select_slider(key="snapshot").value == newest
        assert f"values at step {newest}" in _histogram_title(at)
        if newest != run.num_steps:  # the snapshot is older than the run: said so
            assert f"Step {newest} is the newest snapshot" in _text(at)
            assert f"the run is at {run.num_steps}" in _text(at)


def test_running_statistics_update_formula_follows_the_newest_step():
    at = _open("Running statistics")
    for _ in range(2):
        run = _step(at)
        assert at.slider(key="rs_step").value == run.num_steps
        assert f"The update at step {run.num_steps}" in _text(at)


def test_a_dragged_scrubber_stays_pinned_through_steps_play_and_pause_until_back_to_live():
    at = _open("Activations")
    first = at.session_state["session"].run.snapshots[0].steps[0]
    at.select_slider(key="snapshot").set_value(first).run()
    assert at.button(key="snapshot:live").label.startswith(f"Pinned at step {first}")
    run = _step(at)
    assert run.snapshots[0].steps[-1] > first
    assert at.select_slider(key="snapshot").value == first
    assert f"values at step {first}" in _histogram_title(at)
    at.button(key="play").click().run()
    at.button(key="pause").click().run()
    assert at.select_slider(key="snapshot").value == first, "Pause kept the pinned step"
    at.button(key="snapshot:live").click().run()
    newest = at.session_state["session"].run.snapshots[0].steps[-1]
    assert at.select_slider(key="snapshot").value == newest
    assert not [b for b in at.button if b.key == "snapshot:live"]
    run = _step(at)
    assert at.select_slider(key="snapshot").value == run.snapshots[0].steps[-1] > newest


def test_a_step_the_browser_was_shown_while_following_does_not_pin_the_scrubber():
    at = _open("Running statistics")
    shown = at.session_state["session"].run.num_steps
    run = _step(at)
    assert run.num_steps == shown + STEP_CHUNK
    # a busy browser sends back the step it was shown before the last redraw
    at.slider(key="rs_step").set_value(shown).run()
    assert at.slider(key="rs_step").value == run.num_steps
    assert not [b for b in at.button if b.key == "rs_step:live"]
    # a step it was never moved to is the user's choice
    at.slider(key="rs_step").set_value(3).run()
    assert at.slider(key="rs_step").value == 3
    assert "The update at step 3" in _text(at)
    _step(at)
    assert at.slider(key="rs_step").value == 3


def test_a_batch_size_changed_while_playing_applies_from_the_next_step():
    at = open_app()
    trainer = at.session_state["session"].trainer
    drawn = []  # (step, images in its batch), counted where the trainer draws each batch
    drew = threading.Condition()
    draw = trainer.batches.next

    def counting(batch_size):
        images = draw(batch_size)
        with drew:
            drawn.append((trainer.steps_done + 1, len(images)))
            drew.notify_all()
        return images

    def wait_for_step(step: int) -> None:  # the worker has drawn that step's batch
        with drew:
            assert drew.wait_for(lambda: drawn and drawn[-1][0] >= step, timeout=60)

    trainer.batches.next = counting
    at.button(key="play").click().run()
    wait_for_step(trainer.steps_done + 3)
    at.select_slider(key="batch_size").set_value(16).run()
    assert at.session_state["session"].playing, "the change applied without a pause"
    change = at.session_state["session"].run.changes[-1]
    assert (change["field"], change["old"], change["new"]) == ("batch_size", 64, 16)
    wait_for_step(change["step"] + 3)
    at.button(key="pause").click().run()
    assert {size for step, size in drawn if step < change["step"]} == {64}
    after = [(step, size) for step, size in drawn if step >= change["step"]]
    assert [step for step, _ in after[:3]] == [change["step"] + k for k in range(3)]
    assert {size for _, size in after} == {16}


def test_an_accuracy_that_could_not_be_measured_reads_n_a_not_nan():
    at = open_app(eps="0")  # torch.nn refuses eps 0 in train mode: no batch-statistics accuracy
    metrics = {m.label: m.value for m in at.metric}
    batch = next(v for k, v in metrics.items() if k.endswith("batch stats"))
    assert batch == "n/a" and not any("nan" in v for v in metrics.values())


def test_the_step_a_scrubber_was_last_moved_to_is_never_taken_for_a_drag(monkeypatch):
    """A page idle for a while (a slow Step 10, a lecturer talking) sends back the step it was
    shown: that is no pin, however long ago it was shown. A step shown long ago is a choice."""
    from bnviz.ui.views import common

    clock = [1000.0]
    monkeypatch.setattr(common.time, "monotonic", lambda: clock[0])
    scrubber = common._Scrubber()
    scrubber.follow(16)
    scrubber.follow(26)
    clock[0] += 10 * common.ECHO_SECONDS
    assert scrubber.echo(26) and not scrubber.echo(16)


def test_secondary_charts_are_redrawn_in_turns_while_playing_and_at_once_otherwise(monkeypatch):
    """While a run plays, a view's secondary chart is rebuilt at most every SECONDARY_SECONDS
    and one per redraw (the browser is sent the same figure in between, which it does not
    draw again); a change of its inputs, or a run that is not playing, rebuilds it at once."""
    import types

    import streamlit as st

    from bnviz.ui.views import common

    clock, built = [100.0], []
    monkeypatch.setattr(common.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(common, "chart", lambda figure, key: None)
    st.session_state.clear()  # bare mode: one session state for the process

    def draw(key, playing=True, *inputs):
        frame = types.SimpleNamespace(playing=playing, serial="run")
        common.secondary_chart(frame, key, lambda: built.append(key) or key, *inputs)

    common.new_redraw()
    draw("a"), draw("b")
    assert built == ["a", "b"]  # the first redraw draws both
    clock[0] += 1
    common.new_redraw()
    draw("a"), draw("b")
    assert built == ["a", "b"]  # held: same figures again
    clock[0] += common.SECONDARY_SECONDS
    common.new_redraw()
    draw("a"), draw("b")
    assert built == ["a", "b", "a"]  # both due, one per redraw
    common.new_redraw()
    draw("a"), draw("b")
    assert built == ["a", "b", "a", "b"]
    draw("a", True, "layer 2")
    assert built[-1] == "a"  # another layer picked: at once
    draw("b", False)
    assert built[-1] == "b" and len(built) == 6  # paused: always the latest
    st.session_state.clear()


def test_the_gradients_caption_names_the_layers_the_run_has():
    from bnviz.ui.views.gradients import measured

    for arch, layers in (("conv", "conv weights"), ("mlp", "fully connected layers' weights")):
        trainer = Trainer(TrainConfig(arch=arch, widths=(4, 8), batch_size=8, steps=3))
        trainer.step(3)
        assert f"median ratio of the {layers} over steps 1 to 3" in measured(trainer.run, None)
