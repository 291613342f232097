"""Findings across seeds: the seed-sweep helper, summaries with their spread, and verdicts.

A scenario's conclusions are data. `verdicts(results)` returns `Verdict`s, computed here from
the per-seed results; the prose quotes `verdict.text`, and figures mark `verdict.mark`. The rule
for a claimed difference between A and B (paired by seed):

- it holds when A beats B in at least `agreeing(n)` of the n seeds (4 of 5, 8 of 10) **and**
  the mean difference exceeds two standard errors;
- it is reversed (holds=False) when the same is true the other way;
- otherwise the two are "not distinguishable at this scale" (holds=None);
- with fewer than MIN_SEEDS seeds measured, it is still being measured (holds=None, pending).

Numbers are written with no more digits than their standard error allows (`plus_minus`).
Seeds are part of each job's label ("BatchNorm, lr 1, seed 3"), so the same code reads the
shipped seeds and a replication's (`python -m bnviz replicate`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .base import Job, job

SEEDS = (0, 1, 2, 3, 4)  # the shipped seeds of every compared variant
MIN_SEEDS = 5
REPLICATION_SEEDS = (100, 101, 102, 103, 104)  # `python -m bnviz replicate`'s default
LAST_EVALS = 3  # final accuracy: the mean of the last few evaluations, not one snapshot

_SEED = re.compile(r"^(.*), seed (\d+)$")


def seeded(label: str, seed: int) -> str:
    """A job label for one seed of a variant: 'BatchNorm, lr 1' -> 'BatchNorm, lr 1, seed 3'."""
    return f"{label}, seed {seed}"


def sweep(label: str, fn: Callable[..., dict], seeds: Iterable[int] = SEEDS, **kwargs) -> list[Job]:
    """One job per seed of one variant: fn(seed=s, **kwargs), labelled seeded(label, s)."""
    return [job(seeded(label, s), fn, seed=s, **kwargs) for s in seeds]


def by_seed(results: Mapping[str, dict], label: str) -> dict[int, dict]:
    """{seed: result} of one variant's finished jobs, whatever seeds were run."""
    out = {}
    for name, result in results.items():
        m = _SEED.match(name)
        if m and m.group(1) == label:
            out[int(m.group(2))] = result
    return dict(sorted(out.items()))


def across(
    results: Mapping[str, dict], label: str, value: str | Callable[[dict], float]
) -> dict[int, float]:
    """{seed: number} of one variant: value is a result key, or a function of a result."""
    get = value if callable(value) else (lambda r: r[value])
    return {s: float(get(r)) for s, r in by_seed(results, label).items()}


def final(values: Iterable[float], last: int = LAST_EVALS) -> float:
    """The mean of the last `last` finite evaluations (one snapshot is noisy)."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)][-last:]
    return float(arr.mean()) if len(arr) else math.nan


# --- summaries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Mean, standard deviation and standard error of the mean over n seeds (finite values)."""

    mean: float
    sd: float
    n: int

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n) if self.n > 1 else math.nan

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        arr = np.asarray(list(values), dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if not len(arr):
            return cls(math.nan, math.nan, 0)
        sd = float(arr.std(ddof=1)) if len(arr) > 1 else math.nan
        return cls(float(arr.mean()), sd, len(arr))

    def text(self, scale: float = 1.0, unit: str = "") -> str:
        """'62 ± 3%' (mean ± standard deviation over the seeds, digits as the spread allows)."""
        return plus_minus(self.mean * scale, self.sd * scale, unit)


def band(rows: Iterable[Iterable[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, mean - sd, mean + sd) per position over seeds' series of equal length; positions
    where fewer than two seeds are finite have NaN edges."""
    arr = np.asarray([list(r) for r in rows], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        count = np.isfinite(arr).sum(0)
        mean = np.where(count > 0, np.nansum(arr, 0) / np.maximum(count, 1), np.nan)
        sq = np.nansum((arr - mean) ** 2, 0)
        sd = np.where(count > 1, np.sqrt(sq / np.maximum(count - 1, 1)), np.nan)
    return mean, mean - sd, mean + sd


def _digits(spread: float, value: float = 0.0) -> int:
    """Decimals that keep one significant digit of the spread (negative: round to tens,
    hundreds...), and never more than three significant digits of the value."""
    most = 2 - math.floor(math.log10(abs(value))) if value and math.isfinite(value) else 3
    if not math.isfinite(spread) or spread <= 0:
        return max(0, min(1, most))
    return min(-math.floor(math.log10(spread)), most)


def _fixed(value: float, decimals: int, sign: bool = False) -> str:
    """value at `decimals` (negative: rounded to tens, hundreds...); no '-0' or '+0'."""
    value = round(value, decimals)
    text = f"{value:.{max(0, decimals)}f}"
    if float(text) == 0:
        return text.lstrip("-")
    return f"+{text}" if sign and value > 0 else text


def rounded(value: float, spread: float, unit: str = "", sign: bool = False) -> str:
    """A number with no more digits than its spread allows: rounded(62.347, 2.1) -> '62'."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return _fixed(value, _digits(spread, value), sign) + unit


def plus_minus(value: float, spread: float, unit: str = "", sign: bool = False) -> str:
    """'62 ± 3%': value and spread at the spread's first significant digit."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if not math.isfinite(spread):
        return rounded(value, spread, unit, sign)
    d = _digits(spread, value)
    return f"{_fixed(value, d, sign)} ± {_fixed(spread, d)}{unit}"


# --- verdicts --------------------------------------------------------------------------------


def agreeing(n: int) -> int:
    """Seeds that must agree on the sign of a difference: all but one in five (4 of 5, 8 of 10,
    3 of 3)."""
    return n - n // 5


@dataclass(frozen=True)
class Verdict:
    """One conclusion of a scenario, computed from its results.

    `claim` is the finding as the text states it when it holds ("BatchNorm reached a higher test
    accuracy than no norm at lr 1"); `reverse` is the sentence when the seeds agree on the
    opposite. holds: True (the seeds agree), False (they agree on the opposite), None (not
    distinguishable at this scale, or still being measured: see `pending`). `diffs` holds the
    per-seed differences a − b in the unit the text uses (scale applied)."""

    key: str
    claim: str
    reverse: str
    holds: bool | None
    diffs: tuple[float, ...]
    unit: str = ""
    needed: int = MIN_SEEDS

    @property
    def seeds(self) -> int:
        return len(self.diffs)

    @property
    def pending(self) -> bool:
        return self.seeds < self.needed

    @property
    def agree(self) -> int:
        """Seeds in which the difference has the claimed sign (a > b)."""
        return sum(d > 0 for d in self.diffs)

    @property
    def against(self) -> int:
        """Seeds in which the difference has the opposite sign (a < b)."""
        return sum(d < 0 for d in self.diffs)

    @property
    def spread(self) -> Spread:
        return Spread.of(self.diffs)

    @property
    def numbers(self) -> dict:
        s = self.spread
        return {
            "seeds": self.seeds,
            "agree": self.agree,
            "against": self.against,
            "mean": s.mean,
            "se": s.se,
        }

    def _difference(self, reverse: bool = False) -> str:
        """The mean difference with its standard error, in the direction the sentence states
        (b − a for a reversed verdict)."""
        s = self.spread
        mean = plus_minus(-s.mean if reverse else s.mean, s.se, self.unit, sign=True)
        return f"{mean}, mean ± s.e."

    @property
    def text(self) -> str:
        """The sentence the prose quotes for this verdict."""
        n = self.seeds
        if self.pending:
            return f"{_cap(self.claim)}? Still measuring ({n} of {self.needed} seeds so far)."
        if self.holds:
            return f"{_cap(self.claim)} in {self.agree} of {n} seeds ({self._difference()})."
        if self.holds is False:
            difference = self._difference(reverse=True)
            return f"{_cap(self.reverse)} in {self.against} of {n} seeds ({difference})."
        return (
            f"{_cap(self.claim)}? Not distinguishable at this scale: yes in {self.agree} of "
            f"{n} seeds ({self._difference()})."
        )

    @property
    def mark(self) -> str:
        """A few words for a figure: '5/5 seeds', 'reversed, 4/5 seeds', 'not distinguishable'."""
        n = self.seeds
        if self.pending:
            return f"measuring ({n}/{self.needed} seeds)"
        if self.holds:
            return f"{self.agree}/{n} seeds agree"
        if self.holds is False:
            return f"reversed in {self.against}/{n} seeds"
        return f"not distinguishable ({self.agree}/{n} seeds)"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _difference(x, y) -> float:
    if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
        return math.nan
    return float(x) - float(y)


def decide(diffs: Iterable[float], needed: int = MIN_SEEDS) -> bool | None:
    """The rule of this module's docstring, on per-seed differences a − b (NaN: a seed that
    agrees with neither side)."""
    all_ = np.asarray(list(diffs), dtype=np.float64)
    n, d = len(all_), all_[np.isfinite(all_)]
    if n < max(needed, 2) or len(d) < 2:
        return None
    mean, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(len(d))
    if (d > 0).sum() >= agreeing(n) and mean > 2 * se:
        return True
    if (d < 0).sum() >= agreeing(n) and -mean > 2 * se:
        return False
    return None


def compare(
    key: str,
    claim: str,
    reverse: str,
    a: Mapping[int, float],
    b: Mapping[int, float] | float,
    *,
    scale: float = 1.0,
    unit: str = "",
    needed: int = MIN_SEEDS,
) -> Verdict:
    """The verdict on 'a > b' from per-seed numbers, paired by seed. b may be a constant (a
    threshold: 'BatchNorm learns at lr 1' as 'accuracy > 20%'). Differences are multiplied by
    `scale` (100 for accuracies quoted in points). A seed where either number is not finite
    counts as a seed that does not agree either way (map a diverged run to a number first if
    it should count: e.g. its accuracy at chance)."""
    if isinstance(b, Mapping):
        seeds = sorted(set(a) & set(b))
        pairs = [(a[s], b[s]) for s in seeds]
    else:
        pairs = [(a[s], float(b)) for s in sorted(a)]
    diffs = tuple(_difference(x, y) * scale for x, y in pairs)
    return Verdict(key, claim, reverse, decide(diffs, needed), diffs, unit, needed)
