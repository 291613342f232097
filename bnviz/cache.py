"""A bounded, thread-safe cache of finished work shared by every session of the server.
Identical requests are computed once: a second caller waits for the first."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


def available_cores() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota (containers such
    as Streamlit Community Cloud report the host's cores but grant a quota of a few)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores or 1)


def describe(key: Hashable) -> str:
    """A short, stable name for a cache key in log lines: its kind and a digest."""
    kind = key[0] if isinstance(key, tuple) and key and isinstance(key[0], str) else "item"
    return f"{kind} {hashlib.sha256(repr(key).encode()).hexdigest()[:12]}"


class SharedCache:
    """Least-recently-used cache of immutable results, keyed by configuration."""

    def __init__(self, max_items: int = 256, logged: bool = True):
        self.max_items, self.logged = max_items, logged  # logged: a "bnviz compute:" line each
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, default=None):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return default

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value for key, computing it (once, whoever asks) if missing."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:  # computed by another thread meanwhile
                    return self._items[key]
            if self.logged:
                log.info("bnviz compute: %s", describe(key))
            try:
                value = compute()
            except BaseException:
                with self._lock:  # nothing cached: the next caller tries again
                    self._computing.pop(key, None)
                raise
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
                self._computing.pop(key, None)
            return value


class Worker:
    """Runs jobs on a fixed number of background threads, in order of arrival. Work beyond
    the thread count waits in the queue (and can say where it stands) instead of slowing
    every session down. A job already running or waiting is not queued twice."""

    def __init__(self, cache: SharedCache, threads: int = 1):
        self.cache, self.threads = cache, threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="bnviz-job")
        self._lock = threading.Lock()
        self._pending: dict[Hashable, Future] = {}  # insertion order = queue order

    def submit(
        self, key: Hashable, compute: Callable[[], Any], cache: SharedCache | None = None
    ) -> Future:
        """A future for the value of key, looked up in (or computed into) `cache`, by default
        the worker's own: identical work is computed once, whoever asks."""
        cache = self.cache if cache is None else cache
        with self._lock:
            if key not in self._pending and key in cache:
                done: Future = Future()
                done.set_result(cache.get(key))
                return done
        return self.run(key, lambda: cache.get_or_compute(key, compute))

    def run(self, key: Hashable, fn: Callable[[], Any]) -> Future:
        """A future for fn(), run on a worker thread and not cached; while it is pending,
        a second request with the same key gets the same future."""
        with self._lock:
            if key not in self._pending:
                self._pending[key] = self._pool.submit(self._run, key, fn)
            return self._pending[key]

    def _run(self, key: Hashable, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        finally:
            with self._lock:
                self._pending.pop(key, None)

    def waiting(self) -> int:
        """How many jobs wait for a thread."""
        with self._lock:
            return sum(not f.running() and not f.done() for f in self._pending.values())

    def position(self, key: Hashable) -> int | None:
        """0 while running (or about to: a thread is free), k when it waits for the k-th
        thread to come free, None when not queued."""
        with self._lock:
            # one reading of each future's state: a thread may start one at any moment
            states = {k: "running" if f.running() else f.done() for k, f in self._pending.items()}
        state = states.get(key, True)
        if state is True:  # not queued, or done
            return None
        if state == "running":
            return 0
        running = sum(s == "running" for s in states.values())
        waiting = [k for k, s in states.items() if s is False]
        return max(0, waiting.index(key) + 1 - (self.threads - running))


# Training threads for the whole server, shared by every session: one per available core, each
# running torch with one thread (see bnviz/ui/page.py). Live training, first steps, and the
# scenarios' experiments all wait here in one queue.
shared = SharedCache()
worker = Worker(shared, threads=available_cores())
