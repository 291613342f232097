"""One end-to-end test: a real `streamlit run app.py` server driven by Playwright in Debian's
Chromium. Skipped when no browser is installed, unless BNVIZ_REQUIRE_BROWSER=1 (set by CI),
which turns a missing browser into a failure. The server, the browser's settings and the Pause
timing come from bench/harness.py, which bench_app shares."""

import os
import re
import warnings
from pathlib import Path

import pytest

from bench.harness import CHROMIUM, CHROMIUM_ARGS, IDLE, STATUS_WATCH, Server, pause_and_measure

ROOT = Path(__file__).resolve().parent.parent
CHART = "[data-testid='stPlotlyChart']"
SCREENSHOTS = Path(os.environ.get("BNVIZ_SCREENSHOTS", ROOT / "test-artifacts"))


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}"
    return None


@pytest.fixture(scope="module")
def server():
    missing = _browser_missing()
    if missing:
        if os.environ.get("BNVIZ_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required but {missing}")
        pytest.skip(missing)
    with Server() as running:
        yield running.url


def keep_screenshot(page, name: str, **options) -> None:
    """Saves a screenshot under SCREENSHOTS for a person to look at; it checks nothing. Headless
    Chromium once left a screenshot hanging past 30 s in CI ("fonts loaded", then nothing) on a
    page that answered every other call, so a screenshot that does not come is tried again, then
    reported as a warning instead of failing the checks the test makes."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            page.screenshot(path=str(SCREENSHOTS / name), timeout=15_000, **options)
            return
        except PlaywrightTimeout as error:
            failure = error
    warnings.warn(f"screenshot {name} not kept: {failure}", stacklevel=2)


# Points in the longest trace of the training-loss chart, from plotly's decoded data.
LOSS_POINTS = """() => {
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    const loss = plots.find(p => (p.layout?.title?.text || '').toLowerCase().includes('loss'));
    if (!loss || !loss._fullData) return -1;
    return Math.max(...loss._fullData.map(t => (t.y || []).length));
}"""


def _loss_points(page) -> int:
    return page.evaluate(LOSS_POINTS)


def _wait_for_more_points(page, than: int, timeout_ms: int = 60_000) -> int:
    page.wait_for_function(f"() => ({LOSS_POINTS})() > {than}", timeout=timeout_ms)
    return _loss_points(page)


def _shown_step(page) -> int:
    """The step the status line shows ("... step N of M")."""
    shown = re.search(r"(playing|paused)\b[^\n]*?step (\d+) of", page.inner_text("body"))
    assert shown, "no status line on the page"
    return int(shown.group(2))


def test_step_play_pause_in_a_real_browser(server):
    from playwright.sync_api import sync_playwright

    from bnviz.ui.page import STEP_CHUNK

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server)
        page.wait_for_selector(IDLE, timeout=60_000)
        page.wait_for_selector(".js-plotly-plot", timeout=30_000)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2")
        first = _loss_points(page)
        assert first > 0

        page.locator(".st-key-step button").click()
        stepped = _wait_for_more_points(page, first)
        assert stepped > first

        page.locator(".st-key-play button").click()
        page.wait_for_function("() => document.body.innerText.includes('playing')")
        _wait_for_more_points(page, stepped + 5)  # the charts move by themselves
        keep_screenshot(page, "browser-training.png", full_page=True)

        page.locator(".st-key-pause button").click()
        page.wait_for_function("() => document.body.innerText.includes('paused')", timeout=30_000)
        page.wait_for_selector(IDLE, timeout=30_000)
        paused, paused_step = _loss_points(page), _shown_step(page)
        # Step trains exactly STEP_CHUNK more: had anything else trained on after Pause, the
        # chart and the counter would be further on once those steps are drawn.
        page.locator(".st-key-step button").click()
        _wait_for_more_points(page, paused + STEP_CHUNK - 1)
        page.wait_for_selector(IDLE, timeout=30_000)
        after, after_step = _loss_points(page), _shown_step(page)
        assert (after, after_step) == (paused + STEP_CHUNK, paused_step + STEP_CHUNK), (
            f"{paused} points and step {paused_step} at Pause; {after}, {after_step} after Step"
        )
        assert "paused" in page.inner_text("body"), "Step set it playing again"
        assert page.locator("[data-testid='stException']").count() == 0
        assert not errors, errors
        browser.close()


def test_upload_replays_a_saved_run_and_rejects_a_bad_file(server, tmp_path):
    from playwright.sync_api import sync_playwright

    from bnviz import TrainConfig, train

    saved = train(TrainConfig(widths=(8, 16), batch_size=32, steps=12, snapshot_every=3))
    good = saved.save(tmp_path / "saved-run.json")
    bad = tmp_path / "not-a-run.json"
    bad.write_text('{"hello": "world"}')
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server)
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        page.get_by_role("tab", name="Save & replay").click()
        upload = page.locator("[data-testid='stFileUploader'] input[type='file']")
        upload.set_input_files(str(bad))
        page.get_by_text("This is not a bnviz run file").wait_for(timeout=30_000)
        upload.set_input_files(str(good))
        page.get_by_text("Replaying a saved run: finished, 12 steps").wait_for(timeout=30_000)
        page.wait_for_function("() => document.body.innerText.includes('step 12 of 12')")
        page.get_by_role("tab", name="Training").click()
        page.wait_for_selector(IDLE, timeout=30_000)
        assert _wait_for_more_points(page, 0) == 12
        keep_screenshot(page, "browser-replay.png", full_page=True)
        assert page.locator("[data-testid='stException']").count() == 0
        browser.close()


def _wait_for_status_step(page, step: int) -> None:
    page.wait_for_function(f"() => window.__status.at(-1)[2] >= {step}", timeout=300_000)


def _status_step(page) -> int:
    return page.evaluate("() => window.__status[window.__status.length - 1][2]")


def test_views_follow_the_live_run_and_pause_stops_at_once(server):
    """While the run plays, Activations' histogram and Running statistics' "update at step N"
    keep up with the status line (a busy browser used to pin them at an old step), and Pause
    stops training at once on the heaviest view."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{server}/?steps=1000&seed=7")
        page.wait_for_selector(IDLE, timeout=60_000)
        page.get_by_role("tab", name="Activations").click()
        page.wait_for_selector(IDLE, timeout=60_000)
        page.evaluate(STATUS_WATCH)
        page.locator(".st-key-play button").click()
        histogram = (
            "() => +(/values at step (\\d+)/.exec([...document.querySelectorAll('.js-plotly-plot')]"
            ".map(p => p.layout?.title?.text || '').join(' '))?.[1] || 0)"
        )
        for target in (60, 100):  # the run gets there (slowly on a busy machine), and the
            _wait_for_status_step(page, target)  # histogram follows within a redraw or two
            page.wait_for_function(f"() => ({histogram})() >= {target - 30}", timeout=60_000)
        lag = _status_step(page) - page.evaluate(histogram)
        assert lag <= 60, f"the histogram is {lag} steps behind the status line"

        page.get_by_role("tab", name="Running statistics").click()
        update = "() => +(/The update at step (\\d+)/.exec(document.body.innerText)?.[1] || 0)"
        target = _status_step(page) + 40
        _wait_for_status_step(page, target)
        page.wait_for_function(f"() => ({update})() >= {target - 30}", timeout=60_000)
        lag = _status_step(page) - page.evaluate(update)
        assert lag <= 60, f"'The update at step N' is {lag} steps behind the status line"
        _wait_for_status_step(page, _status_step(page) + 20)  # the speed at this view's pace
        pause = pause_and_measure(page)
        print(f"Pause on Running statistics: {pause}")  # the target, 0.5 s, is bench_app's
        assert pause["seconds_to_stop"] <= 4.0, pause  # 5-10 s before the page drew less
        assert page.locator("[data-testid='stException']").count() == 0
        browser.close()


def test_a_student_follows_a_shared_run_and_the_lecturer_sees_them_counted(server):
    """A lecturer shares, a student opens the link: the lecturer's panel counts the student
    without a click (the run paused), the student's page moves when the lecturer plays, and the
    student's Pause holds their picture while the lecturer's run goes on."""
    from playwright.sync_api import sync_playwright

    sidebar = "() => document.querySelector(\"[data-testid='stSidebar']\").innerText"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        lecturer = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        lecturer.on("pageerror", lambda e: errors.append(str(e)))
        lecturer.goto(f"{server}/?scenario=bn-basics")
        lecturer.wait_for_selector(CHART, timeout=120_000)
        lecturer.wait_for_selector(IDLE, timeout=60_000)
        lecturer.get_by_text("Share my live run").first.click()
        lecturer.locator(".st-key-share button").click()
        lecturer.wait_for_function(f"() => ({sidebar})().includes('0 following')")
        link = re.sub(
            r"\s",
            "",
            lecturer.locator("[data-testid='stSidebar'] code")
            .filter(has_text="follow=")
            .inner_text(),
        )
        assert "?follow=" in link, link

        student = browser.new_page(viewport={"width": 1400, "height": 1000})
        student.on("pageerror", lambda e: errors.append(str(e)))
        student.goto(link)
        student.wait_for_selector(CHART, timeout=120_000)
        student.get_by_text("You are watching a shared run, read-only").wait_for(timeout=60_000)
        lecturer.wait_for_function(f"() => ({sidebar})().includes('1 following')", timeout=30_000)

        for page in (lecturer, student):
            page.evaluate(STATUS_WATCH)
        lecturer.locator(".st-key-play button").click()
        student.get_by_text("You are watching a shared run live").wait_for(timeout=60_000)
        _wait_for_status_step(student, 40)
        student.wait_for_selector(IDLE, timeout=60_000)
        student.locator(".st-key-pause button:visible").click()  # a button with help has two
        student.get_by_text("Your picture is paused at step").wait_for(timeout=30_000)
        student.wait_for_selector(IDLE, timeout=60_000)
        held = _shown_step(student)
        _wait_for_status_step(lecturer, held + 20)  # the lecturer's run goes on ...
        assert _shown_step(student) == held  # ... and the student's picture holds still
        keep_screenshot(student, "follow-student-paused.png")
        assert student.locator("[data-testid='stException']").count() == 0
        assert not errors, errors
        browser.close()
