"""Real image data sets (MNIST, Fashion-MNIST, CIFAR-10): download, verify, parse.

The MNISTs come as four gzipped IDX files each (big-endian header, then raw uint8 pixels or
labels); CIFAR-10 comes as the official ``cifar-10-python.tar.gz``, whose batches are Python-2
pickles of dicts holding an N x 3072 uint8 array (R, G, B planes of 32x32) and a label list.
Downloads are cached as ``data_dir()/<name>/<file>`` (``$BNVIZ_DATA_DIR``, default
``~/.cache/bnviz``). Every file, fresh or cached, is checked against a pinned size and SHA-256
before it is parsed; a bad file is deleted, and nothing is unpickled before that check passes
(and even then only with an unpickler that admits the three numpy globals arrays need).
Every failure (network, time limit, checksum, a cache folder that is read-only, full or
unreadable) raises DatasetUnavailable with a message for the teacher, and leaves no partial file.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import gzip
import hashlib
import http.client
import io
import os
import pickle
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import shapes
from .config import DATASETS


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images (uint8, N x C x H x W), int64 labels, class names and per-channel mean/std."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


class DatasetUnavailable(RuntimeError):
    """Clear, user-facing reason a data set could not be loaded."""


REAL_DATASETS = tuple(name for name in DATASETS if name != "shapes")  # downloaded
TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
CLASSES = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"),
}  # fmt: skip
_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_CIFAR_FILE = "cifar-10-python.tar.gz"


def _idx_table(base_url: str, pins: list[tuple[str, int]]) -> dict[str, tuple[str, str, int]]:
    """Map each IDX file name to (url, sha256, size)."""
    return {f: (base_url + f, sha, n) for f, (sha, n) in zip(_IDX_FILES, pins, strict=True)}


# file name -> (url, sha256, size in bytes), as pinned by TensorFlow Datasets and Keras.
SOURCES: dict[str, dict[str, tuple[str, str, int]]] = {
    "mnist": _idx_table(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        [
            ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
            ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
            ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
            ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
        ],
    ),
    "fashion_mnist": _idx_table(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        [
            ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
            ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
            ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
            ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
        ],
    ),
    "cifar10": {
        _CIFAR_FILE: (
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            170498071,
        ),
    },
}
OFFLINE_HINT = "The built-in 'shapes' data set works offline."
_CHUNK = 1 << 20
TIMEOUT = 30.0  # seconds one network read may wait for data
# Seconds the download of one data set (all its files) may take in all, so that a server sending
# a byte at a time cannot hold a session forever: CIFAR-10's 170 MB need about 2.3 Mbit/s.
DOWNLOAD_DEADLINE = 600.0


def data_dir() -> Path:
    """Cache folder: $BNVIZ_DATA_DIR, default ~/.cache/bnviz."""
    return Path(os.environ.get("BNVIZ_DATA_DIR") or Path.home() / ".cache" / "bnviz").expanduser()


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std of x / 255, from pixel-value histograms (low memory)."""
    counts = np.zeros((x.shape[1], 256), dtype=np.int64)
    for start in range(0, len(x), 2048):
        block = x[start : start + 2048]
        for c in range(x.shape[1]):
            counts[c] += np.bincount(block[:, c].ravel(), minlength=256)
    values = np.arange(256) / 255.0
    mean = counts @ values / counts.sum(axis=1)
    var = counts @ values**2 / counts.sum(axis=1) - mean**2
    return tuple(float(m) for m in mean), tuple(float(s) for s in np.sqrt(np.maximum(var, 0.0)))


def make_dataset(name, x_train, y_train, x_test, y_test, classes) -> Dataset:
    """Validate the arrays, compute mean/std of x_train / 255, make the arrays read-only."""
    arrays = []
    for x, y in ((x_train, y_train), (x_test, y_test)):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != np.uint8 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"expected uint8 images and integer labels, got {x.dtype}, {y.dtype}")
        y = y.astype(np.int64, copy=False)
        if x.ndim != 4 or y.shape != (len(x),):
            raise ValueError(f"need N x C x H x W images and N labels, got {x.shape}, {y.shape}")
        arrays += [x, y]
    if len(arrays[0]) == 0 or arrays[0].shape[1:] != arrays[2].shape[1:]:
        raise ValueError(f"bad train/test image shapes {arrays[0].shape}, {arrays[2].shape}")
    for a in arrays:
        a.flags.writeable = False
    mean, std = _channel_stats(arrays[0])
    return Dataset(name, *arrays, classes=tuple(classes), mean=mean, std=std)


def parse_idx(data: bytes) -> np.ndarray:
    """Parse an uncompressed IDX file of unsigned bytes (magic 00 00 08 NDIM, big-endian dims)."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] == 0:
        raise ValueError(f"not an IDX file of unsigned bytes (header {data[:4].hex()})")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError("IDX header is truncated")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise ValueError(f"IDX file has {len(data)} bytes, its header {dims} implies {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


_RECONSTRUCT = np.zeros(1, np.uint8).__reduce__()[0]  # numpy(._)core.multiarray._reconstruct
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except those needed to rebuild numpy arrays."""

    def find_class(self, module, name):
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} from a pickle") from None


def _restricted_loads(data: bytes):
    """Unpickle (Python-2 style, bytes keys) admitting only numpy array reconstruction."""
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()


def _cifar_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one CIFAR batch pickle into (N x 3 x 32 x 32 uint8, N int64)."""
    try:
        batch = _restricted_loads(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise ValueError(f"{name} is not a valid CIFAR-10 batch: {e}") from e
    x = batch.get(b"data") if isinstance(batch, dict) else None
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2):
        raise ValueError(f"{name} has no N x 3072 uint8 'data' array")
    y = np.asarray(batch.get(b"labels"), dtype=np.int64)
    if x.shape[1] != 3072 or y.shape != (len(x),):
        raise ValueError(f"{name}: data {x.shape} and labels {y.shape} do not fit")
    return x.reshape(-1, 3, 32, 32), y


def read_cifar10_tarball(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read (x_train, y_train, x_test, y_test) from cifar-10-python.tar.gz, one streamed pass."""
    wanted = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    found = {}
    with tarfile.open(path, "r|gz") as tar:
        for member in tar:
            folder, _, base = member.name.removeprefix("./").rpartition("/")
            if folder == "cifar-10-batches-py" and base in wanted and member.isfile():
                found[base] = _cifar_batch(tar.extractfile(member).read(), base)
    if missing := [w for w in wanted if w not in found]:
        raise ValueError(f"CIFAR-10 archive lacks {', '.join(missing)}")
    train = [found[w] for w in wanted[:5]]
    x_test, y_test = found["test_batch"]
    return (
        np.concatenate([x for x, _ in train]),
        np.concatenate([y for _, y in train]),
        x_test,
        y_test,
    )


def _sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _show(path: Path) -> str:
    """A path for a message: the home folder as ~ (shorter, and no user name)."""
    try:
        return str(Path("~") / Path(path).relative_to(Path.home()))
    except (ValueError, RuntimeError, KeyError):
        return str(path)


def _duration(seconds: float) -> str:
    """Seconds as a teacher would say them: '0.5 seconds', '10 minutes'."""
    return f"{seconds / 60:g} minutes" if seconds >= 120 else f"{seconds:g} seconds"


def _disk_error(folder: Path, e: OSError, action: str = "save a file in") -> DatasetUnavailable:
    """Error for a cache folder that cannot be written (read-only, disk full, ...)."""
    why = e.strerror or type(e).__name__
    where = f"Could not {action} the cache folder {_show(folder)}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DatasetUnavailable(
            f"{where}: the disk is full ({why}). Free some disk space, or set BNVIZ_DATA_DIR "
            "to a folder on a disk with room."
        )
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return DatasetUnavailable(
            f"{where}: it is read-only ({why}). Set BNVIZ_DATA_DIR to a writable folder."
        )
    return DatasetUnavailable(
        f"{where} ({why}). Set BNVIZ_DATA_DIR to a writable folder with free space."
    )


def _read_error(path: Path, e: OSError) -> DatasetUnavailable:
    """Error for a cached file that exists but cannot be read."""
    return DatasetUnavailable(
        f"Could not read {path.name} in the cache folder {_show(path.parent)} "
        f"({e.strerror or type(e).__name__}). Delete that folder, or set BNVIZ_DATA_DIR to "
        "another folder, and try again."
    )


def _network_reason(e: Exception, timeout: float) -> str:
    """Plain-language reason for a failed HTTP transfer."""
    if isinstance(e, urllib.error.HTTPError):
        return f"the server answered HTTP {e.code} {e.reason}"
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} seconds (slow or missing internet connection)"
    if isinstance(e, http.client.HTTPException | ConnectionResetError):
        return f"the connection broke off ({reason!r})"
    return f"no internet connection, or the server cannot be reached ({reason})"


def _network_error(url: str, why: str) -> DatasetUnavailable:
    """Error for a download that failed on the way (the cache folder is not to blame)."""
    return DatasetUnavailable(f"Could not download {url}: {why}. Try again later. {OFFLINE_HINT}")


def _body(url: str, timeout: float):
    """Yield the body of url as it arrives; network faults raise DatasetUnavailable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            # read1: whatever has arrived, with at most one socket read, so that the caller
            # sees time pass even when a server drips one byte at a time.
            while chunk := response.read1(_CHUNK):
                yield chunk
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise _network_error(url, _network_reason(e, timeout)) from e


def _transfer(url: str, out, timeout: float, size: int | None, deadline: float):
    """Stream url into the open file `out`, stopping past `size` bytes; returns (sha256
    object, bytes received). Still downloading at time.monotonic() `deadline` raises
    DatasetUnavailable, a failed write OSError."""
    digest, n = hashlib.sha256(), 0
    with contextlib.closing(_body(url, timeout)) as body:
        for chunk in body:
            if time.monotonic() > deadline:
                raise _network_error(
                    url,
                    f"the download took longer than {_duration(DOWNLOAD_DEADLINE)} (a very "
                    "slow connection); the partial file was discarded",
                )
            n += len(chunk)
            if size is not None and n > size:
                break
            digest.update(chunk)
            out.write(chunk)
    return digest, n


def _remove(path: str | Path) -> None:
    """Delete a file if it is there; a failure here must not hide the error being reported."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


def _remove_stale_temps(dest: Path) -> None:
    """Delete temporary files left beside dest by a download whose process was killed (one
    still running writes its file at least once per deadline)."""
    too_old = time.time() - 2 * DOWNLOAD_DEADLINE
    try:
        for path in dest.parent.glob(f".{glob.escape(dest.name)}.*"):
            if path.stat().st_mtime < too_old:
                path.unlink()
    except OSError:
        pass


def download(
    url: str,
    dest: Path,
    sha256: str,
    timeout: float | None = None,
    *,
    size: int | None = None,
    deadline: float | None = None,
) -> Path:
    """Fetch url to dest via a temporary file, checking size and SHA-256; never leaves junk.
    Each network read waits at most `timeout` seconds (default TIMEOUT); the download ends
    at time.monotonic() `deadline` (default DOWNLOAD_DEADLINE seconds from now)."""
    dest, timeout = Path(dest), TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + DOWNLOAD_DEADLINE if deadline is None else deadline
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(dest)
        tmp = tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", delete=False)
    except OSError as e:
        raise _disk_error(dest.parent, e) from e
    try:
        try:
            with tmp:
                digest, n = _transfer(url, tmp, timeout, size, deadline)
                tmp.flush()
                os.fsync(tmp.fileno())  # the data is on disk before its name is
        except OSError as e:  # write, flush, fsync or close
            raise _disk_error(dest.parent, e) from e
        if size is not None and n != size:
            raise DatasetUnavailable(
                f"The download of {url} was incomplete or wrong: expected {size} bytes, got "
                f"{'more' if n > size else n}; the file was discarded. Please try again."
            )
        if (actual := digest.hexdigest()) != sha256.lower():
            raise DatasetUnavailable(
                f"The download of {url} failed its checksum test: expected SHA-256 {sha256}, "
                f"got {actual}; the file was discarded. Please try again later."
            )
        try:
            os.replace(tmp.name, dest)
        except OSError as e:
            raise _disk_error(dest.parent, e) from e
    except BaseException:
        _remove(tmp.name)
        raise
    return dest


def _fetch(
    url: str,
    path: Path,
    sha256: str,
    size: int,
    allow_download: bool,
    timeout: float,
    deadline: float,
):
    """Return path to a verified copy of the file, re-downloading a missing or corrupt one."""
    try:
        cached = path.exists()
        if cached and path.stat().st_size == size and _sha256_file(path) == sha256:
            return path
    except OSError as e:
        raise _read_error(path, e) from e
    problem = "is not in the cache"
    if cached:
        problem = "in the cache was corrupt (wrong size or checksum) and has been deleted"
        try:
            path.unlink()
        except OSError as e:
            raise _disk_error(path.parent, e, "delete a corrupt file from") from e
    if not allow_download:
        raise DatasetUnavailable(
            f"{path.name} {problem} ({_show(path.parent)}), and downloading is off. {OFFLINE_HINT}"
        )
    return download(url, path, sha256, timeout, size=size, deadline=deadline)


def load_real(
    name: str, root: Path | None = None, download: bool = True, timeout: float | None = None
) -> Dataset:
    """Load MNIST, Fashion-MNIST or CIFAR-10 from the cache, downloading what is missing
    (`timeout`: seconds one network read may wait, default TIMEOUT)."""
    if name not in REAL_DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(REAL_DATASETS)}")
    timeout = TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + DOWNLOAD_DEADLINE  # for all of the data set's files
    folder = (Path(root) if root is not None else data_dir()) / name
    try:
        paths = {
            f: _fetch(url, folder / f, sha, size, download, timeout, deadline)
            for f, (url, sha, size) in SOURCES[name].items()
        }
    except DatasetUnavailable as e:
        raise DatasetUnavailable(f"{TITLES[name]} is not available. {e}") from e
    try:
        if name == "cifar10":
            arrays = read_cifar10_tarball(paths[_CIFAR_FILE])
        else:
            x_tr, y_tr, x_te, y_te = (
                parse_idx(gzip.decompress(paths[f].read_bytes())) for f in _IDX_FILES
            )
            arrays = (x_tr[:, None], y_tr, x_te[:, None], y_te)
        return make_dataset(name, *arrays, CLASSES[name])
    except (ValueError, OSError, EOFError, tarfile.TarError, zlib.error) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise DatasetUnavailable(
            f"{TITLES[name]} is not available. Its files in {_show(folder)} could not be read "
            f"({why}); delete that folder and try again."
        ) from e


def _shapes_arrays() -> tuple[np.ndarray, ...]:
    """The built-in data set, from a copy in the cache folder when there is one (generating it
    takes about a second, a quarter of a cold start). The file name carries a digest of the
    generator's source, so a changed generator never reads an old copy; a copy that cannot be
    read or does not fit is replaced, and a folder that cannot be written is left alone."""
    digest = hashlib.sha256(Path(shapes.__file__).read_bytes()).hexdigest()[:16]
    path = data_dir() / f"shapes-{digest}.npz"
    image = (1, shapes.SIZE, shapes.SIZE)
    expected = {  # name: (shape, dtype)
        "x_train": ((shapes.N_TRAIN, *image), np.uint8),
        "y_train": ((shapes.N_TRAIN,), np.int64),
        "x_test": ((shapes.N_TEST, *image), np.uint8),
        "y_test": ((shapes.N_TEST,), np.int64),
    }
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = tuple(f[name] for name in expected)
        if all((a.shape, a.dtype) == e for a, e in zip(arrays, expected.values())):
            for a in arrays:
                a.flags.writeable = False
            return arrays
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # missing, truncated or foreign: generate it again
    arrays = shapes.load()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".shapes-", suffix=".npz")
    except OSError:
        return arrays  # a read-only cache folder: generate each time
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **dict(zip(expected, arrays)))
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
    return arrays


_loaded: dict[str, Dataset] = {}
# One lock per data set: a slow download of one never holds up loading another, and two
# sessions asking for the same one load it once.
_load_locks = {name: threading.Lock() for name in DATASETS}


def load(name: str) -> Dataset:
    """Any data set by name, loaded once per process and shared (its arrays are read-only).
    A failure is not remembered: the next call tries again."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    with _load_locks[name]:
        if name not in _loaded:
            if name == "shapes":
                _loaded[name] = make_dataset(name, *_shapes_arrays(), shapes.CLASSES)
            else:
                _loaded[name] = load_real(name)
        return _loaded[name]
