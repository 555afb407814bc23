"""The Prometheus text formats (0.0.4 and OpenMetrics 1.0) written straight from the catalogue's samples.

The bytes are prometheus_client's for the same samples (its writers are the reference the tests
compare with), at a fraction of the cost: a scrape of thousands of process series is mostly label
sets repeated across families (4 to 9 per process), so each set is escaped, sorted and joined once
per scrape, not once per sample, and no Metric or Sample object is made per series. Scaphandre's
energy counters carry no `_total` and are written under the name their samples carry.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.utils import floatToGoString

from wattprobe.sinks import catalogue
from wattprobe.sinks.catalogue import Family

TEXT = "text"  # text format 0.0.4
OPENMETRICS = "openmetrics"  # OpenMetrics 1.0


def write(samples: Iterable[catalogue.Sample], naming: str, form: str) -> bytes:
    """Every family of `naming`, in the catalogue's order, each with its samples from `samples`."""
    families = catalogue.families(naming)
    lines: dict[Family, list[str]] = {family: [] for family in families}
    names = {family: family.sample_name(naming) for family in families}
    # id(labels) -> (labels, their text): the dict is kept, so its id is not reused within this scrape.
    label_texts: dict[int, tuple[dict[str, str], str]] = {}
    for sample in samples:
        family, labels = sample.family, sample.labels
        known = label_texts.get(id(labels))
        if known is None:
            known = label_texts[id(labels)] = (labels, _label_text(labels))
        value = floatToGoString(family.value_in(naming, sample.value))
        lines[family].append(f"{names[family]}{known[1]} {value}\n")
    out: list[str] = []
    for family in families:
        out += _header(family, naming, form)
        out += lines[family]
    if form == OPENMETRICS:
        out.append("# EOF\n")
    return "".join(out).encode()


def _label_text(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    pairs = ",".join(f'{key}="{_escape(value)}"' for key, value in sorted(labels.items()))
    return "{" + pairs + "}"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(family: Family, naming: str, form: str) -> list[str]:
    """HELP and TYPE (and OpenMetrics' UNIT) lines, named as prometheus_client names the family."""
    name = family.name(naming) or ""
    kind = family.kind_in(naming)
    unit = family.unit if naming != "scaphandre" and name.endswith("_" + family.unit) else ""
    base = name.removesuffix("_total") if kind == "counter" else name
    if form == OPENMETRICS:
        lines = [f"# HELP {base} {_escape(family.help)}\n", f"# TYPE {base} {kind}\n"]
        return lines + ([f"# UNIT {base} {unit}\n"] if unit else [])
    if kind == "counter":  # Scaphandre's µJ counters keep their name; others get prometheus_client's _total
        shown = family.sample_name(naming)
    elif kind == "info":
        shown, kind = base + "_info", "gauge"
    else:
        shown = base
    help_text = family.help.replace("\\", r"\\").replace("\n", r"\n")
    return [f"# HELP {shown} {help_text}\n", f"# TYPE {shown} {kind}\n"]
