"""Download faults (issue 6, item 6): a slow or broken server, a bad file, a cache folder that
is read-only, full or unreadable. Each ends in DatasetUnavailable with a message a teacher can
act on, leaves no partial file, and the app falls back to 'shapes'. Network only to 127.0.0.1;
the disk's refusals are monkeypatched, so they are tested when running as root too."""

import builtins
import errno
import os
import pathlib
import tempfile
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import test_datasets as td
from conftest import TALLY
from streamlit.testing.v1 import AppTest

from bnviz import datasets as ds
from bnviz.cache import SharedCache
from bnviz.ui import page

server, cache = td.server, td.cache  # fixtures: loopback HTTP server, tmp BNVIZ_DATA_DIR
FIRST = "train-images-idx3-ubyte.gz"
APP = str(Path(__file__).resolve().parent.parent / "app.py")


def fault(code: int, path="") -> OSError:
    return OSError(code, os.strerror(code), str(path))


def raising(code: int):
    """A stand-in for an I/O function that fails with OSError(code)."""

    def fail(*args, **kwargs):
        raise fault(code)

    return fail


def inside(folder: Path, path) -> bool:
    return os.path.abspath(os.fspath(path)).startswith(str(folder) + os.sep)


def refuse_writes(monkeypatch, folder: Path, code: int) -> None:
    """Make the OS refuse to create anything in folder, as a read-only one does (even for root)."""
    real_open, real_mkdir = os.open, os.mkdir

    def fake_open(path, flags, *args, **kwargs):
        if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR) and inside(folder, path):
            raise fault(code, path)
        return real_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if inside(folder, path):
            raise fault(code, path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


def fill_disk(monkeypatch, where: str, created: list) -> None:
    """Make the disk run full (ENOSPC) at one step of saving a download."""
    refuse = raising(errno.ENOSPC)
    if where == "write":
        real = tempfile.NamedTemporaryFile

        def full(*args, **kwargs):
            f = real(*args, **kwargs)
            created.append(f.name)
            f.write = refuse
            return f

        monkeypatch.setattr(ds.tempfile, "NamedTemporaryFile", full)
    else:
        monkeypatch.setattr(ds.os, where, refuse)


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*")) if folder.exists() else []


# ---------------------------------------------------------------- each fault class


def stalled(server, monkeypatch, cache):
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0])
    server.modes[f"/mnist/{FIRST}"] = "stall"
    monkeypatch.setattr(ds, "TIMEOUT", 0.3)
    return "no answer within 0.3 seconds"


def dripping(server, monkeypatch, cache):
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0])
    server.modes[f"/mnist/{FIRST}"] = "drip"  # a byte every 0.02 s: no read ever times out
    monkeypatch.setattr(ds, "DOWNLOAD_DEADLINE", 0.3)
    return "took longer than 0.3 seconds"


def bad_checksum(server, monkeypatch, cache):
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0], sha="0" * 64)
    return "checksum"


def truncated(server, monkeypatch, cache):
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0])
    server.modes[f"/mnist/{FIRST}"] = "truncate"  # Content-Length says twice what comes
    return "incomplete"


def read_only(server, monkeypatch, cache):
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0])
    refuse_writes(monkeypatch, cache, errno.EROFS)
    return "read-only"


def disk_full(server, monkeypatch, cache):
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0])
    fill_disk(monkeypatch, "write", [])
    return "disk is full"


def unreadable(server, monkeypatch, cache):
    files = td.mnist_files()[0]
    td.serve(server, monkeypatch, "mnist", files)
    (cache / "mnist").mkdir()
    for name, data in files.items():
        (cache / "mnist" / name).write_bytes(data)

    def no_access(path, *args, **kwargs):
        if inside(cache, path):
            raise fault(errno.EACCES, path)
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(ds, "open", no_access, raising=False)
    return "Could not read"


FAULTS = {
    "timeout": stalled,
    "total deadline": dripping,
    "checksum mismatch": bad_checksum,
    "truncated": truncated,
    "read-only": read_only,
    "full": disk_full,
    "unreadable": unreadable,
}


@pytest.fixture
def fresh(monkeypatch):
    """load() with no real data set loaded yet in this process (shapes may stay)."""
    monkeypatch.setattr(ds, "_loaded", {k: v for k, v in ds._loaded.items() if k == "shapes"})


@pytest.mark.parametrize("kind", FAULTS)
def test_each_fault_is_a_clear_dataset_unavailable(server, monkeypatch, cache, fresh, kind):
    """The page's contract: load() raises DatasetUnavailable (the page then shows 'shapes'),
    with a short message that names the data set and the fault and says what to do."""
    TALLY["fault cases"] += 1
    keyword = FAULTS[kind](server, monkeypatch, cache)
    with pytest.raises(Exception) as err:
        ds.load("mnist")
    assert type(err.value) is ds.DatasetUnavailable, repr(err.value)
    message = str(err.value)
    assert message.startswith("MNIST is not available.") and keyword in message, message
    assert not any(s in message for s in ("Traceback", 'File "', "Errno", "\n")), message
    assert any(s in message for s in ("try again", "Try again", "BNVIZ_DATA_DIR")), message
    assert len(message) < 450, message
    assert temp_files(cache / "mnist") == []
    if kind != "unreadable":  # intact files it cannot read are the teacher's to delete
        td.assert_no_files(cache / "mnist")
    assert "mnist" not in ds._loaded


@pytest.mark.parametrize("kind", ["checksum mismatch", "total deadline", "read-only"])
def test_app_falls_back_to_shapes_with_a_warning(server, monkeypatch, cache, fresh, kind):
    TALLY["fault cases"] += 1
    keyword = FAULTS[kind](server, monkeypatch, cache)
    monkeypatch.setattr(page, "openings", SharedCache())  # no opening left by another test
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["dataset"] = "mnist"
    at.run()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning]
    assert any("MNIST is not available" in w and keyword in w for w in warnings), warnings
    assert any("Showing the built-in 'shapes' data set" in w for w in warnings), warnings
    assert at.session_state["session"].run.config.dataset == "shapes"
    assert at.get("plotly_chart")
    assert temp_files(cache / "mnist") == []


# ---------------------------------------------------------------- total deadline


def test_a_dripping_server_hits_the_total_deadline(server, monkeypatch, cache):
    TALLY["fault cases"] += 1
    dripping(server, monkeypatch, cache)
    body, received = ds._body, [0]

    def counted(url, timeout):
        for chunk in body(url, timeout):
            received[0] += len(chunk)
            yield chunk

    monkeypatch.setattr(ds, "_body", counted)
    with pytest.raises(ds.DatasetUnavailable, match="took longer than 0.3 seconds") as err:
        ds.load_real("mnist", timeout=5)  # each byte comes well within the read time-out
    print(f"{received[0]} of the server's {td.DRIP_BYTES} dripped bytes came before the deadline")
    assert received[0] < td.DRIP_BYTES  # it gave up before the server ran out
    assert "partial file was discarded" in str(err.value)
    td.assert_no_files(cache / "mnist")


def test_deadline_default_and_wording():
    assert 120 <= ds.DOWNLOAD_DEADLINE <= 900
    assert ds._duration(600) == "10 minutes" and ds._duration(0.5) == "0.5 seconds"


# ---------------------------------------------------------------- one lock per data set


def test_a_slow_download_blocks_neither_other_data_sets_nor_loads_twice(monkeypatch):
    TALLY["fault cases"] += 1
    monkeypatch.setattr(ds, "_loaded", {})
    x, y = np.zeros((4, 1, 28, 28), np.uint8), np.arange(4)
    monkeypatch.setattr(ds, "_shapes_arrays", lambda: (x, y, x, y))
    mnist = ds.make_dataset("mnist", x, y, x, y, ds.CLASSES["mnist"])
    started, release, calls, results = threading.Event(), threading.Event(), [], {}

    def slow_download(name, **kwargs):
        calls.append(name)
        started.set()
        assert release.wait(10)
        return mnist

    def load(key, name):
        results[key] = ds.load(name)

    monkeypatch.setattr(ds, "load_real", slow_download)
    threads = {
        key: threading.Thread(target=load, args=(key, name), daemon=True)
        for key, name in [("first", "mnist"), ("second", "mnist"), ("shapes", "shapes")]
    }
    try:
        threads["first"].start()
        assert started.wait(5)
        threads["second"].start()
        threads["shapes"].start()
        threads["shapes"].join(5)
        assert not threads["shapes"].is_alive() and results["shapes"].name == "shapes"
        assert threads["first"].is_alive() and threads["second"].is_alive()
    finally:
        release.set()
    threads["first"].join(5)
    threads["second"].join(5)
    assert results["first"] is mnist and results["second"] is mnist and calls == ["mnist"]


def test_a_failed_load_is_tried_again(monkeypatch):
    TALLY["fault cases"] += 1
    monkeypatch.setattr(ds, "_loaded", {})
    x, y = np.zeros((4, 1, 28, 28), np.uint8), np.arange(4)
    outcomes = [ds.DatasetUnavailable("MNIST is not available. Offline."), None]

    def flaky(name, **kwargs):
        if error := outcomes.pop(0):
            raise error
        return ds.make_dataset(name, x, y, x, y, ds.CLASSES[name])

    monkeypatch.setattr(ds, "load_real", flaky)
    with pytest.raises(ds.DatasetUnavailable, match="Offline"):
        ds.load("mnist")
    assert ds.load("mnist").name == "mnist" and outcomes == []


# ---------------------------------------------------------------- read-only cache, as root too


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
@pytest.mark.parametrize("folder_exists", [True, False])
def test_read_only_cache_folder_even_as_root(server, monkeypatch, cache, code, folder_exists):
    TALLY["fault cases"] += 1
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0])
    if folder_exists:
        (cache / "mnist").mkdir()
    refuse_writes(monkeypatch, cache, code)
    with pytest.raises(ds.DatasetUnavailable) as err:
        ds.load_real("mnist")
    message = str(err.value)
    assert "read-only" in message and os.strerror(code) in message, message
    assert "Set BNVIZ_DATA_DIR to a writable folder" in message
    assert server.requests == []  # nothing fetched that could not be kept
    td.assert_no_files(cache / "mnist")


def test_read_only_cache_that_holds_the_files_still_loads(server, monkeypatch, cache):
    TALLY["fault cases"] += 1
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0])
    ds.load_real("mnist")
    refuse_writes(monkeypatch, cache, errno.EROFS)
    assert ds.load_real("mnist").x_train.shape == (5, 1, 28, 28)
    assert len(server.requests) == 4


def test_messages_show_the_home_folder_as_tilde(server, monkeypatch, tmp_path):
    TALLY["fault cases"] += 1
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0])
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BNVIZ_DATA_DIR", str(tmp_path / ".cache" / "bnviz"))
    refuse_writes(monkeypatch, tmp_path / ".cache", errno.EROFS)
    with pytest.raises(ds.DatasetUnavailable) as err:
        ds.load_real("mnist")
    message = str(err.value)
    assert "the cache folder ~/.cache/bnviz/mnist: it is read-only" in message, message
    assert str(tmp_path) not in message


# ---------------------------------------------------------------- full disk


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_full_disk_at_each_step_of_saving(server, monkeypatch, cache, where):
    TALLY["fault cases"] += 1
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0])
    created = []
    fill_disk(monkeypatch, where, created)
    with pytest.raises(ds.DatasetUnavailable) as err:
        ds.load_real("mnist")
    message = str(err.value)
    assert "the disk is full" in message and "Free some disk space" in message, message
    assert os.strerror(errno.ENOSPC) in message
    assert not any(os.path.exists(p) for p in created)
    td.assert_no_files(cache / "mnist")


# ---------------------------------------------------------------- unreadable cache


def test_unreadable_cached_file(server, monkeypatch, cache):
    TALLY["fault cases"] += 1
    unreadable(server, monkeypatch, cache)
    with pytest.raises(ds.DatasetUnavailable) as err:
        ds.load_real("mnist")
    message = str(err.value)
    assert f"Could not read {FIRST} in the cache folder {cache / 'mnist'}" in message, message
    assert "(Permission denied)" in message and "Delete that folder" in message
    assert server.requests == [] and temp_files(cache / "mnist") == []


@pytest.mark.parametrize("step", ["stat", "read", "read_bytes"])
def test_io_errors_reading_the_cache(server, monkeypatch, cache, step):
    TALLY["fault cases"] += 1
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0])
    ds.load_real("mnist")
    target = cache / "mnist" / FIRST
    if step == "stat":
        real_stat = pathlib.Path.stat

        def stat(self, *args, **kwargs):
            if self == target:
                raise fault(errno.EACCES, self)
            return real_stat(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "stat", stat)
    elif step == "read":

        class BadDisk:
            def __init__(self, path, *args):
                self.file = builtins.open(path, *args)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.file.close()

            def read(self, n):
                raise fault(errno.EIO)

        monkeypatch.setattr(ds, "open", BadDisk, raising=False)
    else:
        monkeypatch.setattr(pathlib.Path, "read_bytes", raising(errno.EIO))
    with pytest.raises(ds.DatasetUnavailable) as err:
        ds.load_real("mnist")
    message = str(err.value)
    assert message.startswith("MNIST is not available."), message
    reason = os.strerror(errno.EACCES if step == "stat" else errno.EIO)
    assert f"({reason})" in message and "Errno" not in message, message
    assert str(cache / "mnist") in message and len(server.requests) == 4


def test_corrupt_cached_file_that_cannot_be_deleted(server, monkeypatch, cache):
    TALLY["fault cases"] += 1
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0])
    ds.load_real("mnist")
    (cache / "mnist" / FIRST).write_bytes(b"\0" * 10)
    real_unlink = pathlib.Path.unlink

    def unlink(self, *args, **kwargs):
        if inside(cache, self):
            raise fault(errno.EROFS, self)
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    with pytest.raises(ds.DatasetUnavailable, match="delete a corrupt file from .* read-only"):
        ds.load_real("mnist")


def test_failing_cleanup_does_not_hide_the_error(server, monkeypatch, cache):
    TALLY["fault cases"] += 1
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0], sha="0" * 64)
    monkeypatch.setattr(pathlib.Path, "unlink", raising(errno.EROFS))
    with pytest.raises(ds.DatasetUnavailable, match="checksum"):
        ds.load_real("mnist")


# ---------------------------------------------------------------- truncated files


def test_temp_files_of_a_killed_download_are_cleared(server, monkeypatch, cache):
    TALLY["fault cases"] += 1
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0])
    (cache / "mnist").mkdir()
    stale, live = cache / "mnist" / f".{FIRST}.dead", cache / "mnist" / f".{FIRST}.live"
    stale.write_bytes(b"half a file")
    live.write_bytes(b"another process, downloading now")
    old = time.time() - 3 * ds.DOWNLOAD_DEADLINE
    os.utime(stale, (old, old))
    ds.load_real("mnist")
    assert not stale.exists() and live.exists()
    assert (cache / "mnist" / FIRST).stat().st_size == len(td.mnist_files()[0][FIRST])


@pytest.mark.parametrize("allow_download", [True, False])
def test_truncated_cached_file(server, monkeypatch, cache, allow_download):
    TALLY["fault cases"] += 1
    files = td.mnist_files()[0]
    td.serve(server, monkeypatch, "mnist", files)
    ds.load_real("mnist")
    cached = cache / "mnist" / FIRST
    cached.write_bytes(files[FIRST][:100])  # cut short, as by a crash of another program
    if allow_download:
        ds.load_real("mnist")
        assert cached.read_bytes() == files[FIRST] and len(server.requests) == 5
    else:
        with pytest.raises(ds.DatasetUnavailable, match=f"{FIRST} in the cache was corrupt"):
            ds.load_real("mnist", download=False)
        assert not cached.exists()


def test_the_deadline_covers_all_files_of_a_data_set(server, monkeypatch, cache, fresh):
    """Each of MNIST's four files arrives well within the deadline, but not all of them."""
    TALLY["fault cases"] += 1
    td.serve(server, monkeypatch, "mnist", td.mnist_files()[0])
    body, clock = ds._body, [time.monotonic()]  # the downloader's clock: 0.15 s per file

    def slow(url, timeout):
        clock[0] += 0.15
        yield from body(url, timeout)

    fake_time = types.SimpleNamespace(monotonic=lambda: clock[0], time=time.time)
    monkeypatch.setattr(ds, "time", fake_time)
    monkeypatch.setattr(ds, "_body", slow)
    monkeypatch.setattr(ds, "DOWNLOAD_DEADLINE", 0.4)
    with pytest.raises(ds.DatasetUnavailable, match="took longer than 0.4 seconds"):
        ds.load("mnist")
    assert temp_files(cache / "mnist") == []
