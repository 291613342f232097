"""The page on a phone (390 x 844 CSS px, touch), in Debian's Chromium driven by Playwright: every
view and two scenarios fit the screen's width, formulas are whole or scroll in their own box,
plotly's toolbar is hidden, chart titles end inside their chart, and the buttons are compact on
the first screen. The layout is PHONE_CSS in bnviz/ui/style.py. Skipped without a browser like
tests/test_browser.py (whose server fixture this shares), unless BNVIZ_REQUIRE_BROWSER=1."""

from urllib.parse import quote

import pytest
from test_browser import keep_screenshot, server  # noqa: F401 (a fixture)

from bench.harness import CHROMIUM, CHROMIUM_ARGS, IDLE
from bnviz.ui.links import VIEWS

WIDTH, HEIGHT = 390, 844
CHART_TITLE = "[data-testid='stPlotlyChart'] .js-plotly-plot .g-gtitle"
NO_CHARTS = {"Theory": ".katex-display", "Save & replay": "[data-testid='stFileUploader']"}
FORMULAS = {"Running statistics", "Theory"}
PAGES = [(f"view={quote(view)}", view) for view in VIEWS] + [
    ("scenario=high-lr", None),
    ("scenario=momentum-lag", None),
]

CONTROLS = 7  # Play, Pause, Step 10, Reset, Continue, Fork here, and the keyboard help
BUTTONS_SHOWN = """() => [...document.querySelectorAll('.st-key-controls button')]
    .filter(b => b.getBoundingClientRect().width > 0).length"""

# What the page does at the phone's width, measured in the browser.
MEASURE = """() => {
    const box = e => e.getBoundingClientRect();
    const main = document.querySelector("[data-testid='stMain']");
    const katex = [...document.querySelectorAll('.katex-display')].map(k => ({
        scroll: k.scrollWidth, client: k.clientWidth, overflow: getComputedStyle(k).overflowX,
        left: box(k).left, right: box(k).right, text: k.textContent.slice(0, 40)}));
    const modebars = [...document.querySelectorAll('.js-plotly-plot .modebar-btn')]
        .filter(m => box(m).width > 0 && box(m).height > 0).length;
    const titles = [...document.querySelectorAll('.js-plotly-plot .g-gtitle text')].map(t => ({
        cls: t.getAttribute('class'), text: t.textContent.slice(0, 40),
        left: box(t).left, right: box(t).right,
        chartLeft: box(t.closest('.js-plotly-plot')).left,
        chartRight: box(t.closest('.js-plotly-plot')).right}));
    const row = document.querySelector('.st-key-controls');
    const shown = [...row.querySelectorAll('button')].filter(b => box(b).width > 0);
    const buttons = shown.map(b => {
        const label = [b, ...b.querySelectorAll("[data-testid='stMarkdownContainer'], p")];
        return {text: b.innerText.trim(), right: box(b).right,
                cut: label.filter(e => e.scrollWidth > e.clientWidth).length};
    });
    return {page: document.documentElement.scrollWidth, main: [main.scrollWidth, main.clientWidth],
            katex, modebars, titles, controlsBottom: box(row).bottom, buttons};
}"""


@pytest.fixture(scope="module")
def phone(server):  # noqa: F811
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": WIDTH, "height": HEIGHT},
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
        )
        yield server, context
        browser.close()


def _open(page, url: str, view: str | None) -> None:
    page.goto(url)
    page.wait_for_function(f"() => ({BUTTONS_SHOWN})() === {CONTROLS}", timeout=120_000)
    page.wait_for_selector(NO_CHARTS.get(view, CHART_TITLE), timeout=120_000)
    page.wait_for_selector(IDLE, timeout=120_000)
    page.wait_for_function("() => document.fonts.status === 'loaded'")


@pytest.mark.parametrize("query, view", PAGES, ids=[q for q, _ in PAGES])
def test_phone_layout(phone, query, view):
    url, context = phone
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _open(page, f"{url}/?{query}", view)
    if view == "Running statistics":  # a few steps more: the formulas of a later update
        page.locator(".st-key-step button").click()
        page.wait_for_function("() => /step 30 of/.test(document.body.innerText)", timeout=60_000)
        page.wait_for_selector(IDLE, timeout=60_000)
    name = query.split("=", 1)[1].replace("%20", "-").replace("%26", "and").lower()
    keep_screenshot(page, f"phone-{name}.png")
    got = page.evaluate(MEASURE)
    # the whole page, for a person to look at: as tall as the content, as wide as the phone
    tall = page.evaluate("() => document.querySelector(\"[data-testid='stMain']\").scrollHeight")
    page.set_viewport_size({"width": WIDTH, "height": min(tall, 8000)})
    keep_screenshot(page, f"phone-{name}-whole.png")
    page.close()

    assert got["page"] <= WIDTH, f"the page is {got['page']} px wide"
    assert got["main"][0] <= got["main"][1], f"the main area scrolls sideways: {got['main']}"
    if view in FORMULAS:
        assert got["katex"], "no formulas drawn"
    for k in got["katex"]:
        assert k["left"] >= 0 and k["right"] <= WIDTH + 0.5, f"formula box off screen: {k}"
        if k["scroll"] > k["client"]:
            assert k["overflow"] in ("auto", "scroll"), f"formula cut: {k}"
    assert got["modebars"] == 0, f"{got['modebars']} plotly toolbars shown"
    if view not in NO_CHARTS:
        assert got["titles"], "no chart titles"
    for t in got["titles"]:
        assert t["left"] >= t["chartLeft"] - 0.5, f"chart title cut at the left: {t}"
        assert t["right"] <= t["chartRight"] + 0.5, f"chart title cut at the right: {t}"
    assert got["controlsBottom"] <= HEIGHT, f"the buttons end at {got['controlsBottom']} px"
    assert len(got["buttons"]) == CONTROLS, got["buttons"]
    for b in got["buttons"]:
        assert b["cut"] == 0, f"button label cut: {b}"
        assert b["right"] <= WIDTH, f"button off screen: {b}"
    assert not errors, errors
