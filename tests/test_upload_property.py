"""Any file Run.from_json accepts renders every figure: a valid saved run (with its twin),
changed in small ways (numbers, infinities, list lengths), is either refused or drawn."""

import copy
import json

import plotly.io as pio
import pytest
from conftest import SMALL, TALLY
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bnviz import Run, TrainConfig, Trainer
from bnviz import figures as F
from bnviz.record import momentum_numbers

# What a number in the file may become: edge values of float32, the format's non-finite
# strings, other types.
VALUES = [0, 1, -1, 0.5, 2, 1e-40, 1e30, -1e30, 3.4e38, -3.4e38, 2**31, "NaN", "Infinity"]
VALUES += ["-Infinity", None, True, "x", []]


EVAL_ACCURACIES = ("acc_running_stats", "acc_batch_stats")


def _figures(run: Run, twin: Run | None) -> dict:
    """Every figure of bnviz.figures that draws a run, with ordinary arguments."""
    last = len(run.layers) - 1
    return {
        "loss": lambda: F.loss_figure(run, twin),
        "accuracy": lambda: F.accuracy_figure(run, twin),
        "histogram first": lambda: F.histogram_figure(run, 0, 0),
        "histogram last, channel 0": lambda: F.histogram_figure(run, last, -1, channel=0),
        "unit percentiles": lambda: F.percentile_figure(run, 0, twin, "unit"),
        "layer percentiles": lambda: F.percentile_figure(run, last, twin, "layer"),
        "saturation": lambda: F.saturation_figure(run, twin),
        "running stats": lambda: F.running_stats_figure(run, 0, 0),
        "affine": lambda: F.affine_figure(run, 0),
        "gain first": lambda: F.gain_figure(run, 0, 0),
        "gain last": lambda: F.gain_figure(run, last, -1),
        "grad norm": lambda: F.grad_norm_figure(run, twin),
        "update ratio": lambda: F.update_ratio_figure(run, twin),
        "eval gap": lambda: F.eval_gap_figure(run, twin),
    }


def _paths(node, path=()):
    """(path, is_list) of every list and every scalar in a JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        yield path, True
        for i, value in enumerate(node):
            yield from _paths(value, (*path, i))
    else:
        yield path, False


@pytest.fixture(scope="module")
def saved() -> dict:
    """A small finished run with a twin, as the dict its JSON holds."""
    config = TrainConfig(**{**SMALL, "steps": 12})
    run, twin = (Trainer(c) for c in (config, config.replace(norm="none")))
    for trainer in (run, twin):
        trainer.step(12)
    d = json.loads(run.run.to_json(twin=twin.run))
    assert Run.from_json(json.dumps(d)).twin is not None
    return d


def _get(d, path):
    for key in path:
        d = d[key]
    return d


def _ops(lists: list, scalars: list, edges: list):
    """1 to 3 small changes to a saved run: (how, path, what)."""
    number = st.tuples(st.just("set"), st.sampled_from(scalars), st.sampled_from(VALUES))
    ends = ["Infinity", "-Infinity", 3.4e38, -3.4e38, 1e30]
    edge_end = st.tuples(  # the first or last edge: beyond it lie the end bins
        st.sampled_from(edges), st.sampled_from([0, -1]), st.sampled_from(ends)
    ).map(lambda t: ("set", (*t[0], t[1]), t[2]))
    changes = ["drop last", "drop first", "repeat last", "empty"]
    length = st.tuples(st.just("length"), st.sampled_from(lists), st.sampled_from(changes))
    return st.lists(st.one_of(number, edge_end, length), min_size=1, max_size=3)


def _apply(d: dict, ops) -> dict:
    d = copy.deepcopy(d)
    for how, path, what in ops:
        if how == "set":
            *parent, key = path
            try:
                target = _get(d, parent)
                target[key] = what
            except (IndexError, KeyError, TypeError):  # gone with an earlier change
                continue
            continue
        try:
            values = _get(d, path)
        except (IndexError, KeyError, TypeError):
            continue
        if not isinstance(values, list):
            continue
        if what == "drop last" and values:
            values.pop()
        elif what == "drop first" and values:
            values.pop(0)
        elif what == "repeat last" and values:
            values.append(copy.deepcopy(values[-1]))
        elif what == "empty":
            values.clear()
    return d


def test_every_file_from_json_accepts_renders_every_figure(saved):
    paths = list(_paths(saved))
    lists = [p for p, is_list in paths if is_list]
    scalars = [p for p, is_list in paths if not is_list and p[-1] not in ("format", "version")]
    edges = [p for p in lists if "edges" in p and len(p) >= 2 and p[-2] == "edges"]
    assert len(edges) == 2 * 3 * 2  # run and twin, 2 blocks, 3 kinds
    outcomes = {"accepted": 0, "refused": 0}

    # derandomized: the same examples on every run, so that CI cannot pass on one draw and
    # fail on the next
    @settings(max_examples=30, deadline=None, database=None, derandomize=True)
    @given(_ops(lists, scalars, edges))
    # always tried: the saved file unchanged (accepted), and the two files (refused):
    # test accuracies one short, an infinite end edge
    @example([])
    @example([("length", ("eval", key), "drop last") for key in EVAL_ACCURACIES])
    @example([("set", ("layers", 0, "snapshots", "edges", "pre_norm", 0), "-Infinity")])
    def check(ops):
        TALLY["changed saved runs"] += 1
        d = _apply(saved, ops)
        try:
            run = Run.from_json(json.dumps(d))
        except ValueError as e:
            assert str(e).startswith("not a valid bnviz run"), e
            outcomes["refused"] += 1
            return
        outcomes["accepted"] += 1
        for r, twin in ((run, run.twin), (run.twin, None)):
            for name, draw in _figures(r, twin).items():
                try:
                    pio.to_json(draw())
                except Exception as e:
                    raise AssertionError(f"{name} figure of an accepted file: {e!r}") from e
            if r.num_steps and r.layers[0].has_running_stats:
                momentum_numbers(r, 0, 0)

    check()
    assert outcomes["accepted"] and outcomes["refused"], outcomes  # both kinds were tried
