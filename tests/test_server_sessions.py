"""Sessions of a real `streamlit run app.py` server come and go, as a class's tabs do: each
opens the app, presses Play and closes mid-training. Their training must stop at once, and
their memory must come back. Driven over Streamlit's own websocket protocol (bench/wsclient.py),
so no browser is needed.

Streamlit keeps a closed tab's session for server.disconnectedSessionTTL (in case it
reconnects), and drops expired ones only when its session store is next written to, which
the next tab that closes does. The test sets that TTL to 0, so each closing tab drops those
closed before it, and waits on what the server holds, never on a clock: the server runs with
a census of live bnviz sessions (tests/census_server.py), which the test polls."""

import asyncio
import os
import re
import time
from pathlib import Path

import pytest
from conftest import TALLY

from bench.harness import ROOT, Server, proc_status_kib
from bench.wsclient import StreamlitClient

ROUNDS, SESSIONS = 3, 10  # sessions per round, all at once
TTL = 0  # seconds Streamlit keeps a closed tab's session (120 by default, for reconnects)


def _rss(pid: int) -> float:
    """Resident memory of a process, in MB."""
    return proc_status_kib(pid)["VmRSS"] / 1024


async def _visit(url: str, trained: asyncio.Event) -> int:
    """Open the app, press Play, close the tab once a session of the round shows that it
    trained after Play (`trained`); the steps this tab saw it train."""
    client, finished, steps, opened_at = StreamlitClient(url), asyncio.Event(), [0], [None]

    def listen(_, msg):
        if msg.WhichOneof("type") == "script_finished":
            finished.set()
        elif msg.WhichOneof("type") == "delta" and msg.delta.new_element.markdown.body:
            shown = re.search(r"step (\d+) of", msg.delta.new_element.markdown.body)
            steps[0] = max(steps[0], int(shown.group(1))) if shown else steps[0]
            if opened_at[0] is not None and steps[0] > opened_at[0]:
                trained.set()

    client.add_listener(listen)
    await client.connect()
    await asyncio.wait_for(finished.wait(), 120)
    assert client.widgets.get("play"), "the page has no Play button"
    opened_at[0] = steps[0]
    await client.click("play")
    await asyncio.wait_for(trained.wait(), 120)  # closed mid-training
    await client.close()
    return steps[0] - opened_at[0]


async def _round(url: str, sessions: int) -> list[int]:
    """The steps each session trained while its tab was open (tabs close once one trained)."""
    trained = asyncio.Event()
    return await asyncio.gather(*(_visit(url, trained) for _ in range(sessions)))


def _server(census: Path) -> Server:
    """The app behind tests/census_server.py, which answers census requests through `census`."""
    census_server = (str(ROOT / "tests" / "census_server.py"), str(census))
    return Server(("--server.disconnectedSessionTTL", str(TTL)), launcher=census_server)


def _census(census: Path) -> tuple[int, int, int]:
    """How many bnviz sessions the server holds now, how many of them want to train, and how
    many trained to the end of their budget (tests/census_server.py counts them)."""
    census.unlink(missing_ok=True)
    census.with_name(census.name + ".request").touch()
    deadline = time.monotonic() + 30
    while not census.exists() or not census.read_text():  # another process: poll its answer
        assert time.monotonic() < deadline, "no census"
        time.sleep(0.1)
    alive, training, finished = census.read_text().split()
    return int(alive), int(training), int(finished)


def _none_training(census: Path, timeout: float = 60.0) -> float:
    """Wait until no session the server holds wants to train; the seconds that took."""
    start = time.monotonic()
    while (training := _census(census)[1]) > 0:
        assert time.monotonic() - start < timeout, f"{training} closed sessions still train"
    return time.monotonic() - start


def _held_at_most(census: Path, sessions: int, timeout: float = 60.0) -> None:
    """Wait until the server holds at most `sessions` bnviz sessions (closed tabs' go as the
    tabs after them close)."""
    deadline = time.monotonic() + timeout
    while (alive := _census(census)[0]) > sessions:
        assert time.monotonic() < deadline, f"the server still holds {alive} sessions"


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_closed_tabs_stop_training_and_give_their_memory_back(tmp_path):
    census = tmp_path / "census"
    with _server(census) as server:
        url, pid = server.url, server.process.pid
        asyncio.run(_round(url, 2))  # warm up: imports, the opening, first allocations
        _none_training(census)
        # two tabs closing at once may both be held (neither had closed when the other did):
        # one more tab, alone, lets both go
        asyncio.run(_round(url, 1))
        _none_training(census)
        _held_at_most(census, 1)  # the tab that closed last is held until the next one closes
        before = _rss(pid)
        after, stopping = [], []
        for _ in range(ROUNDS):
            trained = asyncio.run(_round(url, SESSIONS))
            TALLY["sessions come and go"] += SESSIONS
            assert max(trained) > 0, trained  # Play did start training (two threads' worth)
            stopping.append(_none_training(census))  # no closed tab trains on
            assert _census(census)[2] == 0  # each stopped mid-run, none trained to its end
            after.append(_rss(pid))  # the round's last closed tabs go as the next ones close
        print(f"seconds until no closed session trained, per round: {stopping}")
        asyncio.run(_round(url, 1))  # one more tab opens and closes: the last round's goes
        _none_training(census)
        _held_at_most(census, 1)  # of all the sessions, at most that last one is held
        final = _rss(pid)
        # The census is the exact check. RSS is printed, with a generous bound against a gross
        # leak: the allocator keeps some of what the sessions used, more on a busy machine.
        print(f"RSS {before:.0f} MB before, {after} after each round, {final:.0f} MB at the end")
        assert final - before < 200, f"RSS {before:.0f} MB before, {after}, {final:.0f} after"
