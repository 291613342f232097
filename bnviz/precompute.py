"""Precomputed scenario results, shipped in assets/precomputed/ so that a cold server shows every
scenario's figures at once instead of after minutes of background jobs.

`python -m bnviz precompute` runs the jobs of every scenario whose file is missing or stale, in
`--jobs N` processes (one torch thread each, as the app), and writes one gzip-compressed JSON
file per scenario plus manifest.json. The app uses a file only while its fingerprint equals
`fingerprint(scenario_id)`; otherwise it logs one warning and computes the results live, as it
would without the file.

What a scenario's fingerprint covers (the rule): the public versions of torch and numpy; the
engine, i.e. the source bytes of every module directly under bnviz/ except those that no job
can depend on for its numbers (NOT_RESULTS: the command line, figures, the plotting kit, text
alternatives, the results cache, memory figures, the homework notebooks' writer); and the
scenario's own experiment code: the modules that define its jobs' functions
(bnviz/experiments/<name>.py) and the bnviz.experiments modules they import, transitively. Not
covered: bnviz/scenarios/ (a scenario's labels, text, verdicts and figures: they read results,
they do not make them) and bnviz/ui/. So editing one scenario's text changes no file; editing
its experiments makes only its own file stale; editing the engine makes all of them stale. A
job whose arguments change is caught by its key digest (below), whatever module lists it.

A new engine module is covered unless it is added to NOT_RESULTS: forgetting it costs a
regeneration, never a wrong number. The torch version is taken without its local label
('2.13.0+cpu' -> '2.13.0'): the pin admits either build and bnviz computes on the CPU only.

Bit for bit: jobs are deterministic for given code, versions and thread count (each worker
process uses one thread, so `--jobs N` gives the same numbers as one process), and the files
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

import ast
import gzip
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

from .scenarios import SCENARIOS

FORMAT = 2  # 2: one fingerprint per scenario
PACKAGE = Path(__file__).resolve().parent
EXPERIMENTS = f"{PACKAGE.name}.experiments"
DEFAULT_DIR = PACKAGE.parent / "assets" / "precomputed"
# modules of bnviz/ that cannot change a result (see the docstring)
NOT_RESULTS = (
    "__main__.py",
    "alttext.py",
    "cache.py",
    "figures.py",
    "memory.py",
    "notebook.py",
    "plot.py",
    "runtree.py",
)
MANIFEST = "manifest.json"
REGENERATE = "python -m bnviz precompute"

log = logging.getLogger(__name__)


# --- what the results depend on -------------------------------------------------------------


def engine_files() -> list[Path]:
    """The engine modules every fingerprint covers, in a fixed order (see the module docstring)."""
    files = [f for f in PACKAGE.glob("*.py") if f.name not in NOT_RESULTS]
    return sorted(files, key=lambda f: f.name)


def _module_file(module: str) -> Path:
    """bnviz.experiments.high_lr -> .../bnviz/experiments/high_lr.py; a module outside bnviz
    (a test's stand-in job) by its imported file."""
    parts = module.split(".")
    if parts[0] != PACKAGE.name:
        return Path(sys.modules[module].__file__).resolve()
    path = PACKAGE.joinpath(*parts[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _name(path: Path) -> str:
    """A file's name in a fingerprint: relative to bnviz's parent, or its own name."""
    return (
        path.relative_to(PACKAGE.parent).as_posix() if path.is_relative_to(PACKAGE) else path.name
    )


def _experiment_imports(path: Path) -> set[Path]:
    """The bnviz.experiments modules a module imports (relative or absolute)."""
    found = set()
    if not path.is_relative_to(PACKAGE):
        return found
    package = path.parent.relative_to(PACKAGE.parent).as_posix().replace("/", ".")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = f"{base}.{node.module}" if base and node.module else node.module or base
            names = [f"{module}.{a.name}" for a in node.names] + [module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith(EXPERIMENTS + ".") and _module_file(name).exists():
                found.add(_module_file(name))
    return found


def experiment_files(scenario_id: str) -> list[Path]:
    """The modules defining the scenario's jobs' functions, and the bnviz.experiments modules
    they import, transitively, in a fixed order."""
    todo = {_module_file(j.fn.__module__) for j in SCENARIOS[scenario_id].jobs()}
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo |= _experiment_imports(path)
    return sorted(seen, key=_name)


def _public(version: str) -> str:
    return version.split("+", 1)[0]


def _hash(files: Iterable[Path]) -> str:
    h = hashlib.sha256(f"bnviz precompute format {FORMAT}\n".encode())
    h.update(f"torch {_public(torch.__version__)}\nnumpy {np.__version__}\n".encode())
    for path in files:
        # line endings normalised, so a Windows checkout hashes the same
        source = path.read_bytes().replace(b"\r\n", b"\n")
        name = _name(path).encode()
        h.update(b"%s\0%d\0%s" % (name, len(source), source))
    return h.hexdigest()


def _hash_scenario(scenario_id: str) -> str:
    return _hash([*engine_files(), *experiment_files(scenario_id)])


_fingerprints: dict[str, str] = {}  # two threads may both compute one: same value, no harm


def fingerprint(scenario_id: str) -> str:
    """sha256 over the engine's and the scenario's experiment sources and the torch and numpy
    versions, computed once per process: it describes the code this process imported, not
    later edits of the files."""
    if scenario_id not in _fingerprints:
        _fingerprints[scenario_id] = _hash_scenario(scenario_id)
    return _fingerprints[scenario_id]


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
        "fingerprint": fingerprint(scenario_id),
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
    manifest = {
        "format": FORMAT,
        "torch": _public(torch.__version__),
        "numpy": np.__version__,
        "regenerate": REGENERATE,
        "scenarios": entries,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    _write_atomic(directory / MANIFEST, text.encode())
    return manifest


def is_fresh(directory: Path | str, scenario_id: str) -> bool:
    """Whether the scenario's file exists, is readable and matches this engine and its jobs."""
    path = scenario_file(Path(directory), scenario_id)
    try:
        payload = read_gzip(path)
    except (OSError, ValueError, EOFError):
        return False
    have = [(j.get("label"), j.get("key")) for j in payload.get("jobs", [])]
    want = [(j.label, key_digest(j.key)) for j in SCENARIOS[scenario_id].jobs()]
    return (
        payload.get("format") == FORMAT
        and payload.get("fingerprint") == fingerprint(scenario_id)
        and have == want
    )


def _init_worker() -> None:
    torch.set_num_threads(1)  # as the app: results depend on the thread count


def _run_job(job) -> tuple[dict, float]:
    """One job, timed (in a worker process: the job travels pickled, its function by name)."""
    started = time.perf_counter()
    return job(), time.perf_counter() - started


def _jobs_of(scenario_id: str, seeds=None) -> list:
    jobs = SCENARIOS[scenario_id].jobs
    return jobs() if seeds is None else jobs(seeds=tuple(seeds))


def run_jobs(
    scenario_ids: Iterable[str],
    workers: int = 1,
    seeds=None,
    progress: Callable[[str], None] = print,
) -> dict[str, list]:
    """Every job of the scenarios, in `workers` processes (1: this process), as
    {scenario_id: [(job, result), ...]} in each scenario's job order. A failing job raises
    RuntimeError naming it. Longest-first is not attempted: jobs are queued in order."""
    torch.set_num_threads(1)
    jobs = {sid: _jobs_of(sid, seeds) for sid in scenario_ids}
    tasks = [(sid, i) for sid in jobs for i in range(len(jobs[sid]))]
    out: dict[str, list] = {sid: [None] * len(jobs[sid]) for sid in scenario_ids}

    def record(sid, i, result, seconds):
        out[sid][i] = (jobs[sid][i], result)
        done = sum(r is not None for r in out[sid])
        progress(f"{sid} [{done}/{len(jobs[sid])}] {jobs[sid][i].label}: {seconds:.1f} s")

    def failed(sid, i, e):
        return RuntimeError(f"{sid}: job {jobs[sid][i].label!r} failed: {e}")

    if workers <= 1:
        for sid, i in tasks:
            try:
                result, seconds = _run_job(jobs[sid][i])
            except Exception as e:  # nothing is shipped for a scenario with a failing job
                raise failed(sid, i, e) from e
            record(sid, i, result, seconds)
        return out
    context = multiprocessing.get_context("spawn")  # no forked torch state
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        futures = {pool.submit(_run_job, jobs[sid][i]): (sid, i) for sid, i in tasks}
        try:
            for future in as_completed(futures):
                sid, i = futures[future]
                try:
                    result, seconds = future.result()
                except Exception as e:
                    raise failed(sid, i, e) from e
                record(sid, i, result, seconds)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return out


def precompute(
    out_dir: Path | str = DEFAULT_DIR,
    scenario_ids: Iterable[str] | None = None,
    progress: Callable[[str], None] = print,
    workers: int = 1,
    force: bool = False,
) -> dict:
    """Run every job of the given scenarios (default: all that have jobs) whose file is missing
    or stale (all of them with `force`), in `workers` processes, and write their files and the
    manifest. Returns the manifest."""
    out_dir = Path(out_dir)
    ids = list(SCENARIOS) if scenario_ids is None else list(scenario_ids)
    unknown = [i for i in ids if i not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario {', '.join(unknown)}; have {', '.join(SCENARIOS)}")
    ids = [i for i in ids if SCENARIOS[i].jobs()]
    before = {i: fingerprint(i) for i in ids}  # now, before any source file can change
    if scenario_ids is None:  # a full run also drops files of scenarios gone or without jobs
        keep = {scenario_file(out_dir, i).name for i in ids}
        for old in out_dir.glob("*.json.gz"):
            if old.name not in keep:
                progress(f"removing {old}")
                old.unlink()
    todo = [i for i in ids if force or not is_fresh(out_dir, i)]
    for i in ids:
        if i not in todo:
            progress(f"{i}: up to date (fingerprint {fingerprint(i)[:12]})")
    started = time.perf_counter()
    for sid, pairs in run_jobs(todo, workers, progress=progress).items():
        size = write_gzip(scenario_file(out_dir, sid), scenario_payload(sid, pairs))
        progress(f"{sid}: {len(pairs)} jobs, {size / 1024:.0f} kB")
    if todo:
        progress(f"{len(todo)} scenarios in {time.perf_counter() - started:.1f} s")
    changed = [i for i in ids if _hash_scenario(i) != before[i]]
    if changed:
        progress(f"warning: sources changed during the run ({', '.join(changed)}); run "
                 f"`{REGENERATE}` again")  # fmt: skip
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
        if payload["format"] != FORMAT or payload["fingerprint"] != fingerprint(scenario_id):
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
