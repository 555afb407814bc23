"""Carbon: energy x a yearly carbon intensity, the world's by default, a country's or a figure on demand."""

from __future__ import annotations

import argparse

import pytest

from wattprobe.commandenergy.carbon import (
    COUNTRIES,
    SOURCE,
    WORLD_G_PER_KWH,
    CarbonSettings,
    Intensity,
    country,
)
from wattprobe.errors import UsageError


def test_a_kwh_weighs_its_intensity():
    assert Intensity(481.0, "").grams(3.6e6) == pytest.approx(481.0)
    assert Intensity(56.0, "").grams(1800.0) == pytest.approx(0.028)  # half a Wh in France


def test_the_default_is_the_world_average_and_says_where_from():
    intensity = CarbonSettings().intensity
    assert intensity.g_per_kwh == WORLD_G_PER_KWH == 481.0
    assert "world average" in intensity.source and "Ember" in intensity.source and "2023" in SOURCE


def test_countries_by_either_iso_code_in_any_case():
    assert country("fr") == country("FRA") == country(" Fra ") == "FR"
    assert CarbonSettings(country="DE").intensity.g_per_kwh == 381
    assert "Germany" in CarbonSettings(country="DE").intensity.source
    assert CarbonSettings(carbon_intensity=0.0).intensity.g_per_kwh == 0.0  # a grid of its own, say
    with pytest.raises(argparse.ArgumentTypeError, match="known: AR AT AU"):
        country("XX")
    with pytest.raises(UsageError, match="not both"):
        CarbonSettings(carbon_intensity=10.0, country="FR")


def test_the_table_is_plausible():
    alpha3 = [a3 for a3, _, _ in COUNTRIES.values()]
    assert len(set(alpha3)) == len(alpha3) and all(len(a) == 3 for a in alpha3)
    assert all(len(code) == 2 and code.isupper() for code in COUNTRIES)
    assert all(10 < grams < 1200 for _, _, grams in COUNTRIES.values())
    # The cleanest and the most carbon-intensive grids of the table, as Ember ranks them for 2023.
    assert min(COUNTRIES.values(), key=lambda c: c[2])[1] == "Norway"
    assert max(COUNTRIES.values(), key=lambda c: c[2])[1] == "India"
