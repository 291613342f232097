"""A bounded, thread-safe cache of finished work shared by every session of the server.
Identical requests are computed once: a second caller waits for the first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class SharedCache:
    """Least-recently-used cache of immutable results, keyed by configuration."""

    def __init__(self, max_items: int = 256):
        self.max_items = max_items
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
            value = compute()
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
                self._computing.pop(key, None)
            return value


class Worker:
    """Runs jobs on a few background threads, in order of arrival; a job already cached,
    running or waiting is not started twice. Extra work waits in the queue instead of
    slowing every session down."""

    def __init__(self, cache: SharedCache, threads: int = 1):
        self.cache = cache
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="bnviz-job")
        self._lock = threading.Lock()
        self._pending: dict[Hashable, Future] = {}  # insertion order = queue order

    def submit(self, key: Hashable, compute: Callable[[], Any]) -> Future:
        """A future for the value of key, computed in the background if needed."""
        with self._lock:
            if key in self._pending:
                return self._pending[key]
            if key in self.cache:
                done: Future = Future()
                done.set_result(self.cache.get(key))
                return done
            future = self._pool.submit(self._run, key, compute)
            self._pending[key] = future
            return future

    def _run(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        try:
            return self.cache.get_or_compute(key, compute)
        finally:
            with self._lock:
                self._pending.pop(key, None)

    def position(self, key: Hashable) -> int | None:
        """0 while running, k when k jobs are ahead of it, None when not queued."""
        with self._lock:
            running = [k for k, f in self._pending.items() if f.running()]
            waiting = [k for k, f in self._pending.items() if not f.running() and not f.done()]
        if key in running:
            return 0
        return waiting.index(key) + 1 if key in waiting else None


shared = SharedCache()
worker = Worker(shared)
