"""Every number in a scenario's text comes from somewhere: its results, the live run (or its
twin, or their configs), or a named published constant; none is typed into the text. The same
holds for its presenter-mode takeaway, which quotes only numbers its explanation quotes."""

import gzip
import json
import math
import re

import numpy as np
import pytest

from bnviz import Lockstep, TrainConfig, precompute, trainer
from bnviz.scenarios import SCENARIOS, evidence

# Numbers as the texts write them: 0.957, 15.0%, 1e-5, 2015, 3.3×, −0.05.
NUMBER = re.compile(r"(?<![\w.,])[-−]?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:e[-+]?\d+)?)(%?)")

# Numbers that are not measurements, per scenario, each with where it comes from. Module
# constants named here (e.g. "PUBLISHED") count with all the numbers they hold.
ALLOWED: dict[str, tuple] = {
    "*": (
        "2015",  # Ioffe & Szegedy (2015), cited by year
        "2018",  # Wu & He (2018), Santurkar et al. (2018), cited by year
        "2021",  # Wu & Johnson (2021), cited by year
        "0.9",  # SGD's momentum, the app's optimizer (trainer._optimizer)
    ),
    # Wu & He's table (2018, Table 1 and Figure 1); the sweep's design: its base settings and
    # each batch size's lr, steps and training images
    "tiny-batches": ("PUBLISHED", "PUBLISHED_AT_32", "PUBLISHED_BATCHES", "SWEEP", "DESIGN"),
    "train-vs-eval": ("2017",),  # batch renormalization (Ioffe 2017), cited by year
    # Wu & He's table (2018), at 32 images per GPU; BatchNorm's 34.7% error at 2 images
    # per GPU is typed in the text
    "norm-family": ("PUBLISHED_ERROR", "32", "34.7"),
    # Hoffer et al. (2017) cited by year; Ioffe & Szegedy's section 3; the thresholds of two
    # verdicts (agreement with autograd, a gradient share that counts); the action's draws
    "batch-coupling": ("2017", "3", "TOLERANCE", "NEGLIGIBLE", "LIVE_SETS"),
    "momentum-lag": ("0.99",),  # Keras's default momentum, converted in the text
    # Ioffe & Szegedy (2015), section 3.3; the sweep's threshold for "learned"; van Laarhoven
    # (2017) and Arora, Li & Lyu (2019), cited by year; the trainer's divergence rule
    "high-lr": ("3.3", "LEARNED", "2017", "2019", "EXPLODED"),
    # van Laarhoven (2017) and Zhang et al. (2019), cited by year
    "scale-invariance": ("2017", "2019"),
    # each pair's training steps, its evaluation cadence, the step of the halfway comparison;
    # chance with ten classes
    "placement": ("STEPS", "EVAL_EVERY", "HALFWAY", "CHANCE"),
    "epsilon": ("1e-3", "1e-5", "1e-6"),  # the sweep's and torch's default epsilons
    # Ioffe & Szegedy's Fig. 1: batches of 60, 100 sigmoids; chance with ten classes; the
    # snapshot cadence and the early/late windows of the drift measure
    "sigmoid-drift": ("60", "100", "CHANCE", "WINDOW", "SNAPSHOT_EVERY"),
    # the relative differences of logits counted as equal in float32 and float64 (design)
    "fold-bn": ("TOL",),
}


# Named constants of the engine that any text may quote.
ENGINE = (trainer.EVAL_SIZE, trainer.PERCENTILES, evidence.MIN_SEEDS, evidence.LAST_EVALS)


def _verdict_numbers(scenario, results: dict) -> list[float]:
    """The counts a verdict's sentence quotes: seeds, seeds that agree, seeds against."""
    return _numbers([[v.seeds, v.agree, v.against] for v in scenario.verdicts(results)])


def _numbers(obj) -> list[float]:
    """Every number in nested dicts, lists, tuples, arrays and configs."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return []
    if isinstance(obj, int | float | np.number):
        return [float(obj)]
    if isinstance(obj, np.ndarray):
        return obj.astype(np.float64).ravel().tolist()
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, list | tuple):
        return [x for v in obj for x in _numbers(v)]
    if isinstance(obj, TrainConfig):
        return _numbers(obj.to_dict())
    return []


def _run_numbers(run) -> list[float]:
    table = [run.table.get(name) for name in run.table.columns]
    values = [table, run.eval_steps, run.acc_running_stats, run.acc_batch_stats, run.config]
    values += [run.changes, run.num_steps, [info.channels for info in run.layers]]
    for snaps in run.snapshots:
        values += [snaps.steps, snaps.unit_percentiles, snaps.layer_percentiles]
        values += [snaps.saturated_fraction]
        for which in (snaps.unit_percentiles, snaps.layer_percentiles):
            values += [[p[2] - p[0] for p in which]]  # 15-85 spreads
        for kind, rows in snaps.hist.items():  # mean and std from the bins' centres
            centres = (snaps.edges[kind][1:] + snaps.edges[kind][:-1]).astype(np.float64) / 2
            for counts in rows:
                weights = counts / max(counts.sum(), 1)
                mean = float(weights @ centres)
                values += [mean, math.sqrt(max(float(weights @ (centres - mean) ** 2), 0))]
    return _numbers(values)


def _derived(values: np.ndarray) -> np.ndarray:
    """What a text computes from numbers it has: differences (gaps, how far a median
    moved), ratios (×2.8), square roots (a standard deviation from a variance)."""
    values = np.unique(values)
    a, b = values[:, None], values[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.concatenate([(a - b).ravel(), (a / b).ravel(), np.sqrt(np.abs(values))])
    return out[np.isfinite(out)]


def _accounted(token: str, percent: bool, sources: np.ndarray) -> bool:
    """Whether some source value, shown at the token's precision (as a fraction, a percentage
    or its complement), is the token."""
    value = float(token)
    decimals = len(token.split(".")[1].split("e")[0]) if "." in token else 0
    if "e" in token:  # 1e-5: the value itself, to its shown significant digits
        return bool(np.any(np.isclose(sources, value, rtol=10 ** -(decimals + 1), atol=0)))
    tolerance = 0.5 * 10**-decimals + 1e-9
    candidates = [sources, 100 * sources, 100 * (1 - sources)] if percent else [sources]
    if not percent and decimals == 0:
        return bool(np.any(sources == value))  # integers exactly: steps, sizes, counts
    return any(bool(np.any(np.abs(c - value) <= tolerance)) for c in candidates)


def _shipped_results(scenario) -> dict:
    """The scenario's shipped results by job label, read directly (the fingerprint check of
    precompute.load is skipped: stale files still hold results of the current jobs' shape)."""
    path = precompute.scenario_file(precompute.DEFAULT_DIR, scenario.id)
    if not path.exists():
        return {}
    with gzip.open(path, "rb") as f:
        jobs = json.loads(f.read().decode())["jobs"]
    labels = {job.label for job in scenario.jobs()}
    return {j["label"]: j["result"] for j in jobs if j["label"] in labels}


def _live(seed: int):
    """A live run and its twin, 30 steps in."""
    config = TrainConfig(widths=(4, 8), steps=100, seed=seed)
    lock = Lockstep([config, config.replace(norm="none")])
    lock.step(30)
    return lock.runs


@pytest.fixture(scope="module")
def runs():
    return _live(0)


@pytest.fixture(scope="module")
def other_runs():
    return _live(1)


def unaccounted(scenario, results: dict, run, twin, write=None) -> list[str]:
    """The numbers in the scenario's text (`write`: its explain, or its takeaway) that come
    from none of its sources."""
    import importlib

    write = write or scenario.explain
    text = write(results, run, twin).replace("−", "-")
    module = importlib.import_module(write.__module__)
    allowed = set(ALLOWED["*"])
    sources = _numbers(results) + _run_numbers(run) + _run_numbers(twin) + _numbers(ENGINE)
    sources += _verdict_numbers(scenario, results)
    for name in ALLOWED.get(scenario.id, ()):
        if hasattr(module, name):
            sources += _numbers(getattr(module, name))
        else:
            allowed.add(name)
    sources = np.array([s for s in sources if math.isfinite(s)], dtype=np.float64)
    found, missing = [], []
    for match in NUMBER.finditer(text):
        token, percent = match[1].replace(",", ""), bool(match[2])
        if token in allowed:
            continue
        if _accounted(token, percent, sources):
            found.append(float(token) / (100 if percent else 1))
        else:
            missing.append((token, percent, match[0]))
    # a number derived from the results' or the text's own measured numbers
    derived = _derived(np.concatenate([_small(results), np.array(found)]))
    derived = np.concatenate([derived, np.sqrt(np.abs(sources))])
    return [shown for token, percent, shown in missing if not _accounted(token, percent, derived)]


def _small(results: dict) -> np.ndarray:
    """The results' numbers, but for long series (curves): at most 2,000 distinct."""
    values = np.unique([x for x in _numbers(results) if math.isfinite(x)])
    return values[:: max(1, len(values) // 2000)]


@pytest.mark.parametrize("scenario_id", SCENARIOS)
def test_every_number_in_a_scenario_text_has_a_source(scenario_id, runs):
    scenario = SCENARIOS[scenario_id]
    run, twin = runs
    # live numbers only: the shipped results' numbers may be aggregates (means over seeds,
    # their differences) that a match by value cannot trace; the next test covers them
    assert unaccounted(scenario, {}, run, twin) == [], scenario_id


def _perturbed(results: dict, seed: int | None, factor: float | None = None) -> dict:
    """The results with every fractional number scaled by its own random factor (0.8 to 1.25),
    or with `factor`, by that one factor: measurements that came out differently. Independent
    factors average out in a mean over many numbers (five seeds' last evaluations), which the
    digits its spread allows may then show unchanged; one factor moves every mean and every
    difference (but no ratio of two results, which independent factors move)."""
    rng = np.random.default_rng(seed)

    def walk(value):
        if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
            return value * (factor or float(rng.uniform(0.8, 1.25)))
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(results)


def _tokens(text: str) -> set[str]:
    return {m[0] for m in NUMBER.finditer(text.replace("−", "-"))}


def _prose(scenario, write, results: dict, run, twin) -> str:
    """The text without its verdicts' sentences: evidence.Verdict writes those from the
    results by one rule (tests/test_evidence.py), and their small counts and standard errors
    can stay the same under a perturbation by chance."""
    text = write(results, run, twin)
    for verdict in scenario.verdicts(results):
        text = text.replace(verdict.text, "")
    return text


def constant(scenario, results: dict, runs, other_runs, write=None) -> list[str]:
    """The numbers of the scenario's text (`write`: its explain, or its takeaway) that stay the
    same when every measurement changes (the results perturbed five ways, another live run),
    outside its verdicts' sentences, and are none of its constants: the allowed ones, the runs'
    configs, the jobs' arguments, the engine's; and for integers the steps, seeds, sizes and
    counts of the results and runs."""
    import importlib

    write = write or scenario.explain
    # independent factors, three times (a spread shown to one digit, "± 7%", stays the same
    # under two of them by chance often enough), and one common factor, twice (independent
    # factors average out in a mean over seeds, which its digits may then show unchanged)
    perturbed = [_perturbed(results, seed) for seed in (1, 2, 3)]
    perturbed += [_perturbed(results, None, factor) for factor in (0.8, 1.25)]
    lives = (other_runs, runs, other_runs, other_runs, runs)
    texts = [_prose(scenario, write, r, *live) for r, live in zip(perturbed, lives)]
    fixed = set.intersection(*map(_tokens, texts))
    module = importlib.import_module(write.__module__)
    allowed = set(ALLOWED["*"])
    sources = _numbers([r.config for r in (*runs, *other_runs)]) + _numbers(ENGINE)
    sources += _numbers([job.kwargs for job in scenario.jobs()])
    for name in ALLOWED.get(scenario.id, ()):
        if hasattr(module, name):
            sources += _numbers(getattr(module, name))
        else:
            allowed.add(name)
    # integers stay as they were too: steps, seeds, sizes, counts
    integers = _numbers(results) + _run_numbers(runs[0]) + _run_numbers(runs[1])
    integers += _verdict_numbers(scenario, results)
    integers = [x for x in integers if math.isfinite(x) and x.is_integer()]
    sources = np.array([s for s in sources if math.isfinite(s)], dtype=np.float64)
    out = []
    text = _prose(scenario, write, results, *runs)
    for match in NUMBER.finditer(text.replace("−", "-")):
        token, percent = match[1].replace(",", ""), bool(match[2])
        if match[0] not in fixed or token in allowed:
            continue
        if "." in token or percent or "e" in token:
            if not _accounted(token, percent, sources):
                out.append(match[0])
        elif not _accounted(token, percent, np.concatenate([sources, integers])):
            out.append(match[0])
    return out


@pytest.mark.parametrize("scenario_id", SCENARIOS)
def test_no_measured_number_is_typed_into_a_scenario_text(scenario_id, runs, other_runs):
    scenario = SCENARIOS[scenario_id]
    results = _shipped_results(scenario)
    for given in (results, {}):
        assert constant(scenario, given, runs, other_runs) == [], (scenario_id, bool(given))


# --- the takeaways (presenter mode): two short lines from the explanation's own numbers -----

TAKEAWAY_CHARS = 160  # as shown: bold markers not counted
# a sentence ends at . ! ? or … before a space or the end ("0.256", "1e-3" and "et al." do not)
SENTENCE_END = re.compile(r"(?<! al)[.!?…](?=\s|$)")


@pytest.mark.parametrize("scenario_id", SCENARIOS)
def test_a_takeaway_is_two_short_sentences_of_the_explanations_numbers(scenario_id, runs):
    scenario = SCENARIOS[scenario_id]
    results = _shipped_results(scenario)
    assert results or not scenario.jobs(), f"{scenario_id}: no shipped results to read"
    text = scenario.takeaway(results, *runs)
    shown = text.replace("**", "")
    assert shown.strip(), scenario_id
    assert len(shown) <= TAKEAWAY_CHARS, (scenario_id, len(shown), text)
    assert 1 <= len(SENTENCE_END.findall(shown)) <= 2 and shown.rstrip()[-1] in ".!?…", text
    # every number it quotes is one its explanation quotes for the same results and runs
    explained = _tokens(scenario.explain(results, *runs))
    assert _tokens(text) <= explained, (scenario_id, _tokens(text) - explained, text)


@pytest.mark.parametrize("scenario_id", SCENARIOS)
def test_a_takeaway_quotes_no_number_before_its_results(scenario_id, runs):
    scenario = SCENARIOS[scenario_id]
    text = scenario.takeaway({}, None, None)
    assert not _tokens(text), (scenario_id, text)
    if scenario.jobs():  # the live run alone does not make a takeaway of the experiments
        text = scenario.takeaway({}, *runs)
        assert text.strip() and not _tokens(text), (scenario_id, text)


@pytest.mark.parametrize("scenario_id", SCENARIOS)
def test_every_number_in_a_takeaway_has_a_source(scenario_id, runs):
    scenario = SCENARIOS[scenario_id]
    run, twin = runs
    assert unaccounted(scenario, {}, run, twin, scenario.takeaway) == [], scenario_id


@pytest.mark.parametrize("scenario_id", SCENARIOS)
def test_no_measured_number_is_typed_into_a_takeaway(scenario_id, runs, other_runs):
    scenario = SCENARIOS[scenario_id]
    results = _shipped_results(scenario)
    for given in (results, {}):
        found = constant(scenario, given, runs, other_runs, scenario.takeaway)
        assert found == [], (scenario_id, bool(given))
