"""The statistics of repeated runs, against published values.

Sources of the constants: Student's t quantiles from the tables every statistics textbook prints
(e.g. NIST/SEMATECH e-Handbook of Statistical Methods, table 1.3.6.7.2), to the 3 decimals they
give, and to 12 digits from scipy 1.17.1 (`scipy.stats.t.ppf`); the Welch example is R's own, from
`?t.test` on the `sleep` data set (Cushny and Peebles, 1905): `t.test(extra ~ group, data = sleep)`
prints df = 17.776 and the 95 % interval of mean(group 1) - mean(group 2) -3.3654832 0.2054832, and
`t.test(sleep$extra[1:10])` the interval -0.5297804 2.0297804.
"""

from __future__ import annotations

import math

import pytest

from wattprobe.commandenergy import stats

SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


@pytest.mark.parametrize(
    ("df", "table", "exact"),
    [
        (1, 12.706, 12.706204736174694),
        (2, 4.303, 4.302652729749462),
        (5, 2.571, 2.5705818356363146),
        (10, 2.228, 2.228138851986274),
        (30, 2.042, 2.0422724563012378),
        (120, 1.980, 1.9799304050824402),
    ],
)
def test_t_quantiles_are_the_tables(df: int, table: float, exact: float) -> None:
    assert round(stats.t_quantile(0.975, df), 3) == table
    assert stats.t_quantile(0.975, df) == pytest.approx(exact, rel=1e-11)


def test_t_quantiles_at_fractional_degrees_of_freedom_and_other_levels() -> None:
    # Welch's degrees of freedom are not whole; scipy.stats.t.ppf gives the constants.
    assert stats.t_quantile(0.975, 17.776) == pytest.approx(2.102821310380221, rel=1e-11)
    assert stats.t_quantile(0.975, 0.5) == pytest.approx(164.55767348048818, rel=1e-11)
    assert stats.t_quantile(0.9, 3) == pytest.approx(1.637744353696209, rel=1e-11)
    assert stats.t_quantile(0.01, 3) == pytest.approx(-4.5407028585681335, rel=1e-11)
    assert stats.t_quantile(0.5, 7) == 0.0
    # Large df: the normal distribution's 1.959964.
    assert stats.t_quantile(0.975, 1e6) == pytest.approx(1.959966356814107, rel=1e-9)
    assert stats.t_quantile(0.975, 1e9) == pytest.approx(1.959963986912325, rel=1e-8)


def test_t_distribution_function() -> None:
    assert stats.t_cdf(0.0, 4) == 0.5
    assert stats.t_cdf(12.706204736174694, 1) == pytest.approx(0.975, abs=1e-12)
    assert stats.t_cdf(-2.228138851986274, 10) == pytest.approx(0.025, abs=1e-12)
    # df = 1 is the Cauchy distribution: 1/2 + atan(t)/pi.
    assert stats.t_cdf(3.0, 1) == pytest.approx(0.5 + math.atan(3.0) / math.pi, abs=1e-12)
    with pytest.raises(ValueError):
        stats.t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        stats.t_cdf(1.0, 0)


def test_the_summary_of_a_sample_is_r_s() -> None:
    summary = stats.summarize(SLEEP_1)
    assert summary.n == 10 and summary.mean == pytest.approx(0.75)
    assert summary.stdev == pytest.approx(1.7890096577591625)
    assert (summary.min, summary.max) == (-1.6, 3.7)
    assert summary.ci95 == pytest.approx((-0.5297804, 2.0297804), abs=1e-7)
    assert summary.to_json() == {
        "n": 10,
        "mean": 0.75,
        "stdev": 1.78901,
        "min": -1.6,
        "max": 3.7,
        "ci95": [-0.5297804, 2.02978],
    }


def test_one_value_has_no_spread_and_no_interval_rather_than_zero() -> None:
    summary = stats.summarize([3.5])
    assert summary.to_json() == {"n": 1, "mean": 3.5, "stdev": None, "min": 3.5, "max": 3.5, "ci95": None}
    with pytest.raises(ValueError):
        stats.summarize([])


def test_welch_interval_is_r_s_on_the_sleep_data() -> None:
    change = stats.compare(stats.summarize(SLEEP_1), stats.summarize(SLEEP_2))
    assert change.difference == pytest.approx(1.58)
    assert change.df == pytest.approx(17.776, abs=5e-4)
    assert change.ci95 == pytest.approx((-0.2054832, 3.3654832), abs=1e-7)
    assert change.verdict == stats.NO_CHANGE  # p = 0.079: the interval holds 0
    assert change.change_pct == pytest.approx(1.58 / 0.75 * 100)
    assert change.change_ci95_pct == pytest.approx((-0.2054832 / 0.0075, 3.3654832 / 0.0075), rel=1e-6)


def test_welch_degrees_of_freedom_by_hand() -> None:
    # Variances 4 and 1, n 5 and 10: v = 0.8 + 0.1; df = 0.81 / (0.64 / 4 + 0.01 / 9).
    base = stats.Summary(5, 10.0, 2.0, 7.0, 13.0, (0.0, 0.0))
    new = stats.Summary(10, 15.0, 1.0, 13.0, 17.0, (0.0, 0.0))
    change = stats.compare(base, new)
    df = 0.81 / (0.64 / 4 + 0.01 / 9)
    assert change.df == pytest.approx(df)
    half = stats.t_quantile(0.975, df) * math.sqrt(0.9)
    assert change.ci95 == pytest.approx((5.0 - half, 5.0 + half))
    assert change.verdict == stats.HIGHER and change.change_pct == pytest.approx(50.0)
    assert stats.compare(new, base).verdict == stats.LOWER


def test_verdicts_without_spread_or_without_repeats() -> None:
    same = stats.summarize([2.0, 2.0, 2.0])
    more = stats.summarize([2.5, 2.5])
    assert stats.compare(same, same).verdict == stats.NO_CHANGE
    exact = stats.compare(same, more)
    assert exact.verdict == stats.HIGHER and exact.ci95 == (0.5, 0.5) and exact.df is None
    once = stats.compare(stats.summarize([2.0]), more)
    assert once.verdict == stats.TOO_FEW and once.ci95 is None and once.change_ci95_pct is None
    assert once.change_pct == pytest.approx(25.0)
    from_zero = stats.compare(stats.summarize([0.0, 0.0]), more)
    assert from_zero.change_pct is None and from_zero.verdict == stats.HIGHER


def test_values_leave_out_absent_figures_and_refuse_what_is_not_a_number() -> None:
    runs = [{"energy_j": 1.0}, {"energy_j": None}, {}, {"energy_j": 3}]
    assert stats.values_of(runs, "energy_j") == [1.0, 3.0]
    with pytest.raises(ValueError, match="run 2: energy_j is 'x', not a number"):
        stats.values_of([{"energy_j": 1.0}, {"energy_j": "x"}], "energy_j")
    with pytest.raises(ValueError, match="run 1"):
        stats.values_of([{"energy_j": True}], "energy_j")


def test_the_repeated_runs_document() -> None:
    figures = ("energy_j", "cpu_seconds", "duration_s", "average_power_w", "host_energy_j")
    runs = [
        dict(zip(figures, values, strict=True))
        for values in ((10.0, 1.0, 2.0, 5.0, 40.0), (12.0, 1.2, 2.0, 6.0, None))
    ]
    doc = stats.repeated(runs)
    assert doc["schema_version"] == stats.SCHEMA_VERSION == 1 and doc["runs"] == runs
    assert tuple(doc["summary"]) == figures  # in METRICS' order
    energy = doc["summary"]["energy_j"]
    half = stats.t_quantile(0.975, 1) * math.sqrt(2.0) / math.sqrt(2)
    assert energy["n"] == 2 and energy["mean"] == 11.0 and energy["stdev"] == pytest.approx(math.sqrt(2))
    assert energy["ci95"] == pytest.approx([11.0 - half, 11.0 + half])
    assert doc["summary"]["host_energy_j"]["n"] == 1 and doc["summary"]["host_energy_j"]["ci95"] is None
    assert "energy_above_idle_j" not in doc["summary"]  # no run measured it
