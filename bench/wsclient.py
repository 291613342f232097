"""A lightweight Streamlit client speaking the browser's own websocket protocol, for benchmarks
that drive many real sessions of a real `streamlit run` server without a browser each.

    client = StreamlitClient("http://127.0.0.1:8501")
    client.add_listener(lambda t, msg: ...)   # every ForwardMsg, with its arrival time
    await client.connect()                    # opens /_stcore/stream and starts the first run
    await client.click("play")                # a button, by its widget key
    await client.close()

What it does like the frontend (streamlit/static, App and WebsocketConnection), as of
Streamlit 1.67:
- connects to `/_stcore/stream` with the subprotocol "streamlit" (the browser passes an XSRF
  token and a previous session id in the second and third entries; neither is needed: the
  token only guards reading auth cookies, and there is no session to resume);
- starts a run by sending a BackMsg `rerun_script` with a ClientState: the query string, the
  widget states it holds, the page script hash (empty until `new_session` names it), the
  hashes of the messages it has cached, and browser context (time zone, locale, url);
- keeps the ForwardMsg cache: a message marked `metadata.cacheable` is stored under its hash,
  the hashes go with every rerun, and the server may then send a `ref_hash` in its place,
  which is resolved here; entries expire after `max_cached_message_age` runs, as in the
  browser;
- honours `auto_rerun` (a fragment with `run_every`): a timer sends `rerun_script` with the
  fragment id and `is_auto_rerun` at the interval, whether or not the last one has finished;
  `stop_auto_rerun` and the `new_session` of a full run cancel them;
- a button press sends its widget id with `trigger_value` once, like the browser.

It does not render anything, keep a widget's value unless told to (`set_widget`), send
heartbeats or reconnect. Listeners run on the event loop and should be quick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# Importing a *_pb2 module imports the streamlit package too (about a second, once).
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

FINISHED_EARLY_FOR_RERUN = ForwardMsg.ScriptFinishedStatus.FINISHED_EARLY_FOR_RERUN
ID_PREFIX = "$$ID-"  # widget ids are "$$ID-<32 hex digits>-<user key or None>"

Listener = Callable[[float, ForwardMsg], None]


def widget_key(widget_id: str) -> str | None:
    """The user key in a widget id, or None for a widget without one."""
    if not widget_id.startswith(ID_PREFIX):
        return None
    parts = widget_id.split("-", 2)
    if len(parts) < 3 or parts[2] == "None":
        return None
    return parts[2]


@dataclass
class _CachedMessage:
    payload: bytes  # serialized, decoded again on each use (the browser does the same)
    run_count: int  # the run count when last used
    fragment_id: str


@dataclass
class _MessageCache:
    """The browser's ForwardMsg cache (ForwardMessageCache in the frontend)."""

    messages: dict[str, _CachedMessage] = field(default_factory=dict)
    run_count: int = 0

    def process(self, msg: ForwardMsg, payload: bytes) -> ForwardMsg:
        """Store a cacheable message; replace a reference by the message it points to."""
        if msg.WhichOneof("type") != "ref_hash":
            if msg.metadata.cacheable and msg.hash and msg.hash not in self.messages:
                fragment = msg.delta.fragment_id if msg.HasField("delta") else ""
                self.messages[msg.hash] = _CachedMessage(payload, self.run_count, fragment)
            elif msg.hash in self.messages:
                self.messages[msg.hash].run_count = self.run_count
            return msg
        cached = self.messages.get(msg.ref_hash)
        if cached is None:
            raise ProtocolError(f"cached ForwardMsg miss for ref_hash {msg.ref_hash}")
        cached.run_count = self.run_count
        resolved = ForwardMsg()
        resolved.ParseFromString(cached.payload)
        resolved.metadata.CopyFrom(msg.metadata)  # the reference carries the delta path
        return resolved

    def increment_run_count(self, max_age: int, fragment_ids: list[str]) -> None:
        """After a run: forget what has not been used for more than max_age runs. After a
        fragment run only that fragment's messages age, as in the browser."""
        self.run_count += 1
        for hash_, entry in list(self.messages.items()):
            if fragment_ids and entry.fragment_id not in fragment_ids:
                continue
            if self.run_count - entry.run_count > max_age:
                del self.messages[hash_]


class ProtocolError(RuntimeError):
    """The server sent something a browser would also fail on."""


class StreamlitClient:
    """One browser tab's worth of a Streamlit session, over one websocket."""

    def __init__(
        self,
        url: str,
        query_string: str = "",
        *,
        timezone: str = "UTC",
        locale: str = "en-US",
        open_timeout: float = 60,
    ):
        parts = urlsplit(url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        self.url = url.rstrip("/")
        self.stream_url = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/_stcore/stream"
        self.query_string = query_string
        self.timezone, self.locale = timezone, locale
        self.open_timeout = open_timeout

        self.ws: ClientConnection | None = None
        self.session_id = ""  # from new_session.initialize
        self.page_script_hash = ""  # empty until the server names the page
        self.max_cached_message_age = 2  # from new_session.config
        self.widgets: dict[str, str] = {}  # user key -> widget id, from the elements seen
        self.widget_elements: dict[str, object] = {}  # user key -> the latest element proto
        self.widget_states: dict[str, WidgetState] = {}  # widget id -> value sent on reruns
        self.closed_reason: str | None = None  # why the connection ended, if it did
        self.messages_received = 0
        self.bytes_received = 0

        self._cache = _MessageCache()
        self._listeners: list[Listener] = []
        self._reader: asyncio.Task | None = None
        self._auto_reruns: dict[str, tuple[float, asyncio.Task]] = {}  # fragment id -> timer
        self._received_new_session = False

    # -- connection ------------------------------------------------------------------------

    async def connect(self, start: bool = True) -> None:
        """Open the websocket and, unless start=False, request the first run."""
        self.ws = await connect(
            self.stream_url,
            subprotocols=["streamlit"],
            max_size=None,  # charts can be large; the browser has no limit either
            open_timeout=self.open_timeout,
            ping_interval=None,  # browsers answer pings but never send them
            proxy=None,
        )
        self._reader = asyncio.create_task(self._read(), name=f"read {self.stream_url}")
        if start:
            await self.rerun()

    async def close(self) -> None:
        """Stop the timers and the reader, and close the websocket."""
        self._cancel_auto_reruns()
        if self.closed_reason is None:
            self.closed_reason = "closed by the client"
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def wait_closed(self) -> None:
        """Return once the connection has ended, whichever side ended it."""
        if self._reader is not None:
            await asyncio.gather(asyncio.shield(self._reader), return_exceptions=True)

    @property
    def connected(self) -> bool:
        return self.ws is not None and self.closed_reason is None

    # -- what the browser sends ------------------------------------------------------------

    async def rerun(
        self,
        triggers: dict[str, WidgetState] | None = None,
        fragment_id: str = "",
        is_auto_rerun: bool = False,
    ) -> None:
        """Send rerun_script with the widget states held, plus one-off trigger states."""
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query_string
        state.page_script_hash = self.page_script_hash
        state.fragment_id = fragment_id
        state.is_auto_rerun = is_auto_rerun
        held = dict(self.widget_states)
        held.update(triggers or {})
        state.widget_states.widgets.extend(held.values())
        state.cached_message_hashes.extend(self._cache.messages)
        info = state.context_info
        info.timezone, info.timezone_offset, info.locale = self.timezone, 0, self.locale
        info.url = f"{self.url}/" + (f"?{self.query_string}" if self.query_string else "")
        info.color_scheme = "light"
        await self.send(msg)

    async def send(self, msg: BackMsg) -> None:
        if self.ws is None:
            raise RuntimeError("not connected")
        await self.ws.send(msg.SerializeToString())

    def widget_id(self, key: str) -> str:
        """The id of the widget with this user key, as last sent by the server."""
        try:
            return self.widgets[key]
        except KeyError:
            raise KeyError(f"no widget with key {key!r} seen yet") from None

    async def click(self, key: str) -> None:
        """Press the button with this key (and rerun what it belongs to, here the page)."""
        state = WidgetState(id=self.widget_id(key), trigger_value=True)
        await self.rerun({state.id: state})

    def set_widget(self, key: str, **value) -> None:
        """Hold a widget value for every later rerun, e.g. set_widget("seed", int_value=3)."""
        state = WidgetState(id=self.widget_id(key), **value)
        self.widget_states[state.id] = state

    # -- what the browser receives ---------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call listener(arrival time.monotonic(), ForwardMsg) for each message, refs resolved."""
        self._listeners.append(listener)

    async def messages(self) -> AsyncIterator[tuple[float, ForwardMsg]]:
        """Iterate over the messages from now on, until the connection ends."""
        queue: asyncio.Queue = asyncio.Queue()

        def listener(t: float, msg: ForwardMsg) -> None:
            queue.put_nowait((t, msg))

        self._listeners.append(listener)
        try:
            while True:
                if queue.empty() and (self._reader is None or self._reader.done()):
                    return
                getter = asyncio.ensure_future(queue.get())
                waits = {getter} | ({self._reader} if self._reader is not None else set())
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
        finally:
            self._listeners.remove(listener)

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for payload in self.ws:
                arrived = time.monotonic()
                if isinstance(payload, str):
                    raise ProtocolError("text frame from the server")
                msg = ForwardMsg()
                msg.ParseFromString(payload)
                msg = self._cache.process(msg, payload)
                self.messages_received += 1
                self.bytes_received += len(payload)
                self._handle(msg)
                for listener in self._listeners:
                    listener(arrived, msg)
            self.closed_reason = (
                self.closed_reason or f"closed by the server ({self.ws.close_code})"
            )
        except ConnectionClosed as e:
            self.closed_reason = self.closed_reason or f"connection closed: {e}"
        except asyncio.CancelledError:
            self.closed_reason = self.closed_reason or "closed by the client"
            raise
        except Exception as e:  # a listener or the protocol failed: end this session
            self.closed_reason = self.closed_reason or f"{type(e).__name__}: {e}"
            await self.ws.close()
        finally:
            self._cancel_auto_reruns()

    def _handle(self, msg: ForwardMsg) -> None:
        """The client-side bookkeeping a browser does for each message."""
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            new = msg.new_session
            self._received_new_session = True
            self.page_script_hash = new.page_script_hash
            self.max_cached_message_age = new.config.max_cached_message_age
            if new.initialize.session_id:
                self.session_id = new.initialize.session_id
            if not msg.metadata.run.fragment_ids:  # a full run starts: old timers go
                self._cancel_auto_reruns()
        elif kind == "delta" and msg.delta.WhichOneof("type") in ("new_element", "add_block"):
            delta = msg.delta
            proto = delta.new_element if delta.HasField("new_element") else delta.add_block
            inner = proto.WhichOneof("type")
            element = getattr(proto, inner) if inner else None
            widget_id = getattr(element, "id", "") if element is not None else ""
            key = widget_key(widget_id) if isinstance(widget_id, str) else None
            if key is not None:
                self.widgets[key] = widget_id
                self.widget_elements[key] = element
        elif kind == "auto_rerun":
            self._start_auto_rerun(msg.auto_rerun.fragment_id, msg.auto_rerun.interval)
        elif kind == "stop_auto_rerun":
            for fragment_id in msg.stop_auto_rerun.fragment_ids:
                self._cancel_auto_rerun(fragment_id)
        elif kind == "script_finished":
            if msg.script_finished != FINISHED_EARLY_FOR_RERUN and self._received_new_session:
                fragments = list(msg.metadata.run.fragment_ids)
                self._cache.increment_run_count(self.max_cached_message_age, fragments)

    # -- fragment timers -------------------------------------------------------------------

    def _start_auto_rerun(self, fragment_id: str, interval: float) -> None:
        if not fragment_id or interval <= 0:
            return
        current = self._auto_reruns.get(fragment_id)
        if current is not None and current[0] == interval:
            return  # the browser keeps a timer with the same interval running
        self._cancel_auto_rerun(fragment_id)
        task = asyncio.create_task(self._auto_rerun(fragment_id, interval))
        self._auto_reruns[fragment_id] = (interval, task)

    async def _auto_rerun(self, fragment_id: str, interval: float) -> None:
        next_time = time.monotonic() + interval
        while self.connected:  # setInterval: a fixed cadence, not "interval after a reply"
            await asyncio.sleep(max(0.0, next_time - time.monotonic()))
            next_time += interval
            try:
                await self.rerun(fragment_id=fragment_id, is_auto_rerun=True)
            except ConnectionClosed:
                return

    def _cancel_auto_rerun(self, fragment_id: str) -> None:
        entry = self._auto_reruns.pop(fragment_id, None)
        if entry is not None:
            entry[1].cancel()

    def _cancel_auto_reruns(self) -> None:
        for fragment_id in list(self._auto_reruns):
            self._cancel_auto_rerun(fragment_id)
