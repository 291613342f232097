"""What the benchmarks and the tests share to run the app for real: a `streamlit run app.py`
server (Server); a process's CPU time, RSS and descendants, and the host's busy time, read from
/proc (Linux only); and the Debian Chromium that the browser test and bench_app drive, with the
page helpers both use to time Pause (STATUS_WATCH, pause_and_measure).

Imports nothing heavy, so the tests import it too (`from bench.harness import ...`); the page
helpers take a Playwright page but do not import Playwright.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int, kernel_only: bool = False, waited_children: bool = False) -> float:
    """CPU time of a process (all its threads): user + system, or system (kernel) time only;
    with waited_children, plus that of its children that have exited and been waited for.
    0 if it has gone."""
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        utime, stime, cutime, cstime = (int(v) for v in rest[11:15])
    except (OSError, ValueError):
        return 0.0
    own = stime if kernel_only else utime + stime
    children = cstime if kernel_only else cutime + cstime
    return (own + (children if waited_children else 0)) / CLOCK_TICKS


def process_tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc/<pid>/task/<tid>/children."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:  # it has gone
            pass
    return tree


def proc_status_kib(pid: int) -> dict[str, int]:
    """The fields of /proc/<pid>/status given in kB (VmRSS, VmHWM, RssAnon, RssFile...), in
    KiB (the kernel's kB). Raises OSError if the process has gone; a process that has exited
    but not been waited for has none of these fields."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith(" kB"):
            fields[name] = int(value.split()[0])
    return fields


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """One field of proc_status_kib (KiB), 0 if the process has gone."""
    try:
        return proc_status_kib(pid).get(field, 0)
    except OSError:
        return 0


def host_busy_seconds() -> float:
    """CPU seconds all cores of the host have spent busy (not idle, not waiting for I/O) since
    boot (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


# ---------------------------------------------------------------- the server

STREAMLIT = ("-m", "streamlit")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy


class Server:
    """`streamlit run app.py` headless on a free port of 127.0.0.1, in its own process group
    (stopped as one, spared a Ctrl-C meant for the caller), started by start() or by entering
    a `with` block, which waits until /_stcore/health answers. Its output is read by a thread
    into `lines`, each with its time.monotonic() (a full pipe would stall the server). stop(),
    or leaving the `with` block whatever the reason: SIGTERM to the group, SIGKILL after 20 s.

    options: more `streamlit run` options, e.g. ("--server.disconnectedSessionTTL", "1").
    launcher: what `python` runs instead of `-m streamlit`: a script (and its arguments) that
        hands the rest of its argv to streamlit's CLI, as tests/census_server.py does.
    app: the script served. cpus: pin the server to the first `cpus` CPUs this process may use.
    sample: every 100 ms, record the RSS of its process tree (`rss`), the kernel's peak RSS of
        the server (`vmhwm_kib`) and the CPU time of the tree (`cpu_seconds`).
    echo: copy its output to stderr as it comes.
    """

    def __init__(
        self,
        options: Sequence[str] = (),
        *,
        launcher: Sequence[str] = STREAMLIT,
        app: Path = APP,
        cpus: int | None = None,
        sample: bool = False,
        echo: bool = False,
        start_timeout: float = 60.0,
    ):
        self.options, self.launcher, self.app = list(options), list(launcher), app
        self.cpus, self.sample, self.echo = cpus, sample, echo
        self.start_timeout = start_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.lines: list[tuple[float, str]] = []  # (time.monotonic(), line) of its output
        self.rss: list[tuple[float, int]] = []  # (time.monotonic(), KiB of the whole tree)
        self.vmhwm_kib = 0  # the kernel's peak RSS of the server process
        self.cpu_seconds = 0.0  # CPU time of the process tree, as last sampled
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> float:
        """Start and wait for the health endpoint; the seconds that took. Raises RuntimeError
        with the server's output if it exits or does not answer within start_timeout."""
        begin = time.monotonic()
        pin = set(sorted(os.sched_getaffinity(0))[: self.cpus]) if self.cpus else None
        self.process = subprocess.Popen(
            [sys.executable, *self.launcher, "run", str(self.app), "--server.headless", "true",
             "--server.port", str(self.port), "--server.address", "127.0.0.1", *self.options],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, pin)) if pin else None,
        )  # fmt: skip
        self._thread(self._read_output)
        if self.sample:
            self._thread(self._sample)
        while time.monotonic() - begin < self.start_timeout and self.process.poll() is None:
            if self.healthy(timeout=1):
                return time.monotonic() - begin
            time.sleep(0.2)  # no event for "listening": poll, with a deadline
        exited = self.process.poll() is not None
        self.stop()
        why = "exited at start" if exited else f"did not answer in {self.start_timeout:.0f} s"
        raise RuntimeError(f"the streamlit server {why}:\n{self.output()}")

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL after 20 s; idempotent."""
        self._stop.set()
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
        for thread in self._threads:
            thread.join(timeout=5)

    def healthy(self, timeout: float) -> bool:
        """Whether /_stcore/health answers 200 within timeout seconds."""
        try:
            with _OPENER.open(f"{self.url}/_stcore/health", timeout=timeout) as reply:
                return reply.status == 200
        except OSError:
            return False

    def output(self, chars: int = 3000) -> str:
        """The end of its output so far."""
        return "".join(line for _, line in self.lines)[-chars:]

    @property
    def server_cpus(self) -> int:
        """How many CPUs the server may run on."""
        assert self.process is not None
        try:
            return len(os.sched_getaffinity(self.process.pid))
        except OSError:
            return len(os.sched_getaffinity(0))

    def peak_rss_mib(self, since: float = 0.0, until: float = math.inf) -> float:
        """The highest sampled RSS of the tree between since and until (with sample=True)."""
        values = [kib for t, kib in self.rss if since <= t <= until]
        return max(values, default=0) / 1024

    def _thread(self, target) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _read_output(self) -> None:
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line))
            if self.echo:
                sys.stderr.write(f"[server] {line}")

    def _sample(self) -> None:
        pid = self.process.pid
        while not self._stop.is_set() and self.process.poll() is None:
            tree = process_tree(pid)
            self.rss.append((time.monotonic(), sum(rss_kib(p) for p in tree)))
            self.vmhwm_kib = max(self.vmhwm_kib, rss_kib(pid, "VmHWM"))
            self.cpu_seconds = max(self.cpu_seconds, sum(cpu_seconds(p) for p in tree))
            self._stop.wait(0.1)


# ---------------------------------------------------------------- the browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"  # no script run going on

# Every change of the status line ([browser ms, state, step]), and the time of the latest
# pointerdown: its event.timeStamp is when the input happened, before a busy page got to it.
STATUS_WATCH = r"""() => {
    if (window.__status) return;
    const log = window.__status = [];
    window.__pressed = null;
    document.addEventListener('pointerdown', e => { window.__pressed = e.timeStamp; }, true);
    const states = 'playing|waiting|paused|finished|diverged|failed|stopped|replay';
    const re = new RegExp(`(${states})\\b[^\\n]*?step (\\d+) of`);
    setInterval(() => {
        const m = re.exec(document.body.innerText);
        const last = log[log.length - 1];
        if (m && (!last || last[1] !== m[1] || last[2] !== +m[2])) {
            log.push([performance.now(), m[1], +m[2]]);
        }
    }, 20);
}"""


def pause_and_measure(page) -> dict:
    """Press Pause on a playing page (STATUS_WATCH installed a few seconds before) and return
    the seconds from the press until the step counter stopped (the status line's last change:
    'paused' with the final step), and the steps it moved on by meanwhile, with the speed of
    the seconds before. A busy browser that takes the click late counts."""
    page.wait_for_function("() => document.body.innerText.includes('playing')", timeout=60_000)
    page.locator(".st-key-pause button").click()
    page.wait_for_function("() => document.body.innerText.includes('paused')", timeout=60_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    log, pressed = page.evaluate("() => [window.__status, window.__pressed]")
    before = [e for e in log if e[0] <= pressed and e[1] == "playing"]
    paused = next(e for e in log if e[0] > pressed and e[1] == "paused")
    window = [e for e in before if e[0] >= pressed - 5000]
    speed = (window[-1][2] - window[0][2]) / max((window[-1][0] - window[0][0]) / 1000, 1e-3)
    return dict(
        seconds_to_stop=(paused[0] - pressed) / 1000,
        steps_after=paused[2] - before[-1][2],
        steps_per_second=speed,
    )
