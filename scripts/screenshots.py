"""Screenshots of every view, of presenter mode on a projector and of a phone, for the README
and for looking at the app as a user would.

    python scripts/screenshots.py [--out assets] [--steps 120] [--theme light|dark]
                                  [--only views|presenter|phone]

Starts `streamlit run app.py` on a free local port, trains with the Step button, and saves one
PNG per view; then presenter mode as a projector shows it (1280 x 720 at 150% zoom: 853 x 480
CSS px) and a scenario on a phone (390 x 844). Needs Playwright and Debian's Chromium
(/usr/bin/chromium)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import CHROMIUM, CHROMIUM_ARGS, IDLE, Server  # noqa: E402

VIEWS = ("Training", "Activations", "Running statistics", "Gradients", "Train vs eval", "Theory",
         "Save & replay")  # fmt: skip


CONTENT_HEIGHT = """() => {
    const main = document.querySelector('[data-testid="stMain"]');
    return main ? Math.ceil(main.scrollHeight) : document.body.scrollHeight;
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "assets"))
    parser.add_argument("--steps", type=int, default=120, help="steps to train before shooting")
    parser.add_argument("--theme", choices=("light", "dark"), default="light")
    parser.add_argument("--only", choices=("views", "presenter", "phone"), action="append")
    args = parser.parse_args()
    only = set(args.only or ("views", "presenter", "phone"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    # pin the server's theme (it inherits the environment), whatever the browser prefers
    os.environ["STREAMLIT_THEME_BASE"] = args.theme
    with Server() as server:
        url = server.url
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            if "presenter" in only:
                shoot(browser, f"{url}/?scenario=high-lr&present=1", out / "presenter.png",
                      viewport={"width": 853, "height": 480}, device_scale_factor=1.5)  # fmt: skip
            if "phone" in only:
                shoot(browser, f"{url}/?scenario=momentum-lag", out / "phone.png",
                      viewport={"width": 390, "height": 844}, device_scale_factor=2,
                      is_mobile=True, has_touch=True)  # fmt: skip
            if "views" not in only:
                browser.close()
                return
            page = browser.new_page(viewport={"width": 1500, "height": 1100},
                                    color_scheme=args.theme)  # fmt: skip
            page.goto(url)
            page.wait_for_selector(".js-plotly-plot", timeout=60_000)
            page.wait_for_selector(IDLE, timeout=60_000)
            for _ in range(max(0, args.steps - 20) // 10):
                try:
                    page.locator(".st-key-step button").click()
                except Exception:
                    page.screenshot(path=str(out / "failed.png"))
                    raise
                page.wait_for_selector(IDLE, timeout=60_000)
            for view in VIEWS:
                page.set_viewport_size({"width": 1500, "height": 1100})
                page.get_by_role("tab", name=view).click()
                time.sleep(0.5)
                page.wait_for_selector(IDLE, timeout=60_000)
                time.sleep(2.5)  # the chart library draws a moment after the script run
                # the page scrolls inside the main container: grow the viewport to all of it
                height = page.evaluate(CONTENT_HEIGHT)
                page.set_viewport_size({"width": 1500, "height": max(1100, height)})
                time.sleep(1)
                name = view.lower().replace(" & ", "-").replace(" ", "-")
                page.screenshot(path=str(out / f"view-{name}-{args.theme}.png"), full_page=True)
                print(out / f"view-{name}-{args.theme}.png")
            browser.close()


def shoot(browser, url: str, path: Path, **context) -> None:
    """One screen of `url` as a device with this viewport would show it first."""
    page = browser.new_page(color_scheme="light", **context)
    page.goto(url)
    page.wait_for_selector(IDLE, timeout=120_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')]"
        ".some(c => c.getBoundingClientRect().height > 0)",
        timeout=120_000,
    )
    time.sleep(2.5)  # the chart library draws a moment after the script run
    page.screenshot(path=str(path))
    print(path)
    page.close()


if __name__ == "__main__":
    main()
