"""Tests for bnviz.datasets on tiny files in the official formats; network only to 127.0.0.1."""

import errno
import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import struct
import tarfile
import tempfile
import threading

import numpy as np
import pytest
from conftest import TALLY, open_app

from bnviz import datasets as ds

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- tiny files in official formats


def idx_bytes(a: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array."""
    return bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def mnist_files():
    """Gzipped IDX files for 5 train and 3 test 28x28 images, plus the arrays."""
    arrays = {
        "train-images-idx3-ubyte.gz": RNG.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": np.array([3, 1, 4, 1, 5], dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": RNG.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.array([9, 2, 6], dtype=np.uint8),
    }
    return {f: gzip.compress(idx_bytes(a), mtime=0) for f, a in arrays.items()}, arrays


class Py2Pickler(pickle._Pickler):
    """Writes pickles as Python 2 did for the official CIFAR-10 batches: every str/bytes as a
    Python-2 'str' (SHORT_BINSTRING/BINSTRING) and numpy.core.multiarray._reconstruct."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        if obj is ds._RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def py2_dumps(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def tar_gz(members: dict[str, bytes]) -> bytes:
    """A .tar.gz with a cifar-10-batches-py/ folder holding the given members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


PLANES = (
    (np.arange(1024) % 256).astype(np.uint8),  # R
    (255 - np.arange(1024) % 256).astype(np.uint8),  # G
    np.full(1024, 7, np.uint8),  # B
)


def cifar_members():
    """Batches of 2 train images each (5 batches) and 3 test images; train image 3 is PLANES."""
    members, xs, ys = {}, [], []
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = 3 if name == "test_batch" else 2
        data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        if i == 1:
            data[1] = np.concatenate(PLANES)
        labels = [(2 * i + j) % 10 for j in range(n)]
        batch = {"batch_label": "batch", "labels": labels, "data": data, "filenames": ["a.png"] * n}
        members[name] = py2_dumps(batch)
        xs.append(data)
        ys.append(labels)
    members["batches.meta"] = py2_dumps({"label_names": list(ds.CLASSES["cifar10"])})
    return members, xs, ys


# ---------------------------------------------------------------- local HTTP server

DRIP, DRIP_BYTES = 0.02, 100


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.files; server.modes[path] makes it misbehave: "stall" (no answer until
    server.release), "truncate" (half the body, then close), "stall_body" (half, then stall),
    "drip" (one byte every DRIP seconds, each well within any read time-out, then close after
    DRIP_BYTES bytes: a client without a total deadline fails after 2 s instead of hanging)."""

    def do_GET(self):
        srv = self.server
        srv.requests.append(self.path)
        mode, body = srv.modes.get(self.path, "ok"), srv.files.get(self.path)
        if mode == "stall":
            srv.release.wait(10)
            return
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drip":
            for i in range(min(len(body), DRIP_BYTES)):
                if srv.release.wait(DRIP):
                    return
                try:
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up
                    return
            return
        if mode in ("truncate", "stall_body"):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if mode == "stall_body":
                srv.release.wait(10)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.modes, srv.requests, srv.release = {}, {}, [], threading.Event()
    threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True).start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BNVIZ_DATA_DIR", str(tmp_path))
    return tmp_path


def serve(server, monkeypatch, name, files, sha=None, size=None):
    """Serve files and point SOURCES[name] at them with their real (or given) hash and size."""
    table = {}
    for f, data in files.items():
        server.files[f"/{name}/{f}"] = data
        real = hashlib.sha256(data).hexdigest()
        table[f] = (f"{server.url}/{name}/{f}", sha or real, size or len(data))
    monkeypatch.setitem(ds.SOURCES, name, table)
    return table


# ---------------------------------------------------------------- parsing


def test_parse_idx_reads_values_and_shape():
    a = RNG.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    out = ds.parse_idx(idx_bytes(a))
    assert out.dtype == np.uint8 and out.shape == (4, 28, 28)
    np.testing.assert_array_equal(out, a)
    np.testing.assert_array_equal(
        ds.parse_idx(idx_bytes(np.array([7, 0, 255], np.uint8))), [7, 0, 255]
    )


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not an IDX"),
        (b"\x00\x00", "not an IDX"),
        (b"\x00\x00\x08", "not an IDX"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "not an IDX"),  # bad magic
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x05\x05\x05\x05", "not an IDX"),  # float32
        (b"\x00\x00\x08\x00\x05", "not an IDX"),  # zero dimensions
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated"),  # header cut short
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", "implies 11"),  # a byte missing
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03\x04", "implies 11"),  # one too many
    ],
)
def test_parse_idx_rejects_malformed(data, message):
    with pytest.raises(ValueError, match=message):
        ds.parse_idx(data)


def test_py2_pickles_look_like_the_official_ones():
    raw = cifar_members()[0]["data_batch_1"]
    assert b"_codecs" not in raw and b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    assert pickle.SHORT_BINSTRING + b"\x04data" in raw


def test_read_cifar10_tarball_values_labels_and_channel_order(tmp_path):
    members, xs, ys = cifar_members()
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(tar_gz(members))
    x_train, y_train, x_test, y_test = ds.read_cifar10_tarball(path)
    assert x_train.shape == (10, 3, 32, 32) and x_test.shape == (3, 3, 32, 32)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64 and y_test.dtype == np.int64
    np.testing.assert_array_equal(y_train, np.concatenate(ys[:5]))
    np.testing.assert_array_equal(y_test, ys[5])
    np.testing.assert_array_equal(x_test.reshape(3, -1), xs[5])
    img = x_train[3]  # second image of data_batch_2
    for channel, plane in enumerate(PLANES):
        np.testing.assert_array_equal(img[channel], plane.reshape(32, 32))
    np.testing.assert_array_equal(img[0, 0], np.arange(32))  # rows are row-major


def test_read_cifar10_tarball_missing_batch(tmp_path):
    members = cifar_members()[0]
    del members["data_batch_4"]
    path = tmp_path / "c.tar.gz"
    path.write_bytes(tar_gz(members))
    with pytest.raises(ValueError, match="data_batch_4"):
        ds.read_cifar10_tarball(path)


class Evil:
    def __init__(self, call, arg):
        self.call, self.arg = call, arg

    def __reduce__(self):
        return self.call, (self.arg,)


@pytest.mark.parametrize("call", [os.system, eval, np.load])
def test_restricted_unpickler_refuses_other_globals(tmp_path, call):
    marker = tmp_path / "pwned"
    arg = {os.system: f"touch {marker}", eval: f"open({str(marker)!r}, 'w')", np.load: str(marker)}
    payload = pickle.dumps({b"data": Evil(call, arg[call])}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        ds._restricted_loads(payload)
    assert not marker.exists()


def test_hostile_batch_in_tarball_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    members = cifar_members()[0]
    members["test_batch"] = pickle.dumps(Evil(os.system, f"touch {marker}"), protocol=2)
    path = tmp_path / "c.tar.gz"
    path.write_bytes(tar_gz(members))
    with pytest.raises(ValueError, match="refused"):
        ds.read_cifar10_tarball(path)
    assert not marker.exists()


def test_make_dataset_stats_read_only_and_validation():
    x = RNG.integers(0, 256, (6, 3, 4, 5), dtype=np.uint8)
    d = ds.make_dataset("t", x, [0, 1, 2, 0, 1, 2], x[:2], np.array([1, 2], np.uint8), ["a", "b"])
    np.testing.assert_allclose(d.mean, (x / 255).mean(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(d.std, (x / 255).std(axis=(0, 2, 3)), atol=1e-12)
    assert d.y_train.dtype == np.int64 and d.y_test.dtype == np.int64
    assert d.classes == ("a", "b") and isinstance(d.mean[0], float)
    for a in (d.x_train, d.y_train, d.x_test, d.y_test):
        with pytest.raises(ValueError):
            a[0] = 1
    with pytest.raises(ValueError):
        ds.make_dataset("t", x.astype(np.int16), [0] * 6, x, [0] * 6, ["a"])
    with pytest.raises(ValueError):
        ds.make_dataset("t", x, [0] * 5, x, [0] * 6, ["a"])
    with pytest.raises(ValueError):
        ds.make_dataset("t", x[:, :1], [0] * 6, x, [0] * 6, ["a"])


def test_data_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("BNVIZ_DATA_DIR", str(tmp_path / "d"))
    assert ds.data_dir() == tmp_path / "d"
    monkeypatch.delenv("BNVIZ_DATA_DIR")
    assert ds.data_dir() == ds.Path.home() / ".cache" / "bnviz"


def test_pinned_sources_are_well_formed():
    assert set(ds.SOURCES) == set(ds.REAL_DATASETS)
    pins = [pin for table in ds.SOURCES.values() for pin in table.values()]
    assert len(pins) == 9 and len({sha for _, sha, _ in pins}) == 9
    for url, sha, size in pins:
        assert len(sha) == 64 and int(sha, 16) >= 0 and size > 4000
        assert url.startswith(
            ("https://ossci-datasets.s3", "http://fashion-mnist.s3", "https://www.cs")
        )
    assert ds.SOURCES["cifar10"]["cifar-10-python.tar.gz"][2] == 170498071


def test_unknown_name():
    with pytest.raises(ValueError, match="mnist, fashion_mnist, cifar10"):
        ds.load_real("imagenet")


# ---------------------------------------------------------------- load_real end to end


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_load_real_mnists_end_to_end_and_cached(server, monkeypatch, cache, name):
    files, arrays = mnist_files()
    serve(server, monkeypatch, name, files)
    d = ds.load_real(name)
    assert d.name == name and d.classes == ds.CLASSES[name] and len(d.classes) == 10
    assert d.x_train.shape == (5, 1, 28, 28) and d.x_test.shape == (3, 1, 28, 28)
    np.testing.assert_array_equal(d.x_train[:, 0], arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(d.y_test, [9, 2, 6])
    assert d.y_train.dtype == np.int64
    assert d.mean[0] == pytest.approx(arrays["train-images-idx3-ubyte.gz"].mean() / 255)
    assert sorted(p.name for p in (cache / name).iterdir()) == sorted(files)
    assert len(server.requests) == 4
    again = ds.load_real(name, download=False)
    assert len(server.requests) == 4
    np.testing.assert_array_equal(again.x_test, d.x_test)


def test_load_real_cifar10_end_to_end_and_cached(server, monkeypatch, cache):
    members, xs, ys = cifar_members()
    serve(server, monkeypatch, "cifar10", {"cifar-10-python.tar.gz": tar_gz(members)})
    d = ds.load_real("cifar10", timeout=5)
    assert d.classes[0] == "airplane" and d.classes[-1] == "truck"
    assert d.x_train.shape == (10, 3, 32, 32) and len(d.mean) == 3 and len(d.std) == 3
    np.testing.assert_array_equal(d.x_train[3, 2], PLANES[2].reshape(32, 32))
    np.testing.assert_array_equal(d.y_test, ys[5])
    ds.load_real("cifar10")
    assert server.requests == ["/cifar10/cifar-10-python.tar.gz"]


def test_load_real_root_argument(server, monkeypatch, cache, tmp_path):
    serve(server, monkeypatch, "mnist", mnist_files()[0])
    ds.load_real("mnist", root=tmp_path / "elsewhere")
    assert len(list((tmp_path / "elsewhere" / "mnist").iterdir())) == 4


def test_hostile_pickle_with_pinned_hash_fails_cleanly(server, monkeypatch, cache, tmp_path):
    marker = tmp_path / "pwned"
    members = cifar_members()[0]
    members["data_batch_1"] = pickle.dumps(Evil(os.system, f"touch {marker}"), protocol=2)
    serve(server, monkeypatch, "cifar10", {"cifar-10-python.tar.gz": tar_gz(members)})
    with pytest.raises(ds.DatasetUnavailable, match="could not be read"):
        ds.load_real("cifar10")
    assert not marker.exists()


# ---------------------------------------------------------------- failures


def assert_no_files(folder):
    assert not folder.exists() or list(folder.iterdir()) == []


def test_checksum_mismatch_discards_file(server, monkeypatch, cache):
    TALLY["fault cases"] += 1
    serve(server, monkeypatch, "mnist", mnist_files()[0], sha="0" * 64)
    with pytest.raises(ds.DatasetUnavailable, match="checksum") as err:
        ds.load_real("mnist")
    assert "MNIST is not available" in str(err.value) and "discarded" in str(err.value)
    assert_no_files(cache / "mnist")


@pytest.mark.parametrize("case", ["truncated", "too_big", "too_small"])
def test_wrong_size_download_discards_file(server, monkeypatch, cache, case):
    TALLY["fault cases"] += 1
    files = mnist_files()[0]
    table = serve(server, monkeypatch, "mnist", files)
    first = "train-images-idx3-ubyte.gz"
    url, sha, size = table[first]
    if case == "truncated":
        server.modes[f"/mnist/{first}"] = "truncate"
    else:
        table[first] = (url, sha, size + (-10 if case == "too_big" else 10))
    with pytest.raises(ds.DatasetUnavailable, match="incomplete or wrong"):
        ds.load_real("mnist")
    assert_no_files(cache / "mnist")


def test_server_unreachable(monkeypatch, cache):
    TALLY["fault cases"] += 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nobody listens there
    url = f"http://127.0.0.1:{port}/x.gz"
    monkeypatch.setitem(ds.SOURCES, "mnist", {"x.gz": (url, "0" * 64, 10)})
    with pytest.raises(ds.DatasetUnavailable) as err:
        ds.load_real("mnist", timeout=2)
    msg = str(err.value)
    assert "no internet connection" in msg and url in msg and ds.OFFLINE_HINT in msg
    assert_no_files(cache / "mnist")


def test_http_error(server, monkeypatch, cache):
    TALLY["fault cases"] += 1
    monkeypatch.setitem(ds.SOURCES, "mnist", {"x.gz": (f"{server.url}/nope", "0" * 64, 10)})
    with pytest.raises(ds.DatasetUnavailable, match="HTTP 404"):
        ds.load_real("mnist")
    assert_no_files(cache / "mnist")


@pytest.mark.parametrize("mode", ["stall", "stall_body"])
def test_timeout(server, monkeypatch, cache, mode):
    TALLY["fault cases"] += 1
    serve(server, monkeypatch, "mnist", mnist_files()[0])
    server.modes["/mnist/train-images-idx3-ubyte.gz"] = mode
    with pytest.raises(ds.DatasetUnavailable, match="no answer within 0.3 seconds"):
        ds.load_real("mnist", timeout=0.3)
    assert_no_files(cache / "mnist")


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_unwritable_cache_at_temp_file_creation(server, monkeypatch, cache, code):
    TALLY["fault cases"] += 1
    serve(server, monkeypatch, "mnist", mnist_files()[0])

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(ds.tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(ds.DatasetUnavailable, match="BNVIZ_DATA_DIR") as err:
        ds.load_real("mnist")
    assert os.strerror(code) in str(err.value) and str(cache / "mnist") in str(err.value)


def test_disk_full_while_writing_removes_temp_file(server, monkeypatch, cache):
    TALLY["fault cases"] += 1
    serve(server, monkeypatch, "mnist", mnist_files()[0])
    real, created = tempfile.NamedTemporaryFile, []

    class FullDisk:
        def __init__(self, *args, **kwargs):
            self.file = real(*args, **kwargs)
            self.name = self.file.name
            created.append(self.name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self):
            pass

    monkeypatch.setattr(ds.tempfile, "NamedTemporaryFile", FullDisk)
    with pytest.raises(ds.DatasetUnavailable, match=os.strerror(errno.ENOSPC)):
        ds.load_real("mnist")
    assert created and not any(os.path.exists(p) for p in created)
    assert_no_files(cache / "mnist")


def test_cache_path_is_a_file(server, monkeypatch, tmp_path):
    TALLY["fault cases"] += 1
    serve(server, monkeypatch, "mnist", mnist_files()[0])
    (tmp_path / "blocker").write_text("not a folder")
    monkeypatch.setenv("BNVIZ_DATA_DIR", str(tmp_path / "blocker"))
    with pytest.raises(ds.DatasetUnavailable, match="Could not save .* BNVIZ_DATA_DIR"):
        ds.load_real("mnist")
    assert server.requests == []


def refuse_as_a_user(monkeypatch) -> None:
    """Creating a file in a folder without write permission fails with EACCES, as it does for
    any user but root (the kernel lets root write anywhere): the test runs as root too."""
    real_open = os.open

    def user_open(path, flags, *args, **kwargs):
        folder = os.path.dirname(os.path.abspath(os.fspath(path)))
        if flags & os.O_CREAT and not os.stat(folder).st_mode & 0o200:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", user_open)


def test_read_only_cache_folder(server, monkeypatch, cache):
    TALLY["fault cases"] += 1
    serve(server, monkeypatch, "mnist", mnist_files()[0])
    (cache / "mnist").mkdir()
    (cache / "mnist").chmod(0o500)
    refuse_as_a_user(monkeypatch)
    try:
        with pytest.raises(ds.DatasetUnavailable, match="BNVIZ_DATA_DIR") as err:
            ds.load_real("mnist")
        assert os.strerror(errno.EACCES) in str(err.value), err.value
    finally:
        (cache / "mnist").chmod(0o700)


def test_a_link_to_a_real_data_set_never_reaches_the_network():
    """conftest's guard: offline, a link to cifar10 falls back to 'shapes' and says why."""
    at = open_app(dataset="cifar10")
    warnings = " ".join(w.value for w in at.warning)
    assert "CIFAR-10 is not available" in warnings and "no internet connection" in warnings
    assert ds.OFFLINE_HINT in warnings or "Showing the built-in 'shapes'" in warnings
    assert at.session_state["session"].run.config.dataset == "shapes"


@pytest.mark.parametrize("damage", ["wrong bytes", "truncated"])
def test_corrupt_cached_file_is_detected_and_replaced(server, monkeypatch, cache, damage):
    TALLY["fault cases"] += 1
    serve(server, monkeypatch, "mnist", mnist_files()[0])
    ds.load_real("mnist")
    cached = cache / "mnist" / "t10k-labels-idx1-ubyte.gz"
    good = cached.read_bytes()
    if damage == "wrong bytes":
        cached.write_bytes(b"\0" * len(good))  # same size, wrong content
    else:
        cached.write_bytes(good[: len(good) // 2])  # cut short, as by a crash or a full disk
    with pytest.raises(ds.DatasetUnavailable, match="corrupt") as err:
        ds.load_real("mnist", download=False)
    assert "MNIST is not available" in str(err.value)
    assert not cached.exists() and len(server.requests) == 4
    d = ds.load_real("mnist")
    assert cached.read_bytes() == good and len(server.requests) == 5
    np.testing.assert_array_equal(d.y_test, [9, 2, 6])


def test_download_false_with_empty_cache(server, monkeypatch, cache):
    TALLY["fault cases"] += 1
    serve(server, monkeypatch, "mnist", mnist_files()[0])
    with pytest.raises(ds.DatasetUnavailable, match="not in the cache"):
        ds.load_real("mnist", download=False)
    assert server.requests == []


def test_download_function_directly(server, tmp_path):
    data = b"hello world" * 100
    server.files["/f"] = data
    dest = tmp_path / "sub" / "f.bin"
    sha = hashlib.sha256(data).hexdigest()
    assert ds.download(f"{server.url}/f", dest, sha, timeout=5) == dest
    assert dest.read_bytes() == data and os.listdir(dest.parent) == ["f.bin"]
    with pytest.raises(ds.DatasetUnavailable, match="checksum"):
        ds.download(f"{server.url}/f", tmp_path / "g.bin", "1" * 64)
    assert not (tmp_path / "g.bin").exists()


def test_shapes_are_kept_in_the_cache_folder_and_a_bad_copy_is_replaced(monkeypatch, tmp_path):
    monkeypatch.setenv("BNVIZ_DATA_DIR", str(tmp_path))
    generated = ds._shapes_arrays()  # generated (once per process) and written
    (copy,) = tmp_path.glob("shapes-*.npz")
    calls = []
    monkeypatch.setattr(ds.shapes, "load", lambda: calls.append(1) or generated)
    read = ds._shapes_arrays()
    assert calls == [] and all(np.array_equal(a, b) for a, b in zip(read, generated))
    assert not any(a.flags.writeable for a in read)
    copy.write_bytes(copy.read_bytes()[:1000])  # truncated
    assert all(np.array_equal(a, b) for a, b in zip(ds._shapes_arrays(), generated))
    assert calls == [1] and ds._shapes_arrays() is not None and calls == [1]  # rewritten
    np.savez(copy, x_train=np.zeros(3))  # wrong contents
    ds._shapes_arrays()
    assert calls == [1, 1]


def test_shapes_without_a_writable_cache_folder(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("BNVIZ_DATA_DIR", str(blocker / "cache"))
    x_train, *_ = ds._shapes_arrays()
    assert x_train.shape[0] == ds.shapes.N_TRAIN and blocker.read_text() == "not a folder"
