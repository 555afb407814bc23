"""Property tests of the agent's configuration loader: whatever a file holds, `load()` gives typed
settings, or one WattprobeError (UsageError for a wrong document) in one line, and soon.

Documents are generated as TOML, with the keys the loader knows (the top-level step and timeout, the
`[sensor]` options, every output and its options) mixed with unknown ones, and values of every TOML
type; then some are damaged: bytes spliced in (invalid UTF-8 among them), or cut short.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattprobe import sinks
from wattprobe.commands import agent
from wattprobe.commands.agent import AgentSettings, load
from wattprobe.errors import WattprobeError
from wattprobe.sources import SourceSettings

BOUND_S = 1.0  # per document; a few ms in practice


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


OUTPUT_KEYS = {name: _fields(sinks.module(name).Settings) for name in [*sinks.SINKS, *sinks.ALIASES]}
KNOWN_KEYS = sorted({key for keys in OUTPUT_KEYS.values() for key in keys} | set(_fields(SourceSettings)))

names = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=12))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", ".", "..", "/", "same.json", "./same.json", "-", "/dev/null", "auto", "estimate"]),
    st.datetimes(timezones=st.none() | st.just(datetime.UTC)),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=4),
    max_leaves=12,
)


# Values a key may well expect, so that some documents load: drawn as often as any other value.
plausible = st.one_of(
    st.booleans(),
    st.integers(min_value=1, max_value=65535),
    st.floats(min_value=0.01, max_value=1000),
    st.sampled_from(["127.0.0.1", "out.json", "hwpc", "power", "native", "scaphandre", "estimate", "auto"]),
)


@st.composite
def mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
    """`usual` nine times in ten, else `other`: a document with one wrong key in ten loads often enough."""
    return draw(usual if draw(st.integers(0, 9)) else other)


value = mostly(plausible, values)


def maybe_unknown(known: list[str]) -> st.SearchStrategy[str]:
    """Mostly one of the `known` keys, sometimes any."""
    return mostly(st.sampled_from(known), names)


@st.composite
def output_table(draw: st.DrawFn, name: str) -> dict[str, Any]:
    return draw(st.dictionaries(maybe_unknown(OUTPUT_KEYS.get(name) or ["x"]), value, max_size=3))


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    document = draw(st.dictionaries(maybe_unknown(["step", "timeout"]), value, max_size=2))
    if draw(st.booleans()):
        document["sensor"] = draw(st.dictionaries(maybe_unknown(_fields(SourceSettings)), value, max_size=3))
    outputs: dict[str, Any] = {}
    for name in draw(st.lists(maybe_unknown([*sinks.SINKS, *sinks.ALIASES]), max_size=3)):
        if draw(st.integers(0, 3)):
            outputs[name] = draw(output_table(name))
        else:  # an array of tables: the output run more than once
            outputs[name] = draw(st.lists(output_table(name), max_size=3))
    if outputs or draw(st.booleans()):
        document["outputs"] = outputs if draw(st.integers(0, 9)) else draw(values)
    return document


def toml(value: Any) -> str:
    """A value in TOML (tables inline): enough to write what `documents` draws."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{quoted(k)} = {toml(v)}" for k, v in value.items()) + "}"


def quoted(text: str) -> str:
    """A TOML basic string: quote, backslash and what is not printable escaped, the rest as is."""
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}" for c in text) + '"'


def text_of(document: dict[str, Any]) -> str:
    return "".join(f"{quoted(key)} = {toml(value)}\n" for key, value in document.items())


@st.composite
def files(draw: st.DrawFn) -> bytes:
    """A document's bytes, maybe damaged: bytes spliced in, or cut short."""
    data = text_of(draw(documents())).encode()
    how = draw(st.sampled_from(["as is", "as is", "splice", "cut"]))
    if how == "splice":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif how == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    return data


@pytest.fixture(scope="module")
def config_path() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "agent.toml"


def check(config_path: Path, data: bytes) -> None:
    config_path.write_bytes(data)
    started = time.monotonic()
    try:
        config = load(str(config_path))
    except WattprobeError as error:
        message = str(error)
        assert message.startswith(str(config_path)) and message.splitlines() == [message], message
    else:
        assert isinstance(config.agent, AgentSettings) and isinstance(config.sources, SourceSettings)
        assert config.outputs
        for output in config.outputs:
            assert isinstance(output.settings, output.module.Settings)
    assert time.monotonic() - started < BOUND_S


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=files())
def test_any_file_gives_settings_or_one_line(config_path, data):
    check(config_path, data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_any_bytes_give_settings_or_one_line(config_path, data):
    check(config_path, data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"step = 1\n# \xff\xfe\n[outputs.stdout]\n", "line 2: byte 0xff is not UTF-8"),
        (b"a = " + b"[" * 5000, "nested too deep"),
        (b"a = " + b"1" * 5000, "a number too long to read"),
        (b'[outputs."a\\nb"]\n', 'unknown output [outputs."a\\nb"]'),
        (b'[outputs.json]\nfile = "a\\u0000b"\n', "[outputs.json]: file: a NUL character cannot be in"),
        (b"sensor = [" + b"1, " * 1000 + b"]\n", "sensor must be a table ([sensor]), got [1, 1, "),
    ],
)
def test_what_tomllib_raises_is_one_usage_error(config_path, data, message):
    """tomllib raises UnicodeDecodeError, RecursionError or ValueError besides TOMLDecodeError."""
    config_path.write_bytes(data)
    with pytest.raises(agent.UsageError) as error:
        load(str(config_path))
    assert message in str(error.value) and len(str(error.value)) < 200
