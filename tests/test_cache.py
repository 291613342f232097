import threading
import time

from bnviz.cache import SharedCache, Worker


def test_identical_requests_are_computed_once_across_threads():
    cache, calls = SharedCache(), []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return {"value": 42}

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_compute("k", slow)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and len(results) == 8 and all(r is results[0] for r in results)


def test_cache_is_bounded_least_recently_used():
    cache = SharedCache(max_items=2)
    for key in "abc":
        cache.get_or_compute(key, lambda key=key: key.upper())
    assert "a" not in cache and cache.get("b") == "B" and cache.get("c") == "C"
    cache.get("b")  # b is now the most recent
    cache.get_or_compute("d", lambda: "D")
    assert "c" not in cache and "b" in cache


def test_worker_queues_jobs_and_reports_positions():
    cache = SharedCache()
    worker = Worker(cache, threads=1)
    gate = threading.Event()
    first = worker.submit("first", lambda: gate.wait(5) and "done")
    second = worker.submit("second", lambda: "two")
    third = worker.submit("third", lambda: "three")
    time.sleep(0.1)
    assert worker.position("first") == 0
    assert (worker.position("second"), worker.position("third")) == (1, 2)
    assert worker.submit("second", lambda: "other") is second  # not queued twice
    gate.set()
    assert (first.result(5), second.result(5), third.result(5)) == ("done", "two", "three")
    assert worker.position("third") is None
    assert worker.submit("third", lambda: "again").result(1) == "three"  # from the cache
