"""Every scenario states its conclusions as verdicts across seeds, and its prose quotes them.

Held for every scenario with experiments, on its shipped results: each compared variant has at
least MIN_SEEDS seeds, each verdict is decided on at least that many, and the explanation quotes
every verdict's sentence. Its jobs are defined in bnviz/experiments (the precompute fingerprint
covers them there), run other seeds when asked, and its figures are declared Charts."""

import ast
import re
from collections import defaultdict

import pytest

from bnviz import precompute
from bnviz.scenarios import SCENARIOS, Chart
from bnviz.scenarios.evidence import MIN_SEEDS, REPLICATION_SEEDS

WITH_JOBS = [sid for sid, s in SCENARIOS.items() if s.jobs()]
SEED = re.compile(r"^(.*), seed (\d+)$")


def shipped(scenario_id: str) -> dict:
    path = precompute.scenario_file(precompute.DEFAULT_DIR, scenario_id)
    return {j["label"]: j["result"] for j in precompute.read_gzip(path)["jobs"]}


@pytest.mark.parametrize("scenario_id", WITH_JOBS)
def test_every_compared_variant_has_five_seeds(scenario_id):
    seeds = defaultdict(set)
    for job in SCENARIOS[scenario_id].jobs():
        m = SEED.match(job.label)
        if m:
            seeds[m.group(1)].add(int(m.group(2)))
    assert seeds, f"{scenario_id}: no job runs more than one seed"
    few = {variant: len(s) for variant, s in seeds.items() if len(s) < MIN_SEEDS}
    assert not few, f"{scenario_id}: variants with fewer than {MIN_SEEDS} seeds: {few}"


@pytest.mark.parametrize("scenario_id", WITH_JOBS)
def test_the_shipped_verdicts_are_decided_on_five_seeds_and_quoted(scenario_id):
    scenario = SCENARIOS[scenario_id]
    results = shipped(scenario_id)
    verdicts = scenario.verdicts(results)
    assert verdicts, f"{scenario_id} states no verdict"
    assert len({v.key for v in verdicts}) == len(verdicts), "verdict keys must be unique"
    text = scenario.explain(results, None, None)
    for v in verdicts:
        assert not v.pending and v.seeds >= MIN_SEEDS, (v.key, v.seeds)
        assert v.text in text, f"{scenario_id}: the explanation does not quote {v.text!r}"


@pytest.mark.parametrize("scenario_id", WITH_JOBS)
def test_without_results_no_verdict_is_claimed(scenario_id):
    scenario = SCENARIOS[scenario_id]
    for v in scenario.verdicts({}):
        assert v.pending and v.holds is None, v.key


@pytest.mark.parametrize("scenario_id", WITH_JOBS)
def test_jobs_live_in_experiments_and_run_other_seeds(scenario_id):
    scenario = SCENARIOS[scenario_id]
    jobs = scenario.jobs()
    for job in jobs:
        assert job.fn.__module__.startswith("bnviz.experiments."), (job.label, job.fn.__module__)
    other = scenario.jobs(seeds=REPLICATION_SEEDS)
    seeded = [j.label for j in other if SEED.match(j.label)]
    assert seeded and all(int(SEED.match(label).group(2)) in REPLICATION_SEEDS for label in seeded)
    assert len({j.label for j in other}) == len(other)


@pytest.mark.parametrize("scenario_id", list(SCENARIOS))
def test_figures_are_declared_charts(scenario_id):
    figures = SCENARIOS[scenario_id].figures
    assert isinstance(figures, tuple) and all(isinstance(c, Chart) for c in figures)
    for chart in figures:  # a placeholder needs the chart's own title and axes
        assert chart.title and (not chart.needs or chart.y_title), chart.title


def test_experiments_import_neither_the_scenarios_nor_the_page():
    for path in sorted((precompute.PACKAGE / "experiments").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                assert not re.search(r"(^|\.)(scenarios|ui|streamlit)", module), (path, module)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("streamlit") for a in node.names), path
