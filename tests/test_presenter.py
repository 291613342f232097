"""Presenter mode on a projector, and the keyboard shortcuts, in Debian's Chromium (see
test_browser.py for the server and the skip rules). A projector is 1280 x 720 at 150% browser
zoom: a CSS viewport of 853 x 480 at device scale 1.5."""

from test_browser import _shown_step, keep_screenshot, server  # noqa: F401  (a fixture)

from bench.harness import CHROMIUM, CHROMIUM_ARGS, IDLE

VISIBLE_CHARTS = """() => [...document.querySelectorAll("[data-testid='stPlotlyChart']")]
    .map(c => c.getBoundingClientRect()).filter(r => r.height > 0)"""
STEP = r"(playing|paused|waiting)\b[^\n]*?step (\d+) of"


def _page(p, **viewport):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(**viewport)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return browser, page, errors


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(IDLE, timeout=120_000)
    page.wait_for_function(f"() => ({VISIBLE_CHARTS})().length > 0", timeout=120_000)


def test_presenter_mode_fits_a_projector_with_the_chart_on_the_first_screen(server):  # noqa: F811
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        viewport = {"width": 853, "height": 480}
        browser, page, errors = _page(p, viewport=viewport, device_scale_factor=1.5)
        _open(page, f"{server}/?scenario=high-lr&present=1")
        keep_screenshot(page, "presenter-projector.png")
        top = min(r["top"] for r in page.evaluate(VISIBLE_CHARTS))
        assert 0 <= top < viewport["height"], f"the first chart starts at {top}px"
        play = page.locator(".st-key-play button")
        widths = play.evaluate("b => [b.scrollWidth, b.clientWidth, b.innerText]")
        assert widths[0] <= widths[1] and "Play" in widths[2], widths
        sidebar = page.locator("[data-testid='stSidebar']")
        assert sidebar.get_attribute("data-collapsed") == "true"
        assert sidebar.evaluate("s => s.getBoundingClientRect().right") <= 0
        # the controls are a click away, and the link keeps presenter mode
        assert "present=1" in page.url
        assert page.locator("[data-testid='stExpander']").first.is_visible()
        assert not page.locator("h1").filter(has_text="BatchNorm, live").count()
        assert not errors, errors
        browser.close()


def test_keyboard_plays_pauses_steps_and_opens_views_but_not_while_typing(server):  # noqa: F811
    from playwright.sync_api import sync_playwright

    from bnviz.ui.page import STEP_CHUNK

    with sync_playwright() as p:
        browser, page, errors = _page(p, viewport={"width": 1400, "height": 1000})
        _open(page, f"{server}/?steps=2000")
        start = _shown_step(page)
        # → is Step 10
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            f"() => (new RegExp({STEP!r}).exec(document.body.innerText) || [])[2] >= "
            f"{start + STEP_CHUNK}",
            timeout=120_000,
        )
        page.wait_for_selector(IDLE, timeout=60_000)
        stepped = _shown_step(page)
        assert stepped == start + STEP_CHUNK
        # Space plays: the step counter moves
        page.keyboard.press("Space")
        page.wait_for_function(
            f"() => {{ const m = new RegExp({STEP!r}).exec(document.body.innerText); "
            f"return m && m[1] === 'playing' && +m[2] > {stepped + 5}; }}",
            timeout=120_000,
        )
        # focus went to Pause, so the next Space (or Enter) pauses
        assert page.evaluate("() => !!document.activeElement.closest('.st-key-pause')")
        page.keyboard.press("Space")
        page.wait_for_function("() => /paused\\b/.test(document.body.innerText)", timeout=60_000)
        page.wait_for_selector(IDLE, timeout=60_000)
        paused = _shown_step(page)
        # digits open the views: a rerun that redraws the status line, still at the same step
        page.keyboard.press("3")
        page.wait_for_function(
            "() => document.querySelector(\".st-key-view [role='tab'][aria-selected='true']\")"
            "?.innerText.includes('Running statistics')",
            timeout=60_000,
        )
        page.wait_for_selector(IDLE, timeout=60_000)
        assert _shown_step(page) == paused, "training went on after Space paused it"
        # not while typing: a digit in the seed field is the seed's, not a view's
        page.locator("[data-testid='stSidebar'] input[aria-label='Seed']").click()
        page.keyboard.press("5")
        selected = page.locator(".st-key-view [role='tab'][aria-selected='true']").inner_text()
        assert "Running statistics" in selected
        assert not errors, errors
        browser.close()


CHART_TEXT_CONTRAST = """() => {
    const rgba = (c) => {
        let m = /rgba?\\(([\\d.]+),\\s*([\\d.]+),\\s*([\\d.]+)(?:,\\s*([\\d.]+))?/.exec(c);
        if (m) return [+m[1], +m[2], +m[3], m[4] === undefined ? 1 : +m[4]];
        m = /color\\(srgb ([\\d.]+) ([\\d.]+) ([\\d.]+)(?: \\/ ([\\d.]+))?/.exec(c);
        return [255 * m[1], 255 * m[2], 255 * m[3], m[4] === undefined ? 1 : +m[4]];
    };
    const lum = ([r, g, b]) => [r, g, b].map(v => v / 255)
        .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
        .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
    const bg = rgba(getComputedStyle(document.querySelector("[data-testid='stApp']"))
        .backgroundColor);
    const worst = {};
    for (const t of document.querySelectorAll('.js-plotly-plot text')) {
        if (!t.textContent.trim()) continue;
        const [r, g, b, a] = rgba(getComputedStyle(t).fill);
        const over = [r, g, b].map((v, i) => a * v + (1 - a) * bg[i]);
        const [hi, lo] = [lum(over), lum(bg)].sort((x, y) => y - x);
        const ratio = (hi + 0.05) / (lo + 0.05);
        const kind = t.getAttribute('class') || t.parentNode.getAttribute('class');
        worst[kind] = Math.min(worst[kind] ?? 99, ratio);
    }
    return worst;
}"""


def test_chart_text_meets_wcag_aa_contrast_on_the_page(server):  # noqa: F811
    """Streamlit's chart theme writes ticks, axis titles and subtitles in a grey of 3.7:1 on
    white; the page's CSS (style.CHART_TEXT_CSS) brings every chart text to 4.5:1 or more."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page, errors = _page(p, viewport={"width": 1400, "height": 1000})
        # the second row of the running statistics chart has axes of its own (y2tick, ...)
        _open(page, f"{server}/?view=Running+statistics")
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .y2tick').length")
        worst = page.evaluate(CHART_TEXT_CONTRAST)
        assert {"xtick", "ytick", "y2tick", "gtitle"} <= set(worst), worst
        assert min(worst.values()) >= 4.5, worst
        browser.close()
