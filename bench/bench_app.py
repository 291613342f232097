"""The app's refresh, start-up and memory targets, measured on a real `streamlit run app.py`
server driven by headless Chromium, in fresh subprocesses, and on a 300-snapshot run.

    python -m bench.bench_app [--only refresh|startup|memory|pause] [--json PATH]

Prints one markdown table `| measure | result | target | ok |` (rows marked "info" have no
target) and, for each target missed, what dominates it: a cProfile of the figures, the server's
threads sampled while playing, the start-up phase by phase with `python -X importtime`, or
resident memory part by part. Progress goes to stderr. Each part starts its own server and
browser and stops them on any exit; the exit status is 1 only when a part could not be
measured. MB and KB are 10^6 and 10^3 bytes.

refresh   (a) build + fig.to_json() of each view's figures for a 300-snapshot run with a twin,
          in this process; (b) websocket bytes per refresh, (c) refreshes per second and (d)
          training speed, in the browser while `?steps=2000` plays, against the same training
          without UI measured in a subprocess just before. Websocket messages are read with
          Chromium's own timestamps (CDP); a refresh is a script run that completed.
startup   (a) a fresh interpreter's AppTest import + app import + first script run (3 times);
          (b) navigation -> first drawn chart in a new browser context (warm server, 5 times).
memory    server RSS after one session trained 2,000 steps, then per further session.
pause     Pause on every view that redraws while playing, at ?steps=300 and 5000: the seconds
          from the press until the step counter stops.

The machine's other load skews every number here: the rows measured while playing say
how many cores the server, the browser and everything else used meanwhile.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import harness
from bench.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    IDLE,
    STATUS_WATCH,
    cpu_seconds,
    host_busy_seconds,
    pause_and_measure,
    process_tree,
)

ROOT, APP = harness.ROOT, harness.APP

VIEWPORT = {"width": 1400, "height": 1000}
DRAWN_CHART = "[data-testid='stPlotlyChart'] .js-plotly-plot .main-svg"
EXCEPTION = "[data-testid='stException']"
MB, KB = 1e6, 1e3

# refresh
FIGURE_ROUNDS = 9  # medians of this many rounds, after one warm-up round
PLAY_STEPS = 2000  # ?steps= of the played run
SETTLE_SECONDS = 3.0  # after Play or a tab click, before measuring
DEFAULT_VIEW_SECONDS = 12.0  # measuring the default view while playing
OTHER_VIEW_SECONDS = 6.0  # and each other view, for information
NO_UI_SECONDS = 10.0
# startup
STARTUP_RUNS = 3
FIRST_CHART_RUNS = 5
# memory
EXTRA_SESSIONS = 5
TRAIN_TIMEOUT = 1200.0  # seconds for the 2,000 steps
AFTER_CLOSE_SECONDS = 5.0
RSS_SECONDS = 5.0  # RSS is the median of readings over this long


# ---------------------------------------------------------------- results


@dataclass
class Result:
    """One row of the table: a value against a target (`<=` or `>=`), or information."""

    measure: str
    value: float | None  # None: not measured
    unit: str  # ms, s, KB, MB, /s or "" (a ratio)
    target: float | None = None  # None: information only
    above: bool = False  # the target is a minimum
    detail: str = ""

    @property
    def ok(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        return self.value >= self.target if self.above else self.value <= self.target

    @property
    def missed_by(self) -> str:
        """How far off target: by how much, and relative to the target."""
        if self.ok is not False:
            return ""
        gap = abs(self.value - self.target)
        relative = gap / self.target
        return f"{_fmt(gap, self.unit)}, {relative:.{1 if relative < 0.1 else 0}%}"

    def row(self) -> str:
        value = "not measured" if self.value is None else _fmt(self.value, self.unit)
        result = f"{value} ({self.detail})" if self.detail else value
        target = "info" if self.target is None else _target(self)
        ok = {None: "", True: "yes", False: f"**NO** (by {self.missed_by})"}[self.ok]
        return f"| {self.measure} | {result} | {target} | {ok} |"


def _fmt(value: float, unit: str) -> str:
    digits = {"ms": 0 if value >= 100 else 1, "s": 2, "KB": 0, "MB": 1, "/s": 2, "": 2}[unit]
    return f"{value:,.{digits}f} {unit}".strip()


def _target(result: Result) -> str:
    return f"{'>=' if result.above else '<='} {_fmt(result.target, result.unit)}"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def log(text: str) -> None:
    print(f"[bench_app {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


@dataclass
class Part:
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # diagnostics, printed under the table

    def add(self, *args, **kwargs) -> Result:
        result = Result(*args, **kwargs)
        self.results.append(result)
        log(result.row())
        return result


# ---------------------------------------------------------------- processes


# `streamlit run` in-process (what `python -m streamlit run` does), plus a thread that, while
# the file argv[1] exists, samples every thread's Python stack SAMPLE_HZ times a second; when
# the file goes, it writes the counts to argv[2] as JSON: [[thread, [frames, leaf first], n]],
# and ["", [], number of samples taken].
SAMPLED_SERVER = """
import collections, json, os, sys, sysconfig, threading, time
flag, out, hz = sys.argv[1], sys.argv[2], float(sys.argv[3])
def where(code):
    path = code.co_filename
    for marker in ("site-packages/", ROOT + "/", sysconfig.get_paths()["stdlib"] + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{code.co_name}"
def sample():
    me, counts, names, ticks = threading.get_ident(), collections.Counter(), {}, 0
    while True:
        time.sleep(1 / hz)
        if not os.path.exists(flag):
            if counts:
                rows = [[names.get(i, "?"), [where(c) for c in stack], n]
                        for (i, stack), n in counts.items()]
                rows.append(["", [], ticks])
                with open(out + ".tmp", "w") as f:
                    json.dump(rows, f)
                os.replace(out + ".tmp", out)
                counts.clear()
                ticks = 0
            continue
        ticks += 1
        names.update((t.ident, t.name) for t in threading.enumerate())
        for ident, frame in sys._current_frames().items():
            if ident != me:
                stack = []
                while frame is not None:
                    stack.append(frame.f_code)
                    frame = frame.f_back
                counts[ident, tuple(stack)] += 1
threading.Thread(target=sample, name="bench-sampler", daemon=True).start()
sys.argv = ["streamlit", *sys.argv[4:]]
from streamlit.web.cli import main
main()
"""
SAMPLE_HZ = 50


class AppServer(harness.Server):
    """harness.Server for this benchmark: app.py (or `app`), 120 s to start, its output's tail
    logged when the `with` block exits on an error. With sampled=True the server's threads
    can be sampled (see SAMPLED_SERVER) between sampling_start() and sampling_stop()."""

    def __init__(self, sampled: bool = False, start_timeout: float = 120.0, app: Path = APP):
        self.tmp = tempfile.TemporaryDirectory(prefix="bench_app-")
        self.flag, self.samples = Path(self.tmp.name, "sampling"), Path(self.tmp.name, "samples")
        launcher = harness.STREAMLIT
        if sampled:
            code = f"ROOT = {str(ROOT)!r}\n{SAMPLED_SERVER}"
            launcher = ("-c", code, str(self.flag), str(self.samples), str(SAMPLE_HZ))
        super().__init__(launcher=launcher, app=app, start_timeout=start_timeout)

    def sampling_start(self) -> None:
        self.samples.unlink(missing_ok=True)
        self.flag.touch()

    def sampling_stop(self, timeout: float = 10.0) -> list:
        """The samples since sampling_start(): [[thread name, [frame, ...] leaf first, count]]."""
        self.flag.unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        while not self.samples.exists():
            if time.monotonic() > deadline:
                return []
            time.sleep(0.05)
        return json.loads(self.samples.read_text())

    def __exit__(self, error_type, *exc) -> None:
        self.stop()
        if error_type is not None:
            log(f"server output (tail):\n{self.output()}")

    def stop(self) -> None:
        super().stop()
        self.tmp.cleanup()

    def status_mb(self) -> dict[str, float]:
        """The memory fields of the server's /proc/<pid>/status (VmRSS, VmHWM, RssAnon...)."""
        if self.process.poll() is not None:
            raise RuntimeError(f"the server has exited:\n{self.output()}")
        # the kernel's kB are KiB
        return {k: kib * 1024 / MB for k, kib in harness.proc_status_kib(self.process.pid).items()}

    def memory_mb(self) -> tuple[float, float]:
        """The server's resident set size now and at its peak (VmRSS, VmHWM)."""
        fields = self.status_mb()
        return fields["VmRSS"], fields["VmHWM"]

    def settled_rss_mb(self, page, seconds: float = RSS_SECONDS) -> float:
        """The median of RSS readings twice a second for `seconds`: a single reading moves by
        tens of MB as the allocator takes and returns memory."""
        readings = []
        for _ in range(int(seconds * 2)):
            readings.append(self.memory_mb()[0])
            page.wait_for_timeout(500)
        return _median(readings)


class CpuMeter:
    """Cores in use over an interval: the server, this benchmark's browser (Chromium and the
    Playwright driver), and everything else on the machine (other users' work included)."""

    def __init__(self, server: AppServer):
        self.server = server.process.pid

    def _sample(self) -> tuple[float, ...]:
        server = set(process_tree(self.server))
        browser = set(process_tree(os.getpid())) - server - {os.getpid()}
        return (
            time.monotonic(),
            sum(cpu_seconds(pid, waited_children=True) for pid in server),
            sum(cpu_seconds(pid, waited_children=True) for pid in browser),
            host_busy_seconds(),
            sum(cpu_seconds(pid, kernel_only=True, waited_children=True) for pid in server),
        )

    def start(self) -> None:
        self.begin = self._sample()

    def stop(self) -> dict[str, float]:
        end = self._sample()
        wall = end[0] - self.begin[0]
        server, browser, busy, kernel = (end[i] - self.begin[i] for i in (1, 2, 3, 4))
        return {
            "server": server / wall,
            "server_kernel": kernel / max(server, 1e-9),
            "browser": browser / wall,
            "other": max(0.0, busy - server - browser) / wall,
        }

    @staticmethod
    def describe(cores: dict[str, float]) -> str:
        return (
            f"CPU cores: server {cores['server']:.2f} ({cores['server_kernel']:.0%} of it in "
            f"the kernel), browser {cores['browser']:.2f}, other processes {cores['other']:.2f}"
        )


# Where a sampled thread waits rather than runs (its innermost Python frame).
WAITING = {
    "threading.py:wait",
    "threading.py:_wait_for_tstate_lock",
    "queue.py:get",
    "selectors.py:select",
    "concurrent/futures/thread.py:_worker",
    "streamlit/watcher/polling_path_watcher.py:task",
}


def thread_profile(rows: list, top: int = 7, min_share: float = 0.03) -> str:
    """Per server thread (a pool's threads together): how much of the time it was running
    Python or native code rather than waiting, and the functions most often on its stack
    while running (inclusive, like cProfile's cumulative time; frames present in nearly every
    such sample, such as thread bootstraps, are left out), then its innermost frames."""
    ticks = sum(n for name, stack, n in rows if not stack) or 1
    threads: dict[str, list] = {}
    for name, stack, n in rows:
        if stack and stack[0] not in WAITING:
            threads.setdefault(re.sub(r"[_-]?\d+$", "", name), []).append((stack, n))
    out = []
    for name, samples in sorted(threads.items(), key=lambda kv: -sum(n for _, n in kv[1])):
        busy = sum(n for _, n in samples)
        if busy / ticks < min_share:
            continue
        inclusive, leaves = {}, {}
        for stack, n in samples:
            for frame in set(stack):
                inclusive[frame] = inclusive.get(frame, 0) + n
            leaves[stack[0]] = leaves.get(stack[0], 0) + n
        out.append(f"thread {name}: active {busy / ticks:.0%} of the time")
        ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])
        for frame, n in [kv for kv in ranked if kv[1] < 0.95 * busy][:top]:
            out.append(f"  {n / ticks:6.0%}  {frame}")
        inner = sorted(leaves.items(), key=lambda kv: -kv[1])[:3]
        out.append("  innermost: " + ", ".join(f"{f} {n / ticks:.0%}" for f, n in inner))
    return "\n".join(out)


def run_child(code: str, timeout: float = 300.0, args: tuple[str, ...] = ()) -> tuple[str, str]:
    """Run `python [args] -c code` from the repository root; (stdout, stderr). subprocess.run
    kills the child if the timeout or any exception (Ctrl-C included) interrupts it."""
    done = subprocess.run(
        [sys.executable, *args, "-c", code],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout, done.stderr


def child_json(code: str, timeout: float = 300.0) -> dict:
    stdout, _ = run_child(code, timeout)
    return json.loads(stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def chromium() -> Iterator:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str, timeout: float = 120.0):
    """A page in a browser context of its own (a fresh session), with its first chart drawn."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(url, timeout=timeout * 1000)
    page.wait_for_selector(DRAWN_CHART, state="visible", timeout=timeout * 1000)
    page.wait_for_selector(IDLE, timeout=timeout * 1000)
    return context, page


# The status line ("**playing** · step N of M · ..."), read from the DOM.
STATUS_JS = r"""() => {
    const states = "playing|waiting|paused|finished|diverged|failed|stopped|replay";
    const re = new RegExp(`(${states})\\b.*step (\\d+) of (\\d+)`);
    for (const el of document.querySelectorAll('[data-testid="stMarkdownContainer"]')) {
        const m = re.exec(el.textContent);
        if (m) return [m[1], +m[2], +m[3], el.textContent];
    }
    return null;
}"""
# Every change of the status line's text, with the browser's clock (performance.now(), ms).
STATUS_LOG_JS = (
    """() => {
    if (window.__bnvizStatus) return;
    const log = window.__bnvizStatus = [];
    const read = """
    + STATUS_JS
    + """;
    let last = null;
    setInterval(() => {
        const s = read();
        if (s && s[3] !== last) { last = s[3]; log.push([performance.now(), s[1], s[0]]); }
    }, 20);
}"""
)


def status(page) -> tuple[str, int, int]:
    """(state, step, steps) from the status line."""
    found = page.evaluate(STATUS_JS)
    if found is None:
        raise RuntimeError("no status line 'step N of M' on the page")
    return found[0], found[1], found[2]


def check_no_exception(page, where: str) -> None:
    if page.locator(EXCEPTION).count():
        text = page.locator(EXCEPTION).first.inner_text()[:500]
        raise RuntimeError(f"the app shows an exception ({where}): {text}")


class FrameLog:
    """Every websocket message the page receives, timed by Chromium itself (CDP
    Network.webSocketFrameReceived): arrival time (s), payload bytes, ForwardMsg type (for a
    new element "delta:<element>"), and for script_finished whether the run (or fragment run)
    completed. Uncompressed: the server does not enable websocket compression
    (server.enableWebsocketCompression defaults to false). Also, on the same clock, when the
    page's document was requested and when each HTTP response finished loading."""

    def __init__(self, page):
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self._message = ForwardMsg
        self.complete = {
            ForwardMsg.FINISHED_SUCCESSFULLY,
            ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY,
        }
        self.frames: list[tuple[float, int, str, bool]] = []
        self.document_requested: float | None = None
        self.urls: dict[str, str] = {}  # request id -> URL
        self.requested: dict[str, float] = {}  # clock markers: path -> time requested
        self.markers = 0
        self.loaded: list[tuple[float, str, int]] = []  # (time, URL, bytes)
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.on("Network.webSocketFrameReceived", self._received)
        self.cdp.on("Network.requestWillBeSent", self._requested)
        self.cdp.on("Network.loadingFinished", self._loaded)
        self.cdp.send("Network.enable")

    def now(self, page, timeout: float = 10.0) -> float:
        """The time on the clock of the frames' timestamps: the page fetches a marker URL
        (the server's health check) and Chromium stamps the request."""
        self.markers += 1
        path = f"/_stcore/health?bench_app={self.markers}"
        page.evaluate(f"fetch({path!r})")
        deadline = time.monotonic() + timeout
        while path not in self.requested:
            if time.monotonic() > deadline:
                raise RuntimeError("the browser did not report the clock marker's request")
            page.wait_for_timeout(10)
        return self.requested[path]

    def _requested(self, event: dict) -> None:
        url = event["request"]["url"]
        self.urls[event["requestId"]] = url
        if "?bench_app=" in url:
            self.requested[url[url.index("/_stcore/") :]] = event["timestamp"]
        if event.get("type") == "Document" and self.document_requested is None:
            self.document_requested = event["timestamp"]

    def _loaded(self, event: dict) -> None:
        url = self.urls.get(event["requestId"], "")
        self.loaded.append((event["timestamp"], url, int(event.get("encodedDataLength", 0))))

    def _received(self, event: dict) -> None:
        response = event["response"]
        if response.get("opcode") == 2:
            data = base64.b64decode(response["payloadData"])
        else:
            data = response["payloadData"].encode()
        kind, complete = "other", False
        try:
            message = self._message.FromString(data)
            kind = message.WhichOneof("type") or "other"
            if kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                kind = f"delta:{message.delta.new_element.WhichOneof('type')}"
            complete = kind == "script_finished" and message.script_finished in self.complete
        except Exception:  # not a ForwardMsg: counted as bytes only
            pass
        self.frames.append((event["timestamp"], len(data), kind, complete))

    def first(self, kind: str | None = None) -> float | None:
        """When the first message (of that kind) arrived."""
        return next((t for t, _, k, _ in self.frames if kind in (None, k)), None)


@dataclass
class Window:
    """What the browser received while one view was playing, between two instants of
    Chromium's clock."""

    seconds: float
    refreshes: list[tuple[float, int]]  # (time of the completed run, bytes since the previous)
    interrupted: int  # script runs that ended early because a newer one was requested

    @classmethod
    def of(cls, frames: FrameLog, start: float, end: float) -> Window:
        refreshes, interrupted, pending = [], 0, 0
        for t, size, kind, complete in frames.frames:
            if not start <= t <= end:
                continue
            pending += size
            if complete:
                refreshes.append((t, pending))
                pending = 0
            elif kind == "script_finished":
                interrupted += 1  # its bytes count towards the refresh that completes next
        return cls(end - start, refreshes, interrupted)

    @property
    def per_second(self) -> float:
        """Completed refreshes per second of the window."""
        return len(self.refreshes) / self.seconds if self.seconds > 0 else 0.0

    @property
    def sizes(self) -> list[int]:
        return [size for _, size in self.refreshes[1:]]  # the first began before the window


# ---------------------------------------------------------------- refresh


def _figure_run(log_every: int = 250):
    """A run with MAX_SNAPSHOTS snapshots at the minimum default cadence, and its no-norm twin,
    trained in lockstep as the page does."""
    from bnviz import Lockstep, TrainConfig
    from bnviz.record import MAX_SNAPSHOTS
    from bnviz.trainer import MIN_SNAPSHOT_EVERY

    steps = MAX_SNAPSHOTS * MIN_SNAPSHOT_EVERY
    config = TrainConfig(steps=steps, snapshot_every=MIN_SNAPSHOT_EVERY)
    lock = Lockstep([config, config.replace(norm="none")])
    start = time.monotonic()
    while not lock.finished:
        lock.step(log_every)
        rate = lock.runs[0].num_steps / (time.monotonic() - start)
        log(f"figure run: step {lock.runs[0].num_steps} of {steps} ({rate:.1f} lockstep steps/s)")
    return lock


def view_figures(lock) -> dict[str, Callable[[], list]]:
    """The figures each view draws on a refresh, with its widgets at their defaults (first
    layer, first or all channels, latest step): a copy of bnviz/ui/views/*.py."""
    from bnviz import figures
    from bnviz.measure import batch_noise
    from bnviz.record import momentum_numbers

    trainer, (run, twin) = lock.trainers[0], lock.runs
    last_step = run.num_steps - 1
    last_snapshot = len(run.snapshots[0].steps) - 1
    noise = batch_noise(trainer, 0, 0)  # measured on the model, timed on its own

    def running_stats() -> list:
        momentum_numbers(run, 0, 0, last_step)
        return [
            figures.running_stats_figure(run, 0, 0),
            figures.affine_figure(run, 0),
            figures.gain_figure(run, 0, last_step),
        ]

    return {
        "Training": lambda: [figures.loss_figure(run, twin), figures.accuracy_figure(run, twin)],
        "Activations": lambda: [
            figures.histogram_figure(run, 0, last_snapshot, None),
            figures.percentile_figure(run, 0, twin, "unit"),
            figures.saturation_figure(run, twin),
        ],
        "Running statistics": running_stats,
        "Gradients": lambda: [
            figures.grad_norm_figure(run, twin),
            figures.update_ratio_figure(run, twin),
        ],
        "Train vs eval": lambda: [
            figures.eval_gap_figure(run, twin),
            figures.batch_noise_figure(noise),
        ],
    }


def time_figures(build: Callable[[], list], rounds: int = FIGURE_ROUNDS) -> dict:
    """Medians over rounds of building the figures, of fig.to_json() on them, and of both
    in one go; and the JSON's size."""
    build_ms, json_ms, both_ms = [], [], []
    for i in range(rounds + 1):
        start = time.perf_counter()
        figs = build()
        built = time.perf_counter()
        specs = [fig.to_json() for fig in figs]
        done = time.perf_counter()
        if i:  # the first round warms caches
            build_ms.append((built - start) * 1000)
            json_ms.append((done - built) * 1000)
            both_ms.append((done - start) * 1000)
    return {
        "build": _median(build_ms),
        "json": _median(json_ms),
        "both": _median(both_ms),
        "figures": len(specs),
        "bytes": sum(len(s.encode()) for s in specs),
    }


def profile(build: Callable[[], list], rounds: int = 3, top: int = 14) -> str:
    """The functions that take the most cumulative time building the figures."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(rounds):
        for fig in build():
            fig.to_json()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative")
    stats.print_stats(top)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(line for line in lines[start:] if line.strip())


def refresh_figures(part: Part) -> None:
    import torch

    from bnviz.measure import batch_noise, check_scratch_against_torch
    from bnviz.ui.views.export import figure_builders

    torch.set_num_threads(1)  # as the server
    log("refresh (a): training the 300-snapshot run with its twin (a few minutes)")
    lock = _figure_run()
    run, twin = lock.runs
    trainer = lock.trainers[0]
    about = f"{len(run.snapshots[0].steps)} snapshots, {run.num_steps} steps, twin"
    builders = view_figures(lock)
    for view, build in builders.items():
        timing = time_figures(build)
        detail = (
            f"build {timing['build']:.0f} + to_json {timing['json']:.0f} ms, "
            f"{timing['figures']} figures, {timing['bytes'] / KB:.0f} KB JSON"
        )
        if view == "Training":
            result = part.add(
                f"2a. refresh: build + to_json, Training view ({about})",
                timing["both"],
                "ms",
                150,
                detail=detail,
            )
            if not result.ok:
                part.notes.append(
                    f"2a over target by {result.value - 150:.0f} ms; the build is "
                    f"{timing['build'] / timing['both']:.0%} of it. cProfile of the Training "
                    f"view's figures + to_json (3 rounds, cumulative):\n```\n{profile(build)}\n```"
                )
        else:
            part.add(
                f"2a. refresh: build + to_json, {view} view", timing["both"], "ms", detail=detail
            )
    # the page's other work on a refresh
    other = {
        "Train vs eval: batch_noise (cached while playing)": lambda: batch_noise(trainer, 0, 0),
        "Theory: check_scratch_against_torch": lambda: check_scratch_against_torch(trainer),
    }
    if hasattr(run, "frozen"):  # the page draws from copies of the records
        other["copies of both records (Run.frozen)"] = lambda: (run.frozen(), twin.frozen())
    for what, fn in other.items():
        times = []
        for _ in range(FIGURE_ROUNDS):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
        part.add(f"2a. refresh: {what}", _median(times), "ms")
    export = figure_builders(_RunPair(run, twin))
    timing = time_figures(lambda: [build() for build in export.values()], rounds=3)
    part.add(
        "2a. Save & replay: every downloadable figure (built only on download)",
        timing["both"],
        "ms",
        detail=f"{timing['figures']} figures, {timing['bytes'] / KB:.0f} KB JSON",
    )


@dataclass
class _RunPair:
    """What figure_builders reads from a session."""

    run: object
    twin: object


# The engine alone: bnviz.Lockstep, without importing bnviz.ui (whose import tunes the process
# for the server, malloc included), on one torch thread as the server's training threads.
NO_UI_SPEED = """
import json, time
import torch
torch.set_num_threads(1)
from bnviz import Lockstep, TrainConfig
config = TrainConfig(steps={steps})  # the app's defaults with ?steps={steps}
lock = Lockstep([config, config.replace(norm="none")])  # the default twin
lock.step(20)  # as the page's first steps
start, steps = time.perf_counter(), 0
while time.perf_counter() - start < {seconds}:
    lock.step(1)
    steps += 1
print(json.dumps({{"steps_per_second": steps / (time.perf_counter() - start), "steps": steps}}))
"""


def _speed(entries: list, start_ms: float, end_ms: float) -> tuple[float, int, int]:
    """Steps per second from the status line's changes inside [start_ms, end_ms]."""
    inside = [(t, step) for t, step, state in entries if start_ms <= t <= end_ms]
    if len(inside) < 2 or inside[-1][0] == inside[0][0]:
        return 0.0, 0, 0
    (t0, s0), (t1, s1) = inside[0], inside[-1]
    return (s1 - s0) / ((t1 - t0) / 1000), s0, s1


def _play_window(page, frames: FrameLog, meter: CpuMeter, seconds: float):
    """Measure for `seconds` of playing: websocket frames, the status line's changes, the
    page's clock at both ends (ms) and the CPU in use."""
    meter.start()
    start, start_ms = frames.now(page), page.evaluate("performance.now()")
    page.wait_for_timeout(seconds * 1000)  # keeps Playwright's event dispatch going
    end, end_ms = frames.now(page), page.evaluate("performance.now()")
    entries = page.evaluate("() => window.__bnvizStatus")
    return Window.of(frames, start, end), entries, start_ms, end_ms, meter.stop()


def _payload_detail(window: Window) -> str:
    sizes = window.sizes
    if not sizes:
        return (
            f"no refresh completed in {window.seconds:.0f} s, "
            f"{window.interrupted} runs cut short by the next"
        )
    return (
        f"max {max(sizes) / KB:.0f} KB over {len(sizes)} refreshes, "
        f"{window.per_second:.1f} refreshes/s, {window.interrupted} runs cut short"
    )


def _no_ui_speed() -> tuple[float, float]:
    """Lockstep steps per second without UI, in a fresh subprocess; and the cores the whole
    machine kept busy meanwhile (the child itself uses one)."""
    code = NO_UI_SPEED.format(steps=PLAY_STEPS, seconds=NO_UI_SECONDS)
    start, busy = time.monotonic(), host_busy_seconds()
    speed = child_json(code)["steps_per_second"]
    return speed, (host_busy_seconds() - busy) / (time.monotonic() - start)


def refresh_browser(part: Part) -> None:
    from bnviz.ui.links import VIEWS

    with AppServer(sampled=True) as server, chromium() as browser:
        log(f"refresh (b-d): server {server.url}, page ?steps={PLAY_STEPS}")
        context, page = open_page(browser, f"{server.url}/?steps={PLAY_STEPS}")
        frames, meter = FrameLog(page), CpuMeter(server)
        page.evaluate(STATUS_LOG_JS)
        _, step, steps = status(page)
        if steps != PLAY_STEPS:
            raise RuntimeError(f"the link's steps={PLAY_STEPS} did not apply ({step} of {steps})")

        log(f"refresh (d): training without UI in a subprocess for {NO_UI_SECONDS:.0f} s")
        no_ui, no_ui_busy = _no_ui_speed()
        page.locator(".st-key-play button").click()
        page.wait_for_function(f"() => ({STATUS_JS})()?.[0] === 'playing'", timeout=30_000)
        page.wait_for_timeout(SETTLE_SECONDS * 1000)
        log(f"refresh (b-d): measuring the Training view for {DEFAULT_VIEW_SECONDS:.0f} s")
        server.sampling_start()
        window, entries, start_ms, end_ms, cores = _play_window(
            page, frames, meter, DEFAULT_VIEW_SECONDS
        )
        samples = server.sampling_stop()
        check_no_exception(page, "playing, Training view")
        speed, first_step, last_step = _speed(entries, start_ms, end_ms)
        changes = [e for e in entries if start_ms <= e[0] <= end_ms]
        sizes = window.sizes
        part.add(
            "2b. payload per refresh, Training view, median",
            _median(sizes) / KB if sizes else None,
            "KB",
            1000,
            detail=_payload_detail(window),
        )
        rate = part.add(
            "2c. refreshes per second while playing (completed script runs, websocket)",
            window.per_second,
            "/s",
            2,
            above=True,
            detail=f"{len(window.refreshes)} in {window.seconds:.1f} s, "
            f"{window.interrupted} runs cut short by the next; {CpuMeter.describe(cores)}",
        )
        part.add(
            "2c. status-line changes per second (DOM, cross-check)",
            len(changes) / ((end_ms - start_ms) / 1000),
            "/s",
        )
        speed_ratio = part.add(
            "2d. training speed while playing / without UI",
            speed / no_ui if no_ui else None,
            "",
            0.7,
            above=True,
            detail=f"{speed:.1f} lockstep steps/s (steps {first_step}-{last_step}) vs "
            f"{no_ui:.1f} without UI (machine busy {no_ui_busy:.2f} cores then)",
        )
        if rate.ok is False or speed_ratio.ok is False:
            part.notes.append(
                "2c/2d over target. The server's threads while playing the Training view, "
                f"sampled {SAMPLE_HZ} times a second ({CpuMeter.describe(cores)}). 'Active' "
                "includes waiting for the GIL, a core or a lock: a frame that is innermost "
                "for long in plain Python code (such as a `with lock:`) is blocked there.\n"
                f"```\n{thread_profile(samples)}\n```"
            )

        for view in VIEWS[1:]:
            page.get_by_role("tab", name=view, exact=True).click()
            page.wait_for_timeout(SETTLE_SECONDS * 1000)
            state, step, _ = status(page)
            if state != "playing":
                part.notes.append(f"2b: the run was {state} at step {step} before the {view} view")
                break
            window, _, _, _, cores = _play_window(page, frames, meter, OTHER_VIEW_SECONDS)
            check_no_exception(page, f"playing, {view} view")
            sizes = window.sizes
            part.add(
                f"2b. payload per refresh, {view} view, median",
                _median(sizes) / KB if sizes else None,
                "KB",
                detail=f"{_payload_detail(window)}; {CpuMeter.describe(cores)}",
            )
        page.locator(".st-key-pause button").click()
        context.close()


def part_refresh(part: Part) -> None:
    refresh_figures(part)
    refresh_browser(part)


# ---------------------------------------------------------------- startup

STARTUP = """
import time
start = time.perf_counter()
import json
from streamlit.testing.v1 import AppTest
imported = time.perf_counter()
import bnviz.ui.page  # the app module (app.py's only import)
app_imported = time.perf_counter()
at = AppTest.from_file({app!r}, default_timeout=60)
at.run()
done = time.perf_counter()
print(json.dumps({{
    "total": done - start, "streamlit": imported - start, "app_import": app_imported - imported,
    "first_run": done - app_imported, "end": time.time(),
    "exceptions": [str(e.value) for e in at.exception], "charts": len(at.get("plotly_chart")),
}}))
"""
# What the first script run does, phase by phase (printed when start-up is over target).
STARTUP_PHASES = """
import json, time
marks, last = {}, time.perf_counter()
def mark(name):
    global last
    now = time.perf_counter()
    marks[name], last = round(now - last, 3), now
import streamlit.testing.v1; mark("import streamlit + AppTest")
import torch; mark("import torch")
import plotly.graph_objects; mark("import plotly")
import bnviz.ui.page; mark("import bnviz.ui.page (the rest)")
from bnviz import Lockstep, TrainConfig, datasets, figures
from bnviz.ui.page import FIRST_STEPS
torch.set_num_threads(1)
datasets.load("shapes"); mark("shapes data set")
config = TrainConfig()
lock = Lockstep([config, config.replace(norm="none")]); mark("Lockstep: 2 models, first eval")
lock.step(FIRST_STEPS); mark(f"{FIRST_STEPS} lockstep steps")
run, twin = lock.runs
[f.to_json() for f in (figures.loss_figure(run, twin), figures.accuracy_figure(run, twin))]
mark("Training figures + to_json")
print(json.dumps(marks))
"""


def _importtime(top: int = 10) -> str:
    """The slowest packages imported by AppTest + the app module (python -X importtime)."""
    _, stderr = run_child("import streamlit.testing.v1, bnviz.ui.page", args=("-X", "importtime"))
    rows = []
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| \s*(\S+)", line)
        if match and "." not in match.group(3) and not match.group(3).startswith("_"):
            rows.append((int(match.group(2)) / 1000, match.group(3)))
    rows.sort(reverse=True)
    return "\n".join(f"{ms:8.0f} ms  {name}" for ms, name in rows[:top])


def startup_apptest(part: Part) -> None:
    runs = []
    for i in range(STARTUP_RUNS):
        spawned = time.time()
        result = child_json(STARTUP.format(app=str(APP)))
        if result["exceptions"] or not result["charts"]:
            raise RuntimeError(f"the first run failed: {result['exceptions'] or 'no charts'}")
        result["spawn"] = result["end"] - spawned
        runs.append(result)
        log(f"startup (a) run {i + 1}: {result['total']:.2f} s from the script's first line")
    med = {
        k: _median([r[k] for r in runs])
        for k in ("total", "streamlit", "app_import", "first_run", "spawn")
    }
    result = part.add(
        f"3a. start-up: AppTest import + app import + first run, median of {STARTUP_RUNS}",
        med["total"],
        "s",
        4,
        detail=f"AppTest import {med['streamlit']:.2f} + app module {med['app_import']:.2f} + "
        f"first run {med['first_run']:.2f} s",
    )
    part.add("3a. the same from process spawn (interpreter start included)", med["spawn"], "s")
    if not result.ok:
        phases = child_json(STARTUP_PHASES)
        lines = "\n".join(f"{s * 1000:8.0f} ms  {name}" for name, s in phases.items())
        part.notes.append(
            f"3a over target by {result.value - 4:.2f} s. What the first run does, phase by "
            f"phase, in a fresh process:\n```\n{lines}\n```\nSlowest packages to import "
            "(python -X importtime; cumulative, so a package includes what it imports):\n"
            f"```\n{_importtime()}\n```"
        )


def _first_chart_phases(frames: FrameLog, total: float) -> tuple | None:
    """On the browser's clock: navigation -> first websocket message (s), -> the first chart's
    data (s), the size of the chart library's JS chunk (bytes), and the time from when both
    the data and that chunk had arrived until the chart was drawn (s)."""
    connected, chart = frames.first(), frames.first("delta:plotly_chart")
    chunk = next(((t, n) for t, url, n in frames.loaded if "PlotlyChart" in url), None)
    if not (frames.document_requested and connected and chart and chunk):
        return None
    start = frames.document_requested
    ready = max(chart, chunk[0]) - start
    return connected - start, chart - connected, chunk[1], total - ready


def _time_first_chart(context, url: str) -> tuple[float, tuple | None]:
    """Seconds from navigation to the first drawn chart in a new page of `context`."""
    page = context.new_page()
    frames = FrameLog(page)
    start = time.perf_counter()
    page.goto(url, timeout=120_000)
    page.wait_for_selector(DRAWN_CHART, state="visible", timeout=120_000)
    seconds = time.perf_counter() - start
    page.wait_for_selector(IDLE, timeout=120_000)
    check_no_exception(page, "first chart")
    page.close()
    return seconds, _first_chart_phases(frames, seconds)


# The floor under 3b on this machine: a Streamlit app that only draws one small chart, served
# with bnviz's settings and timed the same way.
ONE_CHART_APP = """
import plotly.graph_objects as go
import streamlit as st
st.plotly_chart(go.Figure(go.Scatter(y=[3, 1, 2])))
"""


def startup_first_chart_floor(part: Part) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_app-") as folder:
        app = Path(folder, "one_chart.py")
        app.write_text(ONE_CHART_APP)
        with AppServer(app=app) as server, chromium() as browser:
            open_page(browser, server.url)[0].close()  # warms the server
            times = []
            for _ in range(FIRST_CHART_RUNS):
                context = browser.new_context(viewport=VIEWPORT)
                times.append(_time_first_chart(context, server.url)[0])
                context.close()
    part.add(
        f"3b. the same for a one-chart Streamlit app (the floor here), median of "
        f"{FIRST_CHART_RUNS}",
        _median(times),
        "s",
        detail=f"max {max(times):.2f} s",
    )


def startup_first_chart(part: Part) -> None:
    with AppServer() as server, chromium() as browser:
        context, page = open_page(browser, server.url)  # warms the server
        context.close()
        times, phases = [], []
        meter = CpuMeter(server)
        meter.start()
        for i in range(FIRST_CHART_RUNS):
            context = browser.new_context(viewport=VIEWPORT)
            seconds, phase = _time_first_chart(context, server.url)
            context.close()
            times.append(seconds)
            phases.append(phase)
            log(f"startup (b) page {i + 1}: first chart after {seconds:.2f} s")
        cores = meter.stop()
        # for information: a returning visitor, whose browser has cached the app's scripts
        context = browser.new_context(viewport=VIEWPORT)
        _time_first_chart(context, server.url)
        again = [_time_first_chart(context, server.url)[0] for _ in range(FIRST_CHART_RUNS)]
        context.close()
    detail = f"max {max(times):.2f} s"
    phases = [p for p in phases if p]
    if phases:
        load, run, js, draw = (_median([p[k] for p in phases]) for k in range(4))
        detail += (
            f"; medians: websocket open {load:.2f} s after navigation, first chart's data "
            f"{run:.2f} s later, PlotlyChart.js chunk ({js / MB:.1f} MB) loaded, chart drawn "
            f"{draw:.2f} s after both had arrived"
        )
    detail += f"; {CpuMeter.describe(cores)}"
    part.add(
        f"3b. navigation -> first drawn chart, warm server, median of {FIRST_CHART_RUNS}",
        _median(times),
        "s",
        3,
        detail=detail,
    )
    part.add(
        "3b. the same for a returning visitor (browser cache warm, one context)",
        _median(again),
        "s",
        detail=f"max {max(again):.2f} s",
    )


def part_startup(part: Part) -> None:
    startup_apptest(part)
    startup_first_chart(part)
    startup_first_chart_floor(part)


# ---------------------------------------------------------------- memory


# Resident memory of the app's ingredients, step by step, in a fresh process (printed when
# the server is over its memory target).
MEMORY_PHASES = """
import json
from pathlib import Path
marks = {{}}
def mark(name):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            marks[name] = int(line.split()[1]) * 1024 / 1e6
mark("python")
import streamlit.web.server; mark("+ import streamlit (server)")
import torch; mark("+ import torch")
import plotly.graph_objects; mark("+ import plotly")
import bnviz.ui.page; mark("+ import bnviz.ui.page (the rest)")
from bnviz import Lockstep, TrainConfig, datasets, figures
from bnviz.ui.page import FIRST_STEPS
try:
    from bnviz.memory import trim  # the server trims after each opening and training stint
except ImportError:
    trim = lambda: None
torch.set_num_threads(1)
datasets.load("shapes"); mark("+ shapes data set")
config = TrainConfig(steps={steps})
lock = Lockstep([config, config.replace(norm="none")])
lock.step(FIRST_STEPS); trim(); mark(f"+ Lockstep of 2 models, {{FIRST_STEPS}} steps")
run, twin = lock.runs
[f.to_json() for f in (figures.loss_figure(run, twin), figures.accuracy_figure(run, twin))]
mark("+ Training figures")
lock.step({more}); trim(); mark("+ {more} steps")
print(json.dumps(marks))
"""
MEMORY_PHASE_STEPS = 200


def _memory_phases() -> str:
    marks = child_json(MEMORY_PHASES.format(steps=PLAY_STEPS, more=MEMORY_PHASE_STEPS), 900)
    lines, previous = [], 0.0
    for name, rss in marks.items():
        lines.append(f"{rss:7.0f} MB  {rss - previous:+6.0f} MB  {name}")
        previous = rss
    growth = list(marks.values())
    per_step = (growth[-1] - growth[-2]) / MEMORY_PHASE_STEPS
    lines.append(f"about {per_step * 1000:.0f} KB more per lockstep step, in this sample")
    return "\n".join(lines)


def _play_to_end(page, server: AppServer) -> float:
    """Press Play and wait until the run has ended; the seconds it took."""
    page.locator(".st-key-play button").click()
    start = last_log = time.monotonic()
    while True:
        page.wait_for_timeout(2000)
        state, step, steps = status(page)
        if state != "playing" and step >= steps:
            return time.monotonic() - start
        if state in ("diverged", "failed", "stopped") or (
            state == "paused" and time.monotonic() - start > 30
        ):
            raise RuntimeError(f"the run is {state} at step {step} of {steps}")
        if time.monotonic() - start > TRAIN_TIMEOUT:
            raise RuntimeError(f"step {step} of {steps} after {TRAIN_TIMEOUT:.0f} s")
        if time.monotonic() - last_log > 30:
            last_log = time.monotonic()
            log(f"memory: step {step} of {steps}, RSS {server.memory_mb()[0]:.0f} MB")


def part_memory(part: Part) -> None:
    with AppServer() as server, chromium() as browser:
        log(f"memory: server {server.url} (pid {server.process.pid}), page ?steps={PLAY_STEPS}")
        part.add("4. server RSS at start, before any page", server.memory_mb()[0], "MB")
        context, page = open_page(browser, f"{server.url}/?steps={PLAY_STEPS}")
        part.add(
            "4. server RSS, one session after its first page", server.settled_rss_mb(page), "MB"
        )
        trained = _play_to_end(page, server)
        page.wait_for_selector(IDLE, timeout=60_000)
        check_no_exception(page, f"after {PLAY_STEPS:,} steps")
        before, status = server.settled_rss_mb(page), server.status_mb()
        one = part.add(
            f"4a. server RSS, one session after {PLAY_STEPS:,} steps",
            before,
            "MB",
            350,
            detail=f"peak {status['VmHWM']:.0f} MB; now {status['RssAnon']:.0f} MB anonymous "
            f"+ {status['RssFile']:.0f} MB mapped files (libraries); trained in {trained:.0f} s, "
            f"{PLAY_STEPS / trained:.1f} steps/s",
        )

        extra = [open_page(browser, server.url)[0] for _ in range(EXTRA_SESSIONS)]
        after, peak = server.settled_rss_mb(page), server.memory_mb()[1]
        part.add(
            f"4b. server RSS added per further session (K={EXTRA_SESSIONS}, default settings)",
            (after - before) / EXTRA_SESSIONS,
            "MB",
            40,
            detail=f"{before:.0f} -> {after:.0f} MB, peak {peak:.0f} MB",
        )
        for c in extra:
            c.close()
        page.wait_for_timeout(AFTER_CLOSE_SECONDS * 1000)
        closed = server.settled_rss_mb(page)
        context.close()
        part.add(
            f"4. server RSS {AFTER_CLOSE_SECONDS:.0f} s after closing the {EXTRA_SESSIONS} pages",
            closed,
            "MB",
            detail="sessions are kept for server.disconnectedSessionTTL, 120 s by default",
        )
    if one.ok is False:
        part.notes.append(
            f"4a over target by {one.value - 350:.0f} MB. Resident memory of the app's parts, "
            f"added one by one in a fresh process:\n```\n{_memory_phases()}\n```"
        )


# ---------------------------------------------------------------- pause

PAUSE_TARGET = 0.5  # s from pressing Pause until the step counter stops, on every view
PAUSE_STEPS = (300, 5000)  # the default run, and the longest the sidebar offers
PAUSE_PLAY_SECONDS = 5.0  # playing before each press (the speed is measured over the last 5)
PAUSE_PRESSES = 3


def part_pause(part: Part) -> None:
    """Pause on every view while playing, PAUSE_PRESSES times each: the seconds from the press
    until the step counter stops (the status line shows 'paused' and the final step), and the
    steps it moved on by. A busy browser takes the click late: that counts. Where in a redraw
    the press lands varies, hence the median and the longest."""
    from bnviz.ui.links import VIEWS

    with AppServer() as server, chromium() as browser:
        for steps in PAUSE_STEPS:
            for view in VIEWS[:5]:  # the views that redraw while playing
                context, page = open_page(browser, f"{server.url}/?steps={steps}")
                if view != VIEWS[0]:
                    page.get_by_role("tab", name=view, exact=True).click()
                    page.wait_for_selector(IDLE, timeout=60_000)
                page.evaluate(STATUS_WATCH)
                presses = []
                for _ in range(PAUSE_PRESSES):
                    page.locator(".st-key-play button").click()
                    page.wait_for_timeout(PAUSE_PLAY_SECONDS * 1000)
                    presses.append(pause_and_measure(page))
                check_no_exception(page, f"after Pause, {view} view")
                seconds = [m["seconds_to_stop"] for m in presses]
                part.add(
                    f"6. Pause -> step counter stopped, {view} view, ?steps={steps}",
                    _median(seconds),
                    "s",
                    PAUSE_TARGET,
                    detail=f"median of {len(seconds)}, longest {max(seconds):.2f} s; moved on "
                    f"by {'/'.join(str(m['steps_after']) for m in presses)} steps at "
                    f"{_median([m['steps_per_second'] for m in presses]):.1f} steps/s",
                )
                context.close()


# ---------------------------------------------------------------- main

PARTS = {
    "refresh": part_refresh,
    "startup": part_startup,
    "memory": part_memory,
    "pause": part_pause,
}


def _app_version() -> str:
    """The commit measured, and whether the app's files differ from it."""

    def git(*args: str) -> str:
        command = ["git", "-C", str(ROOT), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", "app.py", "bnviz")
    except (OSError, subprocess.SubprocessError):
        return "an unknown commit"
    return f"commit {commit}" + (" with uncommitted changes" if changed else "")


def _raise_system_exit(signum, frame):
    raise SystemExit(128 + signum)  # unwinds the with-blocks: server and browser are stopped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(PARTS), help="run one part")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_system_exit)

    import streamlit
    import torch

    version = _app_version()
    machine = (
        f"app at {version}; {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"torch {torch.__version__}, streamlit {streamlit.__version__}; load averages over 1, 5 "
        "and 15 minutes"
    )
    results, notes, seconds, loads, failed = [], [], {}, {}, []
    stop: BaseException | None = None  # Ctrl-C or SIGTERM
    for name in [args.only] if args.only else list(PARTS):
        loads[name] = load_average()
        log(f"part {name}: start (load average {loads[name]})")
        start = time.monotonic()
        part = Part()
        try:
            PARTS[name](part)
        except Exception as e:  # the other parts still run; the report says what failed
            failed.append(name)
            part.notes.append(f"part {name} failed: {type(e).__name__}: {e}")
            log(f"part {name} failed: {e!r}")
        except (KeyboardInterrupt, SystemExit) as e:  # report what was measured, then stop
            failed.append(name)
            part.notes.append(f"part {name} interrupted")
            stop = e
        results += part.results
        notes += part.notes
        seconds[name] = time.monotonic() - start
        loads[name] += f" -> {load_average()}"
        log(f"part {name}: {seconds[name]:.0f} s (load average {loads[name]})")
        if stop is not None:
            break

    if _app_version() != version:
        machine += f" (the app changed during the run: now {_app_version()})"
    print(machine)
    for name in seconds:
        print(f"- part {name}: {seconds[name]:.0f} s, load average {loads[name]}")
    print()
    print("| measure | result | target | ok |")
    print("|---|---|---|---|")
    for result in results:
        print(result.row())
    for note in notes:
        print()
        print(note)
    if args.json:
        rows = [{**asdict(r), "ok": r.ok} for r in results]
        report = {
            "machine": machine,
            "seconds": seconds,
            "load_average": loads,
            "results": rows,
            "notes": notes,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if stop is not None:
        raise stop
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
