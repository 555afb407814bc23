"""Carbon: energy x the carbon intensity of the electricity (g CO2e per kWh).

A yearly average of the grid a machine draws from, not the hour's mix: it says what a measurement
costs on average where it ran, and lets two runs be compared. The default is the world's average;
`--carbon-intensity` gives any figure, `--country CODE` one of the table below.

Source of every figure: Ember, yearly electricity data (lifecycle emissions of electricity generation,
all gases as CO2 equivalents), year 2023, as Our World in Data publishes it ("Carbon intensity of
electricity generation"); the world's 481 g/kWh is Ember's 2023 figure (Global Electricity Review 2024).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from wattprobe.config.settings import option
from wattprobe.config.values import non_negative
from wattprobe.errors import UsageError

SOURCE = "Ember, yearly electricity data, 2023"
WORLD_G_PER_KWH = 481.0
J_PER_KWH = 3.6e6

# ISO 3166-1 alpha-2 -> (alpha-3, name, g CO2e/kWh in 2023).
COUNTRIES: dict[str, tuple[str, str, float]] = {
    "AR": ("ARG", "Argentina", 354),
    "AT": ("AUT", "Austria", 111),
    "AU": ("AUS", "Australia", 549),
    "BE": ("BEL", "Belgium", 138),
    "BR": ("BRA", "Brazil", 98),
    "CA": ("CAN", "Canada", 170),
    "CH": ("CHE", "Switzerland", 35),
    "CL": ("CHL", "Chile", 291),
    "CN": ("CHN", "China", 582),
    "CZ": ("CZE", "Czechia", 450),
    "DE": ("DEU", "Germany", 381),
    "DK": ("DNK", "Denmark", 152),
    "ES": ("ESP", "Spain", 174),
    "FI": ("FIN", "Finland", 79),
    "FR": ("FRA", "France", 56),
    "GB": ("GBR", "United Kingdom", 238),
    "GR": ("GRC", "Greece", 337),
    "IE": ("IRL", "Ireland", 291),
    "IN": ("IND", "India", 713),
    "IT": ("ITA", "Italy", 331),
    "JP": ("JPN", "Japan", 485),
    "KR": ("KOR", "South Korea", 431),
    "MX": ("MEX", "Mexico", 507),
    "NL": ("NLD", "Netherlands", 268),
    "NO": ("NOR", "Norway", 30),
    "NZ": ("NZL", "New Zealand", 113),
    "PL": ("POL", "Poland", 662),
    "PT": ("PRT", "Portugal", 166),
    "RU": ("RUS", "Russia", 441),
    "SE": ("SWE", "Sweden", 41),
    "SG": ("SGP", "Singapore", 471),
    "TR": ("TUR", "Turkey", 465),
    "US": ("USA", "United States", 369),
    "ZA": ("ZAF", "South Africa", 708),
}
_ALPHA3 = {alpha3: alpha2 for alpha2, (alpha3, _, _) in COUNTRIES.items()}


@dataclass(frozen=True, slots=True)
class Intensity:
    g_per_kwh: float
    source: str  # where the figure comes from, in words

    def grams(self, energy_j: float) -> float:
        """g CO2e of `energy_j` joules of electricity."""
        return energy_j / J_PER_KWH * self.g_per_kwh


def country(text: str) -> str:
    """An ISO 3166-1 code of the table (alpha-2 or alpha-3, any case), as its alpha-2."""
    code = text.strip().upper()
    code = _ALPHA3.get(code, code)
    if code not in COUNTRIES:
        known = " ".join(sorted(COUNTRIES))
        raise argparse.ArgumentTypeError(
            f"no carbon intensity for country {text!r} (known: {known}); give --carbon-intensity G_PER_KWH instead"
        )
    return code


@dataclass(frozen=True, slots=True)
class CarbonSettings:
    """The carbon intensity to count with: the world's average unless a figure or a country is given."""

    carbon_intensity: float | None = option(
        None,
        parse=non_negative,
        metavar="G_PER_KWH",
        help=f"g CO2e per kWh of electricity (default: world average 2023, {WORLD_G_PER_KWH:g}, Ember)",
    )
    country: str | None = option(
        None,
        parse=country,
        metavar="CODE",
        help=f"the yearly average of a country's grid, by ISO code (FR, DE, US, ...; {SOURCE})",
    )

    def __post_init__(self) -> None:
        if self.carbon_intensity is not None and self.country is not None:
            raise UsageError("give --carbon-intensity or --country, not both")

    @property
    def intensity(self) -> Intensity:
        if self.carbon_intensity is not None:
            return Intensity(self.carbon_intensity, "as given")
        if self.country is not None:
            _, name, grams = COUNTRIES[self.country]
            return Intensity(grams, f"{name}, yearly average ({SOURCE})")
        return Intensity(WORLD_G_PER_KWH, f"world average ({SOURCE})")
