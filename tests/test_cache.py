import threading

from bnviz.cache import SharedCache, Worker


def test_identical_requests_are_computed_once_across_threads():
    cache, calls, results = SharedCache(), [], []
    asking = threading.Barrier(8)  # every thread is about to ask before the first answer ends
    computing, gate = threading.Event(), threading.Event()

    def slow():
        calls.append(1)
        computing.set()
        gate.wait(30)
        return {"value": 42}

    def ask():
        asking.wait(30)
        results.append(cache.get_or_compute("k", slow))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    assert computing.wait(30)  # the first caller holds the key until the gate opens
    gate.set()
    for t in threads:
        t.join(30)
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
    gate, started = threading.Event(), threading.Event()
    first = worker.submit("first", lambda: started.set() or gate.wait(30) and "done")
    second = worker.submit("second", lambda: "two")
    third = worker.submit("third", lambda: "three")
    assert started.wait(30)  # the first job holds the only thread
    assert worker.position("first") == 0
    assert (worker.position("second"), worker.position("third")) == (1, 2)
    assert worker.submit("second", lambda: "other") is second  # not queued twice
    gate.set()
    assert (first.result(5), second.result(5), third.result(5)) == ("done", "two", "three")
    assert worker.position("third") is None
    assert worker.submit("third", lambda: "again").result(1) == "three"  # from the cache


def test_uncached_runs_are_queued_once_while_pending_and_counted_as_waiting():
    worker = Worker(SharedCache(), threads=1)
    gate, started, calls = threading.Event(), threading.Event(), []
    busy = worker.run("busy", lambda: started.set() or gate.wait(30))
    assert started.wait(30)  # the only thread is busy
    first = worker.run("train", lambda: calls.append(1))
    assert worker.run("train", lambda: calls.append(2)) is first
    assert worker.waiting() == 1 and worker.position("train") == 1
    gate.set()
    busy.result(5), first.result(5)
    assert calls == [1] and worker.waiting() == 0 and worker.position("train") is None
    worker.run("train", lambda: calls.append(3)).result(5)  # not cached: runs again
    assert calls == [1, 3]


def test_submit_into_another_cache_and_log_each_computation(caplog):
    own, other = SharedCache(), SharedCache()
    worker = Worker(own, threads=2)
    with caplog.at_level("INFO", logger="bnviz"):
        futures = [worker.submit(("opening", 1), lambda: object(), cache=other) for _ in range(3)]
        values = {id(f.result(5)) for f in futures}
        later = worker.submit(("opening", 1), lambda: object(), cache=other).result(5)
    assert len(values) == 1 and id(later) in values
    assert ("opening", 1) in other and ("opening", 1) not in own
    assert sum("bnviz compute: opening" in r.message for r in caplog.records) == 1


def test_available_cores_is_at_least_one():
    from bnviz.cache import available_cores

    assert 1 <= available_cores() <= (len(__import__("os").sched_getaffinity(0)))
