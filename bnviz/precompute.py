"""Precomputed scenario results, shipped in assets/precomputed/ so that a cold server shows every
scenario's figures at once instead of after 15-40 s of background jobs.

`python -m bnviz precompute` runs every job of every scenario in this process (one torch thread,
as the app) and writes one gzip-compressed JSON file per scenario plus manifest.json. The app
uses a file only while its fingerprint equals `fingerprint()`; otherwise it logs one warning and
computes the results live, as it would without the file.

What the fingerprint covers (the rule): the source bytes of every module under bnviz/ and
bnviz/scenarios/ (this one included: it defines the file format), plus the public versions of
torch and numpy, except modules that no job can depend on for its numbers:

- bnviz/ui/** (the page; it only draws and schedules jobs),
- bnviz/figures.py (run record -> figure),
- bnviz/plot.py (the plotting kit: how every figure looks, the scenarios' included; the one
  plotting helper that jobs use for their numbers, stride, is in bnviz/series.py, covered),
- bnviz/alttext.py (a figure said in words),
- bnviz/cache.py (where results are kept, not what they are),
- bnviz/__main__.py (the command line).

A new module is covered unless it is added to NOT_RESULTS: forgetting it costs a regeneration,
never a wrong number. Whole scenario modules are hashed, so editing a scenario's figures or text
also asks for a regeneration (a few minutes), which is the price of a simple, safe rule. The
torch version is taken without its local label ('2.13.0+cpu' -> '2.13.0'): the pin admits
either build and bnviz computes on the CPU only.

Bit for bit: jobs are deterministic for given code, versions and thread count, and the files
are written deterministically (no timestamps, gzip mtime 0, fixed key order), so two runs on one
machine give identical bytes. Float results may differ in the last bits on another CPU family
(torch picks vectorised kernels by CPU); the fingerprint does not try to capture that.

Encoding: json.dumps without whitespace, keys in the order the job wrote them (figure code may
iterate over a result's keys, so sorting them could change what a figure draws). NaN and
Infinity are written as Python's json writes them (NaN, Infinity: not strict JSON, but only
Python's json reads these files) and come back as the same floats; floats are written with
repr(), which round-trips exactly. `check_round_trip` refuses a result that would not come
back the same: tuples (they would become lists), non-string keys, numpy or torch values.

Jobs are identified by their label and a digest of repr(job.key), so a job whose arguments
change is not served from an old file. Loaded files are cached per process; every call of
`load` parses the cached text again, so callers get their own objects and can never alter what
another session is shown."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from .scenarios import SCENARIOS

FORMAT = 1
PACKAGE = Path(__file__).resolve().parent
DEFAULT_DIR = PACKAGE.parent / "assets" / "precomputed"
# modules of bnviz/ that cannot change a result (see the docstring)
NOT_RESULTS = ("__main__.py", "alttext.py", "cache.py", "figures.py", "memory.py", "plot.py")
MANIFEST = "manifest.json"
REGENERATE = "python -m bnviz precompute"

log = logging.getLogger(__name__)


# --- what the results depend on -------------------------------------------------------------


def engine_files() -> list[Path]:
    """The modules the fingerprint covers, in a fixed order (see the module docstring)."""
    files = [*PACKAGE.glob("*.py"), *(PACKAGE / "scenarios").glob("*.py")]
    files = [f for f in files if f.relative_to(PACKAGE).as_posix() not in NOT_RESULTS]
    return sorted(files, key=lambda f: f.relative_to(PACKAGE).as_posix())


def _public(version: str) -> str:
    return version.split("+", 1)[0]


def _hash_engine() -> str:
    h = hashlib.sha256(f"bnviz precompute format {FORMAT}\n".encode())
    h.update(f"torch {_public(torch.__version__)}\nnumpy {np.__version__}\n".encode())
    for path in engine_files():
        # line endings normalised, so a Windows checkout hashes the same
        source = path.read_bytes().replace(b"\r\n", b"\n")
        name = path.relative_to(PACKAGE).as_posix().encode()
        h.update(b"%s\0%d\0%s" % (name, len(source), source))
    return h.hexdigest()


_fingerprint: str | None = None  # two threads may both compute it: same value, no harm


def fingerprint() -> str:
    """sha256 over the engine's sources and the torch and numpy versions, computed once per
    process: it describes the code this process imported, not later edits of the files."""
    global _fingerprint
    if _fingerprint is None:
        _fingerprint = _hash_engine()
    return _fingerprint


def key_digest(key) -> str:
    """A short, stable digest of a job's cache key (its function and arguments)."""
    text = repr(key)
    if " at 0x" in text:  # an object without a stable repr: the digest would change every run
        raise ValueError(f"job key has no stable repr: {text}")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- encoding -------------------------------------------------------------------------------


def encode(value) -> bytes:
    """The compact, deterministic JSON of a value (key order kept, NaN allowed)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=True).encode()


def check_round_trip(value, where: str = "result") -> None:
    """Raise ValueError unless json.loads(encode(value)) gives back an equal value of the same
    types and key order (NaN counts as equal to NaN)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: key {k!r} is not a string")
            check_round_trip(v, f"{where}[{k!r}]")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_round_trip(v, f"{where}[{i}]")
    elif value is None or type(value) in (str, int, bool):
        pass
    elif type(value) is float:
        back = json.loads(encode(value))
        if not (back == value or (math.isnan(back) and math.isnan(value))):
            raise ValueError(f"{where}: {value!r} does not survive JSON")
    else:
        raise ValueError(f"{where}: {type(value).__name__} {value!r:.60} is not plain JSON")


def write_gzip(path: Path, payload) -> int:
    """Write payload as gzip-compressed JSON, identical bytes for identical payloads (no
    timestamp, no file name in the header), atomically. Returns the size in bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as f:
        f.write(encode(payload))
    _write_atomic(path, buffer.getvalue())
    return len(buffer.getvalue())


def read_gzip(path: Path):
    with gzip.open(path, "rb") as f:
        return json.loads(f.read())


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def scenario_file(directory: Path, scenario_id: str) -> Path:
    return Path(directory) / f"{scenario_id}.json.gz"


# --- writing --------------------------------------------------------------------------------


def scenario_payload(scenario_id: str, jobs_and_results: Iterable) -> dict:
    """The content of one scenario's file, from (job, result) pairs in the scenario's order."""
    jobs = []
    for job, result in jobs_and_results:
        check_round_trip(result, f"{scenario_id}: {job.label}")
        jobs.append({"label": job.label, "key": key_digest(job.key), "result": result})
    return {
        "format": FORMAT,
        "scenario": scenario_id,
        "fingerprint": fingerprint(),
        "jobs": jobs,
    }


def write_manifest(directory: Path) -> dict:
    """Index every scenario file in the directory (its fingerprint, size, sha256, jobs); no
    timestamps or timings, so it is as reproducible as the files."""
    directory = Path(directory)
    entries = {}
    for path in sorted(directory.glob("*.json.gz")):
        payload = read_gzip(path)
        data = path.read_bytes()
        entries[payload["scenario"]] = {
            "file": path.name,
            "fingerprint": payload["fingerprint"],
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "jobs": len(payload["jobs"]),
        }
    fingerprints = {e["fingerprint"] for e in entries.values()}
    manifest = {
        "format": FORMAT,
        # the engine every file was made with; null if they differ (a partial regeneration)
        "fingerprint": fingerprints.pop() if len(fingerprints) == 1 else None,
        "torch": _public(torch.__version__),
        "numpy": np.__version__,
        "regenerate": REGENERATE,
        "scenarios": entries,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    _write_atomic(directory / MANIFEST, text.encode())
    return manifest


def precompute(
    out_dir: Path | str = DEFAULT_DIR,
    scenario_ids: Iterable[str] | None = None,
    progress: Callable[[str], None] = print,
) -> dict:
    """Run every job of the given scenarios (default: all that have jobs) in this process and
    write their files and the manifest. Returns the manifest."""
    torch.set_num_threads(1)  # as the app: results depend on the thread count
    fingerprint()  # now, before any source file can change under the running jobs
    out_dir = Path(out_dir)
    ids = list(SCENARIOS) if scenario_ids is None else list(scenario_ids)
    unknown = [i for i in ids if i not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario {', '.join(unknown)}; have {', '.join(SCENARIOS)}")
    if scenario_ids is None:  # a full run also drops files of scenarios gone or without jobs
        keep = {scenario_file(out_dir, i).name for i in ids if SCENARIOS[i].jobs()}
        for old in out_dir.glob("*.json.gz"):
            if old.name not in keep:
                progress(f"removing {old}")
                old.unlink()
    for scenario_id in ids:
        jobs = SCENARIOS[scenario_id].jobs()
        if not jobs:
            progress(f"{scenario_id}: no jobs")
            continue
        started, pairs = time.perf_counter(), []
        for i, job in enumerate(jobs, start=1):
            t = time.perf_counter()
            try:
                pairs.append((job, job()))
            except Exception as e:  # nothing is shipped for a scenario with a failing job
                raise RuntimeError(f"{scenario_id}: job {job.label!r} failed: {e}") from e
            seconds = time.perf_counter() - t
            progress(f"{scenario_id} [{i}/{len(jobs)}] {job.label}: {seconds:.1f} s")
        size = write_gzip(scenario_file(out_dir, scenario_id), scenario_payload(scenario_id, pairs))
        seconds = time.perf_counter() - started
        progress(f"{scenario_id}: {len(jobs)} jobs in {seconds:.1f} s, {size / 1024:.0f} kB")
    if _hash_engine() != fingerprint():
        progress(f"warning: bnviz's sources changed during the run; run `{REGENERATE}` again")
    return write_manifest(out_dir)


# --- reading (the app) ----------------------------------------------------------------------

_lock = threading.Lock()
_texts: dict[tuple[Path, str], tuple[dict[str, str], str] | None] = {}


def _read(directory: Path, scenario_id: str) -> tuple[dict[str, str], str] | None:
    """({label: key digest}, the file's JSON text) if the file exists and matches this engine;
    None, with one warning, otherwise."""
    path = scenario_file(directory, scenario_id)
    if not path.exists():
        log.warning("no precomputed results for %s (%s); run `%s`", scenario_id, path, REGENERATE)
        return None
    try:
        with gzip.open(path, "rb") as f:
            text = f.read().decode()
        payload = json.loads(text)
        if payload["format"] != FORMAT or payload["fingerprint"] != fingerprint():
            log.warning(
                "precomputed results for %s are stale (made by another engine); computing "
                "them live. Run `%s` to refresh %s",
                scenario_id,
                REGENERATE,
                path,
            )
            return None
        digests = {j["label"]: j["key"] for j in payload["jobs"]}
    except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
        log.warning("unreadable precomputed results %s (%s); computing them live", path, e)
        return None
    return digests, text


def load(scenario_id: str, directory: Path | str = DEFAULT_DIR) -> dict:
    """{job.key: result} for the scenario's current jobs found in its shipped file, or {} if the
    file is missing, unreadable or stale. The file is read once per process (thread-safe);
    every call returns freshly parsed objects, which the caller may keep or change."""
    cache_key = (Path(directory), scenario_id)
    with _lock:
        if cache_key not in _texts:
            _texts[cache_key] = _read(Path(directory), scenario_id)
        entry = _texts[cache_key]
    if entry is None or scenario_id not in SCENARIOS:
        return {}
    digests, text = entry
    results = {j["label"]: j["result"] for j in json.loads(text)["jobs"]}
    return {
        job.key: results[job.label]
        for job in SCENARIOS[scenario_id].jobs()
        if digests.get(job.label) == key_digest(job.key)
    }


def clear() -> None:
    """Forget the loaded files (tests; or after regenerating in a running process)."""
    with _lock:
        _texts.clear()
