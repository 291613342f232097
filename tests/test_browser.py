"""One end-to-end test: a real `streamlit run app.py` server driven by Playwright in Debian's
Chromium. Skipped when no browser is installed, unless BNVIZ_REQUIRE_BROWSER=1 (set by CI),
which turns a missing browser into a failure."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*options: str) -> tuple[str, subprocess.Popen]:
    """`streamlit run app.py [options]` on a free local port; returns its URL once it answers."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", *options],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        raise RuntimeError("the streamlit server did not start: " + process.stdout.read().decode())
    return url, process


@pytest.fixture(scope="module")
def server():
    missing = _browser_missing()
    if missing:
        if os.environ.get("BNVIZ_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required but {missing}")
        pytest.skip(missing)
    url, process = start_server()
    yield url
    process.terminate()
    process.wait(timeout=20)


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


def test_step_play_pause_in_a_real_browser(server):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
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

        page.get_by_role("button", name="Step").click()
        stepped = _wait_for_more_points(page, first)
        assert stepped > first

        page.get_by_role("button", name="Play").click()
        page.wait_for_function("() => document.body.innerText.includes('playing')")
        _wait_for_more_points(page, stepped + 5)  # the charts move by themselves
        page.screenshot(path=str(SCREENSHOTS / "browser-training.png"), full_page=True)

        page.get_by_role("button", name="Pause").click()
        page.wait_for_function("() => document.body.innerText.includes('paused')", timeout=30_000)
        page.wait_for_selector(IDLE, timeout=30_000)
        paused = _loss_points(page)
        time.sleep(2)
        assert _loss_points(page) == paused, "training went on after pause"
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
        page.get_by_text("Replaying a saved run: 12 steps").wait_for(timeout=30_000)
        page.wait_for_function("() => document.body.innerText.includes('step 12 of 12')")
        page.get_by_role("tab", name="Training").click()
        page.wait_for_selector(IDLE, timeout=30_000)
        assert _wait_for_more_points(page, 0) == 12
        page.screenshot(path=str(SCREENSHOTS / "browser-replay.png"), full_page=True)
        assert page.locator("[data-testid='stException']").count() == 0
        browser.close()
