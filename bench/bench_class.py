"""A class opening the app at once: N sessions open the default page of one real
`streamlit run app.py` server at the same moment, then all press Play.

    python -m bench.bench_class [--sessions 30] [--no-play] [--json PATH] [--trace]

Each session is a websocket client speaking Streamlit's own protocol (bench/wsclient.py), all in
this process on one event loop: 30 Chromium pages would take the cores from the server. The
server starts cold (nothing trained, nothing cached); only its start-up is awaited (the health
endpoint) before the sessions connect.

Phase 1, opening: time from connect to the first plotly chart and to the end of the first
script run; exceptions, st.error alerts and compile errors as errors; the server's peak RSS
(the process and any children, sampled every 100 ms, plus the kernel's VmHWM). The app logs
`bnviz compute: <what> <key>` for each shared computation; those lines are counted.

Phase 2, play (unless --no-play): every session presses Play at the same moment; once each has
answered with a new status line (or --answer-timeout), the status lines are watched for
--play-seconds: sessions showing "waiting for a free trainer", sessions whose step counter rose in
each 1-second window (target: at most the server's core count), and the steps/s of the running
ones.

Throughout, a thread times the server's /_stcore/health every half second (it is answered by
the event loop that also sends every session's messages), and the CPU time of the server, of
this process and of everything else on the host is accounted: other work on a 2-core host
changes every number here.

Prints a markdown table (measure | result | target); --json writes the numbers, --trace adds
every status line each session saw.
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

from bench.harness import Server, host_busy_seconds
from bench.wsclient import StreamlitClient

RSS_TARGET_MIB = 1.5 * 1024
FIRST_CHART_TARGET_S = 10.0
COMPUTE_LINE = re.compile(r"bnviz compute: (\S+) ?(.*)")
STEP = re.compile(r"step (\d+) of (\d+)")
RATE = re.compile(r"([\d.]+) steps/s")
QUEUED = re.compile(r"(\d+)(?:st|nd|rd|th) in line")
STATE = re.compile(r"\*\*(\w+)\*\*")  # the status line: ":icon: **playing** · step 20 of 300"
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


async def _progress(sessions: list[Session], stop: asyncio.Event, begin: float) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 5)
        except TimeoutError:
            charts = sum(s.t_first_chart is not None for s in sessions)
            finished = sum(s.t_first_finished is not None for s in sessions)
            print(
                f"  {time.monotonic() - begin:5.0f} s: {charts}/{len(sessions)} with a chart, "
                f"{finished} first runs finished",
                file=sys.stderr,
            )


async def phase_open(sessions: list[Session], timeout: float) -> None:
    go = asyncio.Event()
    openers = [asyncio.create_task(_open(s, go, timeout)) for s in sessions]
    stop = asyncio.Event()
    reporter = asyncio.create_task(_progress(sessions, stop, time.monotonic()))
    await asyncio.sleep(0)  # every opener is waiting at the barrier
    go.set()
    try:
        await asyncio.gather(*openers)
    finally:  # also on Ctrl-C: leave no task behind
        stop.set()
        for task in openers:
            task.cancel()
        await asyncio.gather(*openers, reporter, return_exceptions=True)


async def phase_play(
    sessions: list[Session], seconds: float, timeout: float
) -> tuple[float, float]:
    """Press Play in every session at once, wait until each has answered with a new status
    line (or the timeout), then watch for `seconds`. Returns the times of the presses and of
    the start of the watch."""
    pressing = []
    for s in sessions:
        client = s.client
        if not client.connected:
            s.play_note = "not connected"
        elif "play" not in client.widgets:
            s.play_note = "no Play button"
        elif getattr(client.widget_elements["play"], "disabled", False):
            s.play_note = "Play disabled"
        else:
            pressing.append(s)
    t_play = time.monotonic()
    results = await asyncio.gather(
        *(s.client.click("play") for s in pressing), return_exceptions=True
    )
    for s, result in zip(pressing, results):
        if isinstance(result, Exception):
            s.play_note = f"{type(result).__name__}: {result}"
    waiting = [s for s in pressing if s.play_note is None]

    def answered() -> int:
        return sum(bool(s.since(t_play)) or not s.client.connected for s in waiting)

    while time.monotonic() - t_play < timeout and answered() < len(waiting):
        await asyncio.sleep(0.1)
    t_watch = time.monotonic()
    print(
        f"  {answered()} of {len(waiting)} sessions answered Play within "
        f"{t_watch - t_play:.1f} s; watching for {seconds:g} s",
        file=sys.stderr,
    )
    await asyncio.sleep(seconds)
    return t_play, t_watch


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


def _num(value: float | None, fmt: str = "{:.0f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def table(result: dict) -> str:
    o, c, cpus = result["open"], result["compute"], result["server_cpus"]
    n = o["sessions"]
    rows = [
        ("sessions opened at once", str(n), ""),
        ("sessions with a chart", str(o["with_chart"]), f"{n}"),
        ("sessions with an error", str(o["with_error"]), "0"),
        ("time to first chart, p50", _s(o["first_chart_s"]["p50"]), ""),
        (
            "time to first chart, p95",
            _s(o["first_chart_s"]["p95"]),
            f"≤ {FIRST_CHART_TARGET_S:g} s",
        ),
        ("time to first chart, max", _s(o["first_chart_s"]["max"]), ""),
        ("end of first script run, p95", _s(o["first_run_end_s"]["p95"]), ""),
        (
            "peak server RSS, sampled every 100 ms (opening / whole bench)",
            f"{result['peak_rss_open_mib']:.0f} / {result['peak_rss_mib']:.0f} MiB",
            f"≤ {RSS_TARGET_MIB:.0f} MiB",
        ),
        (
            "server VmHWM (kernel's peak)",
            f"{result['vmhwm_mib']:.0f} MiB",
            f"≤ {RSS_TARGET_MIB:.0f} MiB",
        ),
        (
            "shared computations (`bnviz compute:` lines, distinct keys)",
            f"{c['lines']}, {c['distinct']}" if c["lines"] else "n/a",
            "one per distinct configuration",
        ),
        ("configurations computed more than once", str(len(c["repeated"])), "0"),
        (
            'sessions that saw "waiting for a free trainer" while opening',
            str(o["queued_sessions"]),
            "",
        ),
    ]
    p = result.get("play")
    if p is not None:
        rates, seen = p["status_steps_per_s"], p["seen_steps_per_s"]
        rows += [
            ("Play pressed in", f"{p['pressed']} sessions", f"{n}"),
            (
                "time from Play to a new status line, p50 / max",
                f"{_s(p['answer_s']['p50'])} / {_s(p['answer_s']['max'])}",
                "",
            ),
            ("sessions showing **playing** or **waiting**", str(p["saw_playing"]), f"{n}"),
            (
                'sessions that saw "waiting for a free trainer" after Play',
                str(p["queued_sessions"]),
                f"≥ {max(0, n - cpus)}" if n > cpus else "0",
            ),
            (
                f"max sessions whose step counter advanced in one 1-s window (of "
                f"{p['seconds']:.0f}, once all had answered)",
                str(p["max_advancing"]),
                f"≤ {cpus} (cores)",
            ),
            ("sessions that advanced in those seconds", str(p["sessions_that_advanced"]), ""),
            (
                "steps/s on the status line of running sessions, median (min-max)",
                f"{_num(rates['median'])} ({_num(rates['min'])}-{_num(rates['max'])})",
                "",
            ),
            (
                "steps/s a viewer saw added: median of advancing sessions; all together",
                f"{_num(seen['median'], '{:.1f}')}; {seen['total']:.1f}",
                "",
            ),
            ("sessions with an error by the end", str(p["with_error_at_end"]), "0"),
        ]
    for phase, name in (("open", "opening"), ("play", "play")):
        health = result.get(f"health_{phase}_s")
        if health:
            rows.append(
                (
                    f"server's /_stcore/health during {name}: longest wait; share of the "
                    "time waiting",
                    f"{_s(health['max'], 2)}; {health['waiting_share']:.0%}",
                    "",
                )
            )
    cpu, elapsed = result["cpu"], result["cpu"]["seconds"]
    rows += [
        (
            "server tracebacks while sessions ran; once the clients disconnected",
            f"{c['tracebacks']}; {c['tracebacks_on_close']}",
            "0",
        ),
        ("bench wall time", f"{result['bench_seconds']:.0f} s", ""),
        (
            "CPU: server; these clients; other processes on the host (mean cores)",
            f"{cpu['server_core_seconds'] / elapsed:.2f}; "
            f"{cpu['bench_core_seconds'] / elapsed:.2f}; {cpu['other_mean_cores']:.2f} "
            f"(load {cpu['load_average_before']:.1f} before)",
            "others ≈ 0",
        ),
    ]
    lines = ["| measure | result | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {t} |" for a, b, t in rows]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------


async def run_sessions(args: argparse.Namespace, server: ClassServer) -> dict:
    sessions = [Session(i, StreamlitClient(server.url)) for i in range(args.sessions)]
    for s in sessions:
        s.client.add_listener(s.on_message)
    try:
        print(f"opening {len(sessions)} sessions at once", file=sys.stderr)
        t_open = time.monotonic()
        await phase_open(sessions, args.timeout)
        t_opened = time.monotonic()
        result = {"open": open_numbers(sessions), "open_seconds": t_opened - t_open}
        result["peak_rss_open_mib"] = server.peak_rss_mib(until=t_opened)
        result["health_open_s"] = server.health_latency(t_open, t_opened)
        if args.play:
            print("pressing Play in every session", file=sys.stderr)
            t_play, t_watch = await phase_play(sessions, args.play_seconds, args.answer_timeout)
            result["play"] = play_numbers(sessions, t_play, t_watch, args.play_seconds)
            result["health_play_s"] = server.health_latency(t_play)
            result["errors_at_end"] = dict(Counter(e for s in sessions for e in s.errors))
        result["bytes_received"] = sum(s.client.bytes_received for s in sessions)
        if args.trace:  # every status text each session saw, seconds after it connected
            result["trace"] = [
                [(round(o.t - s.t_start, 2), o.text) for o in s.observations] for s in sessions
            ]
            result["health_trace"] = [
                (round(t - t_open, 2), round(waited, 2), ok) for t, waited, ok in server.health
            ]
        return result
    finally:
        # close every client, even on Ctrl-C; the server is stopped by the caller
        server.marks["closing"] = time.monotonic()
        print(f"closing {len(sessions)} websockets", file=sys.stderr)
        closing = asyncio.gather(*(s.client.close() for s in sessions), return_exceptions=True)
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
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument(
        "--play", action=argparse.BooleanOptionalAction, default=True, help="the Play phase"
    )
    parser.add_argument(
        "--play-seconds", type=float, default=10.0, help="how long to watch the sessions play"
    )
    parser.add_argument(
        "--answer-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for every session to answer Play before watching",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds a session may wait for a chart"
    )
    parser.add_argument("--cpus", type=int, help="pin the server to this many CPUs")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--echo", action="store_true", help="echo the server's output")
    parser.add_argument(
        "--trace", action="store_true", help="add every session's status texts to --json"
    )
    args = parser.parse_args()

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
            result = asyncio.run(run_sessions(args, server))
        except KeyboardInterrupt:
            print("interrupted: clients closed, stopping the server", file=sys.stderr)
            raise SystemExit(130) from None
        result["server_start_seconds"] = started
        result["server_cpus"] = server.server_cpus
        result["peak_rss_mib"] = server.peak_rss_mib()
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
        "bench_core_seconds": own,
        "other_core_seconds": max(0.0, busy - server.cpu_seconds - own),
        "other_mean_cores": max(0.0, busy - server.cpu_seconds - own) / elapsed,
    }
    print(table(result))
    errors = result.get("errors_at_end", result["open"]["errors"])
    for text, count in errors.items():
        print(f"\n{count} x {text}")
    if args.json:
        args.json.write_text(json.dumps(_json_safe(result), indent=2) + "\n")
        print(f"\nwrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
