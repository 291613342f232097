"""A class on one host: 60 sessions of one real `streamlit run app.py` server, in four parts.

    python -m bench.bench_class [--sessions 60] [--browsers 2] [--link scenario=bn-basics]
                                [--parts play,batch,follow,distinct] [--json PATH] [--trace]

Each session is a websocket client speaking Streamlit's own protocol (bench/wsclient.py), all in
this process on one event loop, except the last --browsers, which are Chromium pages (their
step counter's changes are counted as the page drew them). The server starts cold (nothing
trained, nothing cached); only its start-up is awaited (the health endpoint).

1. play: every session opens the same scenario link at once (time to first chart), then all
   press Play. For --play-seconds: the steps each session's status line added per second, the
   changes of the step counter per second in each browser, and how many trainers ran how many
   distinct histories (the server logs `bnviz train: <branch> <history>` for each stint).
2. batch: the same sessions press Reset, each sets one of four batch sizes in the sidebar (at
   the same step: four histories) and presses Play; watched for --batch-seconds.
3. follow: a lecturer shares a live run ("Share my live run") and presses Play; 60 followers
   open its ?follow= link at once. Time to first chart, steps seen, refreshes, memory per
   follower, trainers.
4. distinct: --distinct sessions, each with its own seed, press Play: truly distinct runs, which
   queue for the training threads and take turns. Wait until each first advanced, the steps
   each gained in --distinct-seconds and their fairness (Jain's index).

Throughout, a thread times the server's /_stcore/health every half second (it is answered by
the event loop that also sends every session's messages), and the CPU time of the server, of
this process and of everything else on the host (Chromium included) is accounted: other work
on a 2-core host changes every number here. Prints a markdown table (part | measure | result |
target); --json writes the numbers, --trace adds the status lines of five sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from bench.harness import CHROMIUM, CHROMIUM_ARGS, IDLE, Server, host_busy_seconds
from bench.wsclient import StreamlitClient

RSS_TARGET_MIB = 1.5 * 1024
FIRST_CHART_TARGET_S = 10.0
COMPUTE_LINE = re.compile(r"bnviz compute: (\S+) ?(.*)")
STEP = re.compile(r"step (\d+) of (\d+)")
RATE = re.compile(r"([\d.]+) steps/s")
QUEUED = re.compile(r"(\d+)(?:st|nd|rd|th) in line")
STATE = re.compile(r"\*\*(\w+)\*\*")  # the status line: ":icon: **playing** · step 20 of 300"
CHART = "[data-testid='stPlotlyChart']"
# Every change of a browser's status line, [ms, state, step], as the page drew it. It reads
# the markdown blocks' textContent when the DOM changes, which needs no layout (innerText,
# polled, would lay out the whole page each time and take a browser's CPU from its drawing).
STATUS_LOG = r"""() => {
    if (window.__status) return;
    const log = window.__status = [];
    const states = 'playing|waiting|paused|finished|diverged|failed|stopped|replay';
    const re = new RegExp(`(${states})\\b[^\\n]*?step (\\d+) of`);
    const check = () => {
        for (const el of document.querySelectorAll('[data-testid="stMarkdownContainer"]')) {
            const m = re.exec(el.textContent);
            if (!m) continue;
            const last = log[log.length - 1];
            if (!last || last[1] !== m[1] || last[2] !== +m[2]) {
                log.push([performance.now(), m[1], +m[2]]);
            }
            return;
        }
    };
    const all = {subtree: true, childList: true, characterData: true};
    new MutationObserver(check).observe(document.body, all);
    check();
}"""
FINISHED = ForwardMsg.ScriptFinishedStatus.FINISHED_SUCCESSFULLY
COMPILE_ERROR = ForwardMsg.ScriptFinishedStatus.FINISHED_WITH_COMPILE_ERROR


# -- the server -----------------------------------------------------------------------------


class ClassServer(Server):
    """harness.Server (its RSS and CPU time sampled every 100 ms), with a thread that, once it
    is up, times its /_stcore/health every half second, and the times of what the bench did
    (`marks`) to place the server's output."""

    def __init__(self, cpus: int | None = None, echo: bool = False, options: tuple = ()):
        # options: more `streamlit run` options, e.g. ("--logger.level", "info")
        super().__init__(options, cpus=cpus, echo=echo, sample=True, start_timeout=90)
        self.health: list[tuple[float, float, bool]] = []  # (sent, seconds waited, answered)
        self._probe_sent: float | None = None  # a health probe still waiting for its answer
        self.marks: dict[str, float] = {}  # when the bench did what, to place its output

    def start(self) -> float:
        """Start and wait for the health endpoint; returns the seconds it took."""
        up = super().start()
        self._thread(self._probe_health)
        return up

    def _probe_health(self) -> None:
        """How long the server's event loop takes to answer, every half second: when it is
        starved, every session's messages wait too. A probe that fails (30 s timeout or
        refused) counts the time it waited."""
        while not self._stop.is_set() and self.process.poll() is None:
            self._probe_sent = sent = time.monotonic()
            ok = self.healthy(timeout=30)
            self.health.append((sent, time.monotonic() - sent, ok))
            self._probe_sent = None
            self._stop.wait(max(0.0, 0.5 - (time.monotonic() - sent)))

    def health_latency(self, since: float, until: float | None = None) -> dict:
        """The longest wait for /_stcore/health between since and until (default now), and
        the share of that time spent waiting for an answer: probes go one after another, so
        a share near 1 means the event loop was stalled most of the time."""
        until = time.monotonic() if until is None else until
        probes = [(t, waited, ok) for t, waited, ok in self.health if since <= t <= until]
        waits = [waited for _, waited, _ in probes]
        sent = self._probe_sent
        if sent is not None and since <= sent <= until:  # still unanswered: waiting so far
            waits.append(until - sent)
        return {
            "max": max(waits, default=math.nan),
            "waiting_share": min(1.0, sum(waits) / (until - since)) if until > since else 0.0,
            "probes": len(waits),
            "failed": sum(not ok for _, _, ok in probes),
        }


# -- one session ----------------------------------------------------------------------------


@dataclass
class Observation:
    """A status text seen by a session."""

    t: float
    text: str
    state: str | None
    step: int | None
    rate: float | None
    queued: int | None


def _observe(t: float, text: str) -> Observation | None:
    step, rate, queued = STEP.search(text), RATE.search(text), QUEUED.search(text)
    if step is None and queued is None:
        return None
    state = STATE.search(text)
    return Observation(
        t,
        text,
        state.group(1) if state else None,
        int(step.group(1)) if step else None,
        float(rate.group(1)) if rate else None,
        int(queued.group(1)) if queued else None,
    )


@dataclass
class Session:
    """What one client saw, with times from time.monotonic()."""

    index: int
    client: StreamlitClient
    t_start: float = 0.0  # just before connecting
    t_connected: float | None = None
    t_first_chart: float | None = None
    t_first_finished: float | None = None
    charts: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # a chart and a finished run
    play_note: str | None = None  # why Play could not be pressed
    finished_runs: int = 0  # script runs (whole page or fragment) that finished
    follow_code: str | None = None  # a "share my live run" link's code, once shown

    def on_message(self, t: float, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "delta":
            delta = msg.delta
            if delta.HasField("new_element"):
                self._element(t, delta.new_element)
            elif delta.HasField("new_transient"):  # spinners and other transient elements
                for element in delta.new_transient.elements:
                    self._element(t, element)
        elif kind == "script_finished":
            # the first full run is over (a run cut short by st.rerun() goes on; fragment
            # runs finish with their own status)
            if self.t_first_finished is None and msg.script_finished in (FINISHED, COMPILE_ERROR):
                self.t_first_finished = t
            self.finished_runs += 1
            if msg.script_finished == COMPILE_ERROR:
                self.errors.append("script finished with a compile error")
        elif kind == "session_event" and msg.session_event.HasField("script_compilation_exception"):
            e = msg.session_event.script_compilation_exception
            self.errors.append(f"compile error: {e.type}: {e.message}")
        if self.t_first_chart is not None and self.t_first_finished is not None:
            self.ready.set()

    def _element(self, t: float, element) -> None:
        kind = element.WhichOneof("type")
        text = ""
        if kind == "plotly_chart":
            self.charts += 1
            if self.t_first_chart is None:
                self.t_first_chart = t
        elif kind == "exception":
            e = element.exception
            (self.warnings if e.is_warning else self.errors).append(
                f"exception: {e.type}: {e.message}"
            )
        elif kind == "alert":
            text = element.alert.body
            if element.alert.format == Alert.Format.ERROR:
                self.errors.append(f"st.error: {text}")
        elif kind in ("markdown", "text"):
            text = getattr(element, kind).body
        elif kind == "code" and "?follow=" in element.code.code_text:
            self.follow_code = element.code.code_text.split("?follow=")[1].strip()
        elif kind in ("progress", "spinner"):
            text = getattr(element, kind).text
        if text:
            observation = _observe(t, text)
            if observation is not None:
                self.observations.append(observation)

    def since(self, t0: float) -> list[Observation]:
        return [o for o in self.observations if o.t >= t0]


# -- the phases -----------------------------------------------------------------------------


async def _open(session: Session, go: asyncio.Event, timeout: float) -> None:
    """Connect when told to, then wait for a chart and the end of the first run."""
    await go.wait()
    session.t_start = time.monotonic()
    client = session.client
    try:
        await client.connect()
        session.t_connected = time.monotonic()
        ready = asyncio.ensure_future(session.ready.wait())
        closed = asyncio.ensure_future(client.wait_closed())
        done, _ = await asyncio.wait(
            {ready, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        closed.cancel()
        if closed in done:
            session.errors.append(f"connection ended: {client.closed_reason}")
        elif not done:
            missing = [
                what
                for what, t in (
                    ("chart", session.t_first_chart),
                    ("finished run", session.t_first_finished),
                )
                if t is None
            ]
            session.errors.append(f"timeout after {timeout:.0f} s: no {' and no '.join(missing)}")
    except Exception as e:  # a refused or broken connection is a result, not a crash
        session.errors.append(f"{type(e).__name__}: {e}")


# -- numbers --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; inf counts (a session that never got there)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] if ordered else math.nan


def open_numbers(sessions: list[Session]) -> dict:
    def times(attribute: str) -> list[float]:
        return [
            math.inf if (t := getattr(s, attribute)) is None else t - s.t_start for s in sessions
        ]

    chart, finished = times("t_first_chart"), times("t_first_finished")
    errors = Counter(e for s in sessions for e in s.errors)
    return {
        "sessions": len(sessions),
        "with_chart": sum(s.t_first_chart is not None for s in sessions),
        "with_error": sum(bool(s.errors) for s in sessions),
        "errors": dict(errors.most_common()),
        "warnings": dict(Counter(w for s in sessions for w in s.warnings).most_common()),
        "first_chart_s": {
            "p50": percentile(chart, 50),
            "p95": percentile(chart, 95),
            "max": max(chart, default=math.nan),
            "min": min(chart, default=math.nan),
            "all": chart,
        },
        "first_run_end_s": {
            "p50": percentile(finished, 50),
            "p95": percentile(finished, 95),
            "max": max(finished, default=math.nan),
        },
        "queued_sessions": sum(any(o.queued is not None for o in s.observations) for s in sessions),
    }


def play_numbers(sessions: list[Session], t_play: float, t_watch: float, seconds: float) -> dict:
    """Who queued, who trained, and how many advanced within the same 1-second window.

    The watch starts once every session has answered the press (t_watch). A session's step
    counter "advanced in window w" when a status line it received during
    [t_watch + w, t_watch + w + 1) shows a higher step than the one it had seen before."""
    windows = max(1, math.ceil(seconds))
    advancing = [0] * windows
    rates, seen, answers = [], [], []
    for s in sessions:
        steps = [o for o in s.observations if o.step is not None]
        in_window = [False] * windows
        for before, now in zip(steps, steps[1:]):
            w = math.floor(now.t - t_watch)
            if now.step > before.step and 0 <= w < windows:
                in_window[w] = True
        for w, advanced in enumerate(in_window):
            advancing[w] += advanced
        after_press = s.since(t_play)
        if after_press:
            answers.append(after_press[0].t - t_play)
        # the steps this viewer saw added during the watch, per second of it
        at_start = [o.step for o in steps if o.t <= t_watch]
        at_end = [o.step for o in steps if o.t <= t_watch + seconds]
        if at_start and at_end and at_end[-1] > at_start[-1]:
            seen.append((at_end[-1] - at_start[-1]) / seconds)
            running = [o.rate for o in s.since(t_watch) if o.rate is not None and o.queued is None]
            if running:
                rates.append(running[-1])
    pressed = sum(s.play_note is None for s in sessions)
    answers += [math.inf] * (pressed - len(answers))
    return {
        "pressed": pressed,
        "not_pressed": dict(Counter(s.play_note for s in sessions if s.play_note).most_common()),
        "answer_s": {"p50": percentile(answers, 50), "max": max(answers, default=math.nan)},
        "seconds": seconds,
        "saw_playing": sum(  # a queued session says waiting, not playing
            any(o.state in ("playing", "waiting") for o in s.since(t_play)) for s in sessions
        ),
        "queued_sessions": sum(
            any(o.queued is not None for o in s.since(t_play)) for s in sessions
        ),
        "max_queue_position": max(
            (o.queued for s in sessions for o in s.since(t_play) if o.queued is not None),
            default=None,
        ),
        "advancing_per_window": advancing,
        "max_advancing": max(advancing),
        "sessions_that_advanced": len(seen),
        "status_steps_per_s": {
            "median": statistics.median(rates) if rates else None,
            "min": min(rates, default=None),
            "max": max(rates, default=None),
        },
        "seen_steps_per_s": {
            "median": statistics.median(seen) if seen else None,
            "total": sum(seen),
        },
        "with_error_at_end": sum(bool(s.errors) for s in sessions),
    }


def compute_numbers(server: ClassServer) -> dict:
    """The `bnviz compute:` lines, and the tracebacks before and after the clients left."""
    found = [COMPUTE_LINE.search(line) for _, line in server.lines]
    keys = Counter(f"{m.group(1)} {m.group(2).strip()}".strip() for m in found if m)
    closing = server.marks.get("closing", math.inf)
    return {
        "lines": sum(keys.values()),
        "distinct": len(keys),
        "repeated": {key: n for key, n in keys.items() if n > 1},
        "tracebacks": sum("Traceback" in line for t, line in server.lines if t < closing),
        "tracebacks_on_close": sum("Traceback" in line for t, line in server.lines if t >= closing),
        "traceback_texts": _tracebacks([line for _, line in server.lines]),
    }


def _tracebacks(lines: list[str], limit: int = 5) -> list[str]:
    """The first few tracebacks in the server's output, each up to its exception line."""
    found = []
    for i, line in enumerate(lines):
        if "Traceback" in line and len(found) < limit:
            block = [line]
            for following in lines[i + 1 : i + 60]:
                block.append(following)
                if following.strip() and not following.startswith((" ", "\t", "Traceback")):
                    break  # the "SomeError: message" line ends it
            found.append("".join(block))
    return found


# -- the report -----------------------------------------------------------------------------


def _s(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "never" if math.isinf(value) else f"{value:.{digits}f} s"


# -- browsers -------------------------------------------------------------------------------


class BrowserSession:
    """A Chromium page among the sessions: what a student's laptop shows. Its status line is
    watched in the page (STATUS_LOG), so its step counter's changes are counted as
    the browser drew them."""

    def __init__(self, index: int, context, url: str) -> None:
        self.index, self.context, self.url = index, context, url
        self.page = None
        self.t_start = 0.0
        self.t_first_chart: float | None = None
        self.t_first_finished: float | None = None
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.observations: list[Observation] = []
        self.play_note: str | None = None
        self.offset = 0.0  # time.monotonic() minus the page's performance.now() in seconds

    async def open(self, go: asyncio.Event, timeout: float) -> None:
        await go.wait()
        self.t_start = time.monotonic()
        ms = timeout * 1000
        try:
            self.page = await self.context.new_page()
            self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
            await self.page.goto(self.url, timeout=ms)
            await self.page.wait_for_selector(CHART, timeout=ms)
            self.t_first_chart = time.monotonic()
            await self.page.wait_for_selector(IDLE, timeout=ms)
            self.t_first_finished = time.monotonic()
            self.offset = time.monotonic() - await self.page.evaluate("performance.now()") / 1000
            await self.page.evaluate(STATUS_LOG)
        except Exception as e:  # a page that fails is a result, not a crash
            self.errors.append(f"{type(e).__name__}: {str(e)[:300]}")

    async def click(self, key: str) -> None:
        await self.page.locator(f".st-key-{key} button").click(timeout=60_000)

    async def collect(self) -> None:
        """Read the status line's changes back from the page."""
        if self.page is None:
            return
        log = await self.page.evaluate("() => window.__status || []")
        self.observations = [
            Observation(self.offset + ms / 1000, f"{state} step {step}", state, step, None, None)
            for ms, state, step in log
        ]

    def since(self, t0: float) -> list[Observation]:
        return [o for o in self.observations if o.t >= t0]


async def _browser(n: int):
    """A Chromium with n fresh contexts (none when n is 0): (playwright, browser, contexts).
    Its pages share this machine's cores with the server: in a classroom they would run on
    the students' laptops, so every number here is a little pessimistic."""
    if not n:
        return None, None, []
    from playwright.async_api import async_playwright

    playwright = await async_playwright().start()
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    contexts = [
        await browser.new_context(viewport={"width": 1280, "height": 800}) for _ in range(n)
    ]
    return playwright, browser, contexts


# -- the parts of a class -------------------------------------------------------------------

TRAIN_LINE = re.compile(r"bnviz train: (\w+) (\S+ \w+) from step")
SEEN_TARGET = 5.0  # steps/s each session sees added
REFRESH_TARGET = 2.0  # changes of the step counter a second, in a browser


def viewers(server: ClassServer, query: str, n: int, contexts: list) -> list:
    """n sessions of one link: websocket clients, and the last len(contexts) in Chromium."""
    clients = [Session(i, StreamlitClient(server.url, query)) for i in range(n - len(contexts))]
    for s in clients:
        s.client.add_listener(s.on_message)
    pages = [
        BrowserSession(n - len(contexts) + k, c, f"{server.url}/?{query}")
        for k, c in enumerate(contexts)
    ]
    return clients + pages


async def open_all(sessions: list, timeout: float) -> None:
    """Every session connects at the same moment and waits for a chart."""
    go = asyncio.Event()
    tasks = [
        asyncio.create_task(
            s.open(go, timeout) if isinstance(s, BrowserSession) else _open(s, go, timeout)
        )
        for s in sessions
    ]
    await asyncio.sleep(0)
    go.set()
    await asyncio.gather(*tasks, return_exceptions=True)


async def press(sessions: list, key: str) -> float:
    """Press a button in every session at once; returns when they were pressed."""
    t = time.monotonic()

    async def one(s):
        try:
            if isinstance(s, BrowserSession):
                await s.click(key)
            else:
                await s.client.click(key)
        except Exception as e:
            s.play_note = f"{key}: {type(e).__name__}: {str(e)[:200]}"

    await asyncio.gather(*(one(s) for s in sessions))
    return t


async def until(condition, timeout: float, poll: float = 0.1) -> bool:
    """Wait for condition() on this loop (the clients' messages arrive meanwhile)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll)
    return True


async def watch(sessions: list, t_press: float, seconds: float, timeout: float) -> float:
    """Once every websocket session has shown a status line after t_press (or the timeout),
    watch for `seconds`; returns when the watch began."""
    clients = [s for s in sessions if isinstance(s, Session) and s.client.connected]
    await until(lambda: all(s.since(t_press) for s in clients), timeout)
    t_watch = time.monotonic()
    await asyncio.sleep(seconds)
    await asyncio.gather(
        *(s.collect() for s in sessions if isinstance(s, BrowserSession)), return_exceptions=True
    )
    return t_watch


def seen_rate(s, t0: float, seconds: float) -> float:
    """Steps a session's status line added per second between t0 and t0 + seconds."""
    steps = [o for o in s.observations if o.step is not None]
    start = [o.step for o in steps if o.t <= t0] or [o.step for o in steps[:1]]
    end = [o.step for o in steps if o.t <= t0 + seconds]
    return (end[-1] - start[-1]) / seconds if start and end else 0.0


def refresh_rate(s: BrowserSession, t0: float, seconds: float) -> float:
    """Changes of a browser's step counter per second between t0 and t0 + seconds."""
    shown = [o for o in s.observations if t0 <= o.t <= t0 + seconds and o.step is not None]
    return sum(a.step != b.step for a, b in zip(shown, shown[1:])) / seconds


def trainers(server: ClassServer, since: float, until_: float) -> dict:
    """The branches that trained in a span of time (the server's `bnviz train:` lines): how
    many trainers, and how many distinct histories they trained."""
    found = [TRAIN_LINE.search(line) for t, line in server.lines if since <= t <= until_]
    found = [m for m in found if m]
    return {
        "trainers": len({m.group(1) for m in found}),
        "histories": len({m.group(2) for m in found}),
    }


def watch_numbers(sessions: list, t_watch: float, seconds: float) -> dict:
    rates = [seen_rate(s, t_watch, seconds) for s in sessions]
    browsers = [s for s in sessions if isinstance(s, BrowserSession)]
    refresh = [refresh_rate(s, t_watch, seconds) for s in browsers]
    return {
        "seen_steps_per_s": {
            "min": min(rates, default=math.nan),
            "median": statistics.median(rates) if rates else math.nan,
            "at_target": sum(r >= SEEN_TARGET for r in rates),
        },
        "browser_refreshes_per_s": {"min": min(refresh, default=math.nan), "all": refresh},
        "advancing": sum(r > 0 for r in rates),
        "with_error": sum(bool(s.errors) or bool(s.play_note) for s in sessions),
        "errors": dict(
            Counter(e for s in sessions for e in [*s.errors, s.play_note] if e).most_common(5)
        ),
    }


async def part_play(server, args, contexts) -> tuple[list, dict]:
    """60 sessions of one scenario link open at once and all press Play."""
    sessions = viewers(server, args.link, args.sessions, contexts)
    t0 = time.monotonic()
    await open_all(sessions, args.timeout)
    t_opened = time.monotonic()
    rss_open = server.peak_rss_mib(since=t0)
    t_play = await press(sessions, "play")
    t_watch = await watch(sessions, t_play, args.play_seconds, args.answer_timeout)
    t_end = time.monotonic()
    traced = sessions[:3] + sessions[-2:]  # websocket clients, then the browsers
    trace = [[(round(o.t - t_play, 2), o.text) for o in s.observations] for s in traced]
    return sessions, {
        "trace": trace if args.trace else None,
        "open": open_numbers(sessions),
        "watch": watch_numbers(sessions, t_watch, args.play_seconds),
        "train": trainers(server, t_play, t_end),
        "expected_histories": 1,
        "peak_rss_mib": server.peak_rss_mib(since=t0),
        "rss_open_mib": rss_open,
        "health": server.health_latency(t_opened, t_end),
    }


BATCH_SIZES = (8, 16, 32, 128)  # none the default: each is a change in the sidebar


async def part_batch(server, args, sessions: list) -> dict:
    """The same sessions Reset, each sets one of four batch sizes in the sidebar (at the same
    step: four histories), and press Play."""
    from streamlit.proto.Common_pb2 import StringArray

    browsers = [s for s in sessions if isinstance(s, BrowserSession)]
    await press(browsers, "pause")  # the browsers watch this part out
    clients = [s for s in sessions if isinstance(s, Session) and s.client.connected]
    t0 = time.monotonic()
    before = {id(s): s.finished_runs for s in clients}
    await press(clients, "reset")
    await until(lambda: all(s.finished_runs > before[id(s)] for s in clients), args.answer_timeout)
    before = {id(s): s.finished_runs for s in clients}
    for k, s in enumerate(clients):
        size = BATCH_SIZES[k % len(BATCH_SIZES)]
        s.client.set_widget("batch_size", string_array_value=StringArray(data=[str(size)]))
    await asyncio.gather(*(s.client.rerun() for s in clients), return_exceptions=True)
    await until(lambda: all(s.finished_runs > before[id(s)] for s in clients), args.answer_timeout)
    t_play = await press(clients, "play")
    seconds = args.batch_seconds
    t_watch = await watch(clients, t_play, seconds, args.answer_timeout)
    t_end = time.monotonic()
    return {
        "sessions": len(clients),
        "seconds": seconds,
        "watch": watch_numbers(clients, t_watch, seconds),
        "train": trainers(server, t_play, t_end),
        "expected_histories": len(BATCH_SIZES),
        "peak_rss_mib": server.peak_rss_mib(since=t0),
        "health": server.health_latency(t0, t_end),
    }


async def part_follow(server, args, contexts) -> tuple[list, dict]:
    """A lecturer shares a live run; 60 followers open its link at once."""
    lecturer = viewers(server, args.link, 1, [])[0]
    await open_all([lecturer], args.timeout)
    await lecturer.client.click("share")
    await until(lambda: lecturer.follow_code is not None, args.answer_timeout)
    if lecturer.follow_code is None:
        return [lecturer], {"error": "no share link appeared"}
    t_play = time.monotonic()
    await lecturer.client.click("play")
    t0 = time.monotonic()
    rss_before = statistics.median(kib for t, kib in server.rss if t >= t0 - 2) / 1024
    followers = viewers(server, f"follow={lecturer.follow_code}", args.sessions, contexts)
    await open_all(followers, args.timeout)
    t_opened = time.monotonic()
    t_watch = await watch(followers, t0, args.play_seconds, args.answer_timeout)
    t_end = time.monotonic()
    rss_watched = statistics.median(kib for t, kib in server.rss if t >= t_watch) / 1024
    return [lecturer, *followers], {
        "open": open_numbers(followers),
        "watch": watch_numbers(followers, t_watch, args.play_seconds),
        "train": trainers(server, t_play, t_end),
        "expected_histories": 1,
        "peak_rss_mib": server.peak_rss_mib(since=t0),
        "rss_mib": {"before": rss_before, "watched": rss_watched},
        "mib_per_follower": (rss_watched - rss_before) / len(followers),
        "health": server.health_latency(t_opened, t_end),
    }


async def part_distinct(server, args) -> tuple[list, dict]:
    """Sessions with truly distinct runs (each its own seed) press Play: they queue for the
    server's training threads and take turns (QUANTUM_SECONDS each)."""
    sessions = [
        Session(i, StreamlitClient(server.url, f"{args.link}&seed={1000 + i}"))
        for i in range(args.distinct)
    ]
    for s in sessions:
        s.client.add_listener(s.on_message)
    await open_all(sessions, args.timeout)
    t_play = await press(sessions, "play")
    t_watch = await watch(sessions, t_play, args.distinct_seconds, args.answer_timeout)
    t_end = time.monotonic()
    waits, gained = [], []
    for s in sessions:
        steps = [o for o in s.observations if o.step is not None]
        at_play = [o.step for o in steps if o.t <= t_play] or [0]
        moved = [o.t for o in steps if o.t > t_play and o.step > at_play[-1]]
        waits.append(moved[0] - t_play if moved else math.inf)
        last = [o.step for o in steps if o.t <= t_end]
        gained.append((last[-1] - at_play[-1]) if last else 0)
    fairness = sum(gained) ** 2 / (len(gained) * sum(g * g for g in gained)) if any(gained) else 0
    play = play_numbers(sessions, t_play, t_watch, args.distinct_seconds)
    return sessions, {
        "sessions": len(sessions),
        "wait_s": {"p50": percentile(waits, 50), "max": max(waits, default=math.nan)},
        "steps_gained": {"min": min(gained, default=0), "max": max(gained, default=0)},
        "fairness": fairness,
        "seconds": t_end - t_play,
        "max_advancing": play["max_advancing"],
        "queued_sessions": play["queued_sessions"],
        "train": trainers(server, t_play, t_end),
        "expected_histories": len(sessions),
    }


# -- the report ------------------------------------------------------------------------------


def _rate(value: float, fmt: str = "{:.1f}") -> str:
    return "n/a" if value is None or math.isnan(value) else fmt.format(value)


def class_table(result: dict, cores: int) -> str:
    """One row per measure, grouped by part, each with its target."""
    rows = []
    rss_target = f"≤ {RSS_TARGET_MIB:.0f} MiB"

    def opened(part: str, o: dict) -> None:
        chart = o["first_chart_s"]
        rows.extend([
            (part, "sessions with a chart", f"{o['with_chart']} of {o['sessions']}", "all"),
            (part, "time to first chart, p50; p95", f"{_s(chart['p50'])}; {_s(chart['p95'])}",
             f"p95 ≤ {FIRST_CHART_TARGET_S:g} s"),
        ])  # fmt: skip

    def watched(part: str, r: dict, sessions: int, expected: int, speed: bool = True) -> None:
        """speed: hold each session to SEEN_TARGET (not where trainers take turns)."""
        w, t, seen = r["watch"], r["train"], r["watch"]["seen_steps_per_s"]
        fast, every = (f"≥ {SEEN_TARGET:g}", "all") if speed else ("", "")
        rows.extend([
            (part, "sessions with an error", str(w["with_error"]), "0"),
            (part, "sessions whose step counter advanced", f"{w['advancing']} of {sessions}",
             "all"),
            (part, "steps/s each session saw added: min; median",
             f"{_rate(seen['min'])}; {_rate(seen['median'])}", fast),
            (part, f"sessions that saw ≥ {SEEN_TARGET:g} steps/s",
             f"{seen['at_target']} of {sessions}", every),
            (part, "browser step counter refreshes/s, min",
             _rate(w["browser_refreshes_per_s"]["min"]), f"≥ {REFRESH_TARGET:g}"),
            (part, "trainers; distinct histories they trained",
             f"{t['trainers']}; {t['histories']}", f"{expected}; {expected}"),
            (part, "peak server RSS", f"{r['peak_rss_mib']:.0f} MiB", rss_target),
            (part, "/_stcore/health: longest wait; share of the time waiting",
             f"{_s(r['health']['max'], 2)}; {r['health']['waiting_share']:.0%}", ""),
        ])  # fmt: skip

    if "play" in result:
        r = result["play"]
        opened("all press Play", r["open"])
        watched("all press Play", r, r["open"]["sessions"], 1)
    if "batch" in result:
        r = result["batch"]
        part = f"4 batch sizes ({r['seconds']:.0f} s)"
        watched(part, r, r["sessions"], r["expected_histories"], speed=False)
    if "follow" in result:
        r = result["follow"]
        if "error" in r:
            rows.append(("followers", "error", r["error"], ""))
        else:
            opened("followers", r["open"])
            rss = r["rss_mib"]
            rows.append((
                "followers", "server RSS (median) before they opened; while they watched; "
                "per follower", f"{rss['before']:.0f}; {rss['watched']:.0f}; "
                f"{r['mib_per_follower']:.1f} MiB", "",
            ))  # fmt: skip
            watched("followers", r, r["open"]["sessions"], 1)
    if "distinct" in result:
        r, part = result["distinct"], "distinct runs"
        n, t = r["sessions"], r["train"]
        rows += [
            (part, "sessions, each its own seed", str(n), ""),
            (part, "wait from Play to the first step, p50; max",
             f"{_s(r['wait_s']['p50'])}; {_s(r['wait_s']['max'])}", ""),
            (part, f"steps each gained in {r['seconds']:.0f} s: min; max",
             f"{r['steps_gained']['min']}; {r['steps_gained']['max']}", ""),
            (part, "fairness of those steps (Jain's index, 1 = equal)", f"{r['fairness']:.2f}", ""),
            (part, 'sessions shown "waiting for a free trainer" after Play',
             str(r["queued_sessions"]), f"≥ {max(0, n - cores)}"),
            (part, "trainers; distinct histories", f"{t['trainers']}; {t['histories']}",
             f"{n}; {n}"),
        ]  # fmt: skip
    cpu = result["cpu"]
    rows += [
        ("all", "server tracebacks", str(result["compute"]["tracebacks"]), "0"),
        ("all", "peak server RSS (VmHWM)", f"{result['vmhwm_mib']:.0f} MiB", rss_target),
        ("all", "CPU: server; bench clients; other processes (mean cores)",
         f"{cpu['server_core_seconds'] / cpu['seconds']:.2f}; "
         f"{cpu['bench_core_seconds'] / cpu['seconds']:.2f}; {cpu['other_mean_cores']:.2f}", ""),
        ("all", "bench wall time", f"{result['bench_seconds']:.0f} s", ""),
    ]  # fmt: skip
    lines = ["| part | measure | result | target |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {t} |" for a, b, c, t in rows]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------


async def run_class(args: argparse.Namespace, server: ClassServer) -> dict:
    parts = set(args.parts.split(","))
    playwright, browser, contexts = await _browser(args.browsers)
    result: dict = {"sessions": args.sessions, "browsers": args.browsers, "link": args.link}
    everyone: list = []
    try:
        if "play" in parts:
            print(
                f"part 1: {args.sessions} sessions open {args.link!r}, all press Play",
                file=sys.stderr,
            )
            sessions, result["play"] = await part_play(server, args, contexts)
            everyone += sessions
            if "batch" in parts:
                print("part 2: they Reset and set one of 4 batch sizes, then Play", file=sys.stderr)
                result["batch"] = await part_batch(server, args, sessions)
            await _close(everyone)
            for page in [s.page for s in sessions if isinstance(s, BrowserSession) and s.page]:
                await page.close()
        if "follow" in parts:
            print(f"part 3: a lecturer shares a live run, {args.sessions} follow", file=sys.stderr)
            sessions, result["follow"] = await part_follow(server, args, contexts)
            everyone += sessions
            await _close(sessions)
        if "distinct" in parts:
            print(f"part 4: {args.distinct} distinct runs press Play", file=sys.stderr)
            sessions, result["distinct"] = await part_distinct(server, args)
            everyone += sessions
        return result
    finally:
        server.marks["closing"] = time.monotonic()
        await _close(everyone)
        if browser is not None:
            await browser.close()
            await playwright.stop()


async def _close(sessions: list) -> None:
    """Close the websockets (Chromium pages stay until their part is over)."""
    closing = asyncio.gather(
        *(s.client.close() for s in sessions if isinstance(s, Session)), return_exceptions=True
    )
    try:
        await asyncio.wait_for(closing, 30)
    except TimeoutError:
        print("some websockets did not close within 30 s", file=sys.stderr)


def _json_safe(value):
    """inf and nan as strings: JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument(
        "--browsers", type=int, default=2, help="of the sessions, how many are Chromium pages"
    )
    parser.add_argument("--link", default="scenario=bn-basics", help="the query every one opens")
    parser.add_argument(
        "--parts", default="play,batch,follow,distinct", help="which parts, comma-separated"
    )
    parser.add_argument(
        "--play-seconds", type=float, default=20.0, help="how long each part is watched"
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=25.0,
        help="how long the four batch sizes are watched (their trainers may take turns)",
    )
    parser.add_argument("--distinct", type=int, default=6, help="sessions with distinct runs")
    parser.add_argument(
        "--distinct-seconds",
        type=float,
        default=45.0,
        help="how long the distinct runs are watched (more than a 20-s turn)",
    )
    parser.add_argument(
        "--answer-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for every session to answer a press",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds a session may wait for a chart"
    )
    parser.add_argument("--cpus", type=int, help="pin the server to this many CPUs")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--echo", action="store_true", help="echo the server's output")
    parser.add_argument(
        "--trace", action="store_true", help="add the status lines of 5 sessions to --json"
    )
    args = parser.parse_args()
    args.browsers = min(args.browsers, args.sessions)

    # SIGTERM cleans up like Ctrl-C
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    begin = time.monotonic()
    # CPU accounting: anything else busy on the host slows the server and skews every time
    load_before, busy_before = os.getloadavg()[0], host_busy_seconds()
    own_before = sum(os.times()[:2])
    server = ClassServer(cpus=args.cpus, echo=args.echo)
    try:
        started = server.start()
        print(
            f"server pid {server.process.pid} up in {started:.1f} s on {server.server_cpus} "
            f"CPUs, {server.peak_rss_mib():.0f} MiB",
            file=sys.stderr,
        )
        try:
            result = asyncio.run(run_class(args, server))
        except KeyboardInterrupt:
            print("interrupted: clients closed, stopping the server", file=sys.stderr)
            raise SystemExit(130) from None
        result["server_cpus"] = server.server_cpus
        result["vmhwm_mib"] = server.vmhwm_kib / 1024
        # the same interval for all three: from before the server started until now
        busy, own = host_busy_seconds() - busy_before, sum(os.times()[:2]) - own_before
        elapsed = time.monotonic() - begin
    finally:
        server.stop()
    result["compute"] = compute_numbers(server)
    result["bench_seconds"] = time.monotonic() - begin
    result["cpu"] = {
        "seconds": elapsed,
        "host_cpus": os.cpu_count(),
        "load_average_before": load_before,
        "server_core_seconds": server.cpu_seconds,
        "bench_core_seconds": own,  # Chromium's pages are "other processes"
        "other_core_seconds": max(0.0, busy - server.cpu_seconds - own),
        "other_mean_cores": max(0.0, busy - server.cpu_seconds - own) / elapsed,
    }
    print(class_table(result, server.server_cpus))
    for text in result["compute"]["traceback_texts"]:
        print(f"\n{text}")
    if args.json:
        args.json.write_text(json.dumps(_json_safe(result), indent=2) + "\n")
        print(f"\nwrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
