"""The statistics of repeated runs: a sample's summary, two samples' comparison, and the document of
repeated runs (`wattprobe run --repeat`) that `wattprobe compare` reads.

The interval of a mean is Student's t interval; that of a difference of two means Welch's, with the
Welch-Satterthwaite degrees of freedom (B. L. Welch, Biometrika 34, 1947). A run is repeated a few
times (3 to 20), its mean is close to normal (a sum of many small steps), and the two sets need not
have the same spread (run on different days, beside different neighbours): that is Welch's case,
and his interval is exact enough there. A percentile bootstrap is not used: with so few values it
cannot reach beyond the ones seen, so its interval is too narrow (it flaps as a gate), and it is
random unless seeded.

The t quantile is computed, not tabled (Welch's degrees of freedom are not whole numbers): Student's
distribution function in terms of the regularized incomplete beta function (Abramowitz and Stegun
26.7.1), the latter by its continued fraction (A&S 26.5.8) evaluated with Lentz's method (Numerical
Recipes, 3rd ed., section 6.4), inverted by bisection.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1  # of a run's JSON and of the repeated runs' document
# The figures summed up over repeated runs, in the order they are listed.
METRICS = ("energy_j", "cpu_seconds", "duration_s", "average_power_w", "host_energy_j", "energy_above_idle_j")
UNITS = {
    "energy_j": "J",
    "cpu_seconds": "s",
    "duration_s": "s",
    "average_power_w": "W",
    "host_energy_j": "J",
    "energy_above_idle_j": "J",
}
LEVEL = 0.95

HIGHER = "higher"
LOWER = "lower"
NO_CHANGE = "no significant change"
TOO_FEW = "not enough runs"

_EPS = 1e-15
_TINY = 1e-300
_MAX_TERMS = 10_000
_NORMAL_DF = 1e7  # beyond this, Student's t is the normal distribution to 7 digits


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (A&S 26.5.8), by Lentz's method."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"the incomplete beta function's fraction did not converge (a={a}, b={b}, x={x})")


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):  # where the fraction converges fast; else by symmetry
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` (> 0, not necessarily whole) degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if df > _NORMAL_DF:
        return statistics.NormalDist().cdf(t)
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))  # A&S 26.7.1
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t such that P(T <= t) = p: the inverse of `t_cdf`, by bisection (to 1e-12, relative)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a probability strictly between 0 and 1, got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    if df > _NORMAL_DF:
        return statistics.NormalDist().inv_cdf(p)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    while hi - lo > 1e-12 * hi:
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


@dataclass(frozen=True, slots=True)
class Summary:
    """A sample of one figure: its size, mean, spread and the 95 % interval of its mean (n >= 2)."""

    n: int
    mean: float
    stdev: float | None  # the sample's (n - 1) standard deviation; None for a single value
    min: float
    max: float
    ci95: tuple[float, float] | None  # None for a single value: one value gives no interval

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean": _r(self.mean),
            "stdev": _r(self.stdev),
            "min": _r(self.min),
            "max": _r(self.max),
            "ci95": None if self.ci95 is None else [_r(self.ci95[0]), _r(self.ci95[1])],
        }


def summarize(values: Sequence[float]) -> Summary:
    """The summary of one or more values."""
    if not values:
        raise ValueError("no values to summarize")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Summary(1, mean, None, values[0], values[0], None)
    stdev = statistics.stdev(values)
    half = t_quantile((1 + LEVEL) / 2, len(values) - 1) * stdev / math.sqrt(len(values))
    return Summary(len(values), mean, stdev, min(values), max(values), (mean - half, mean + half))


@dataclass(frozen=True, slots=True)
class Comparison:
    """A new sample against a base one: the difference of the means, in the figure's unit and in % of
    the base mean, each with its 95 % interval (Welch's), and the verdict."""

    base: Summary
    new: Summary
    difference: float  # new mean - base mean
    ci95: tuple[float, float] | None  # of the difference; None unless both samples have 2 values or more
    df: float | None  # Welch-Satterthwaite degrees of freedom
    change_pct: float | None  # the difference in % of the base mean; None when that mean is 0
    change_ci95_pct: tuple[float, float] | None
    verdict: str  # HIGHER, LOWER, NO_CHANGE or TOO_FEW

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base.to_json(),
            "new": self.new.to_json(),
            "difference": _r(self.difference),
            "ci95": _pair(self.ci95),
            "df": _r(self.df),
            "change_pct": _r(self.change_pct),
            "change_ci95_pct": _pair(self.change_ci95_pct),
            "verdict": self.verdict,
        }


def compare(base: Summary, new: Summary) -> Comparison:
    """Welch's interval of new mean - base mean; significant when it leaves out 0.

    The relative change and its interval are the difference's over the base mean: the base mean is
    taken as the unit (its own uncertainty is already in the difference's interval, to first order),
    so the relative verdict is the difference's.
    """
    difference = new.mean - base.mean
    ci: tuple[float, float] | None = None
    df: float | None = None
    verdict = TOO_FEW
    if base.stdev is not None and new.stdev is not None:
        vb, vn = base.stdev**2 / base.n, new.stdev**2 / new.n
        se = math.sqrt(vb + vn)
        if se > 0:
            df = (vb + vn) ** 2 / (vb**2 / (base.n - 1) + vn**2 / (new.n - 1))
            half = t_quantile((1 + LEVEL) / 2, df) * se
        else:  # both samples without spread: the difference is exact
            half = 0.0
        ci = (difference - half, difference + half)
        verdict = HIGHER if ci[0] > 0 else LOWER if ci[1] < 0 else NO_CHANGE
    change = change_ci = None
    if base.mean != 0:
        scale = 100.0 / abs(base.mean)
        change = difference * scale
        change_ci = None if ci is None else (ci[0] * scale, ci[1] * scale)
    return Comparison(base, new, difference, ci, df, change, change_ci, verdict)


def values_of(runs: Iterable[Mapping[str, Any]], metric: str) -> list[float]:
    """A figure's values in `runs` (runs' JSON documents), those where it is absent or null left out.

    Raises ValueError, naming the run (from 1), for a value that is not a number."""
    values = []
    for number, run in enumerate(runs, 1):
        value = run.get(metric)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"run {number}: {metric} is {value!r}, not a number")
        values.append(float(value))
    return values


def summary_of(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The `summary` of repeated runs: per figure of METRICS that at least one run has, its summary."""
    summary = {}
    for metric in METRICS:
        values = values_of(runs, metric)
        if values:
            summary[metric] = summarize(values).to_json()
    return summary


def repeated(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The document of repeated runs (`wattprobe run --repeat N -o`): each run's JSON and their summary."""
    return {"schema_version": SCHEMA_VERSION, "runs": list(runs), "summary": summary_of(runs)}


def _pair(pair: tuple[float, float] | None) -> list[float | None] | None:
    return None if pair is None else [_r(pair[0]), _r(pair[1])]


def _r(value: float | None) -> float | None:
    """Seven significant digits, as a run's JSON has them."""
    return None if value is None else float(f"{value:.7g}")
