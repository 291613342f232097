"""Sessions of a real `streamlit run app.py` server come and go, as a class's tabs do: each
opens the app, presses Play and closes mid-training. Their training must stop at once, and
their memory must come back. Driven over Streamlit's own websocket protocol (bench/wsclient.py),
so no browser is needed."""

import asyncio
import os
import re
import time

import pytest
from conftest import TALLY
from test_browser import start_server

from bench.wsclient import StreamlitClient

ROUNDS, SESSIONS = 3, 10  # sessions per round, all at once
TTL = 1  # seconds Streamlit keeps a closed tab's session (120 by default, for reconnects)


def _proc(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds used) of a process."""
    rss = next(
        int(line.split()[1]) / 1024
        for line in open(f"/proc/{pid}/status")
        if line.startswith("VmRSS:")
    )
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settle(pid: int, timeout: float = 30.0) -> float:
    """Wait until the server is idle (under 10% of a core for a second); its RSS then."""
    deadline = time.monotonic() + timeout
    while True:
        _, cpu = _proc(pid)
        time.sleep(1.0)
        rss, later = _proc(pid)
        if later - cpu < 0.1:
            return rss
        assert time.monotonic() < deadline, f"still busy: {later - cpu:.2f} s of CPU in 1 s"


async def _visit(url: str, play_seconds: float) -> int:
    """Open the app, press Play, let it train, close the tab; the latest step it showed."""
    client, finished, steps = StreamlitClient(url), asyncio.Event(), [0]

    def listen(_, msg):
        if msg.WhichOneof("type") == "script_finished":
            finished.set()
        elif msg.WhichOneof("type") == "delta" and msg.delta.new_element.markdown.body:
            shown = re.search(r"step (\d+) of", msg.delta.new_element.markdown.body)
            steps[0] = max(steps[0], int(shown.group(1))) if shown else steps[0]

    client.add_listener(listen)
    await client.connect()
    await asyncio.wait_for(finished.wait(), 120)
    assert client.widgets.get("play"), "the page has no Play button"
    opened_at = steps[0]
    await client.click("play")
    await asyncio.sleep(play_seconds)
    await client.close()
    return steps[0] - opened_at


async def _round(url: str, sessions: int, play_seconds: float) -> list[int]:
    """The steps each session trained while its tab was open."""
    return await asyncio.gather(*(_visit(url, play_seconds) for _ in range(sessions)))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_closed_tabs_stop_training_and_give_their_memory_back():
    url, server = start_server("--server.disconnectedSessionTTL", str(TTL))
    try:
        asyncio.run(_round(url, 2, 2.0))  # warm up: imports, the opening, first allocations
        time.sleep(TTL + 1)
        before = _settle(server.pid)
        after = []
        for _ in range(ROUNDS):
            trained = asyncio.run(_round(url, SESSIONS, 2.0))
            TALLY["sessions come and go"] += SESSIONS
            assert max(trained) > 0, trained  # Play did start training (two threads' worth)
            time.sleep(TTL + 1)
            after.append(_settle(server.pid, timeout=5))  # idle at once: no closed tab trains on
        growth = max(after) - before
        # A session that stayed would keep its run and models: about 3 MB each, 30 in all,
        # plus what each trained. Allocator noise is well under the bound.
        assert growth < 40, f"RSS {before:.0f} MB before, {after} after"
    finally:
        server.terminate()
        server.wait(timeout=20)
