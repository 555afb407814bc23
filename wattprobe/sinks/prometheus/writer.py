"""A scrape's body in prometheus_client's words, each series' name and labels written once.

prometheus_client writes every sample whole at every scrape: it checks and escapes the metric's
name and each label's name and value again, which is most of what an idle host's scrape costs in
exposition (0.6 of 0.8 ms for ~100 series). A series' name and labels outlive many scrapes; its
value changes at nearly every one (power is a rate), so reusing whole unchanged families saves
little. This writer asks prometheus_client's own encoder for each family's header, and for the
lines of the series it has not written lately (all of a scrape's at once, with a value of 0.0),
keeps each line up to its value, and at a scrape joins those starts to the values, written as
prometheus_client's `floatToGoString` writes them; a series whose value did not change (an idle
process's memory and disk counters) gets its last line again. The body is byte for byte what the
encoder writes for the same families (tests compare the two). Which processes are exposed changes
from one scrape to the next (those that ran), so a series is kept until it has been missing from
KEEP to 2 * KEEP bodies: what is kept is bounded by what ran lately. Measured with 9,999 process
series from a shared Frame: 14 ms where prometheus_client's exposition takes 67 ms
(docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

Encoder = Callable[..., bytes]  # prometheus_client's generate_latest of one format (a registry in, text out)
_ZERO = b"0.0\n"  # how the encoders end the line of a sample whose value is 0.0
KEEP = 64  # bodies: a series missing from this many to twice as many is forgotten
_INF = float("inf")
_NAN = float("nan")


class Head(NamedTuple):
    """A family as a Metric is made: its name (without _total), help, type and unit; its samples' name."""

    name: str
    help: str
    kind: str
    unit: str
    sample_name: str

    def metric(self) -> Metric:
        return Metric(self.name, self.help, self.kind, self.unit)


# A series' labels, in the order given, as one string: the repr of their (name, value) pairs. A string
# keeps its hash, so that finding a series touches one object, where a tuple of pairs is hashed anew
# through every pair and string (between scrapes a second apart, each one a cache miss).
Labels = str


class _Series:
    """A series' line up to its value, and its last value and whole line."""

    __slots__ = ("line", "start", "value")

    def __init__(self, start: bytes) -> None:
        self.start = start
        self.value: float = _NAN  # equal to no value: the first one is written
        self.line = b""


def _text(value: float) -> bytes:
    """A value as floatToGoString writes it, and the line's end: repr() below 1e6 (neither NaN nor
    infinite), its own way beyond."""
    v = float(value)
    return (repr(v) if -_INF < v < 1e6 else floatToGoString(v)).encode() + b"\n"


class _Registry:
    """What an encoder reads: something whose collect() gives the Metrics."""

    def __init__(self, *metrics: Metric) -> None:
        self._metrics = metrics

    def collect(self) -> Sequence[Metric]:
        return self._metrics


class Writer:
    """Bodies in one encoder's format, keeping each family's header and each series' start between calls.

    `rename(head, text)` may change a family's header as the encoder wrote it."""

    def __init__(self, encode: Encoder, rename: Callable[[Head, bytes], bytes]) -> None:
        self._encode = encode
        self._rename = rename
        self._end = encode(_Registry())  # what follows the last family: "# EOF" in OpenMetrics
        self._heads: dict[Head, tuple[bytes, bytes]] = {}  # as the encoder wrote it, as renamed
        # Each series by family and labels: used since the last turn, in the KEEP before.
        self._starts: dict[Head, dict[Labels, _Series]] = {}
        self._older: dict[Head, dict[Labels, _Series]] = {}
        self._bodies = 0
        # Each dict of labels of the last body, with its key, by id: the samples of one process share one
        # dict, which a caller may keep from one body to the next (the entry holds it: its id names no other).
        self._keys: dict[int, tuple[dict[str, str], Labels]] = {}

    def body(self, families: Iterable[tuple[Head, Iterable[tuple[dict[str, str], float]]]]) -> bytes:
        """The text of `families`, each with its samples' (labels, value), in the order given."""
        starts, older = self._starts, self._older
        before = self._keys
        seen: dict[int, tuple[dict[str, str], Labels]] = {}
        out: list[bytes] = []
        missing: dict[Head, dict[Labels, dict[str, str]]] = {}  # series never written, or not lately
        pending: list[tuple[int, Head, Labels, float]] = []  # where their lines go, and their values
        for head, samples in families:
            out.append((self._heads.get(head) or self._head(head))[1])
            known = starts.setdefault(head, {})
            for labels, value in samples:
                at = id(labels)
                kept = seen.get(at)
                if kept is None:  # the first sample with these labels in this body
                    kept = before.get(at)
                    if kept is None or kept[0] is not labels:
                        kept = (labels, repr(tuple(labels.items())))
                    seen[at] = kept
                key = kept[1]
                series = known.get(key)
                if series is None:
                    series = older.get(head, {}).get(key)
                    if series is None:
                        missing.setdefault(head, {})[key] = labels
                        pending.append((len(out), head, key, value))
                        out.append(b"")
                        continue
                    known[key] = series
                # The same value writes the same text; a zero is written anew (-0.0 == 0.0).
                if value != series.value or not value:
                    series.value = value
                    series.line = series.start + _text(value)
                out.append(series.line)
        if missing:
            self._learn(missing)
            for at, head, key, value in pending:
                series = starts[head][key]
                series.value = value
                series.line = series.start + _text(value)
                out[at] = series.line
        out.append(self._end)
        self._keys = seen
        self._bodies += 1
        if self._bodies % KEEP == 0:
            self._older, self._starts = starts, {}
        return b"".join(out)

    def _head(self, head: Head) -> tuple[bytes, bytes]:
        text = self._written(head.metric())
        self._heads[head] = (text, self._rename(head, text))
        return self._heads[head]

    def _learn(self, missing: dict[Head, dict[Labels, dict[str, str]]]) -> None:
        """Each series' line up to its value, as the encoder writes them all at once (a value of 0.0)."""
        metrics = []
        for head, series in missing.items():
            metric = head.metric()
            for labels in series.values():
                metric.add_sample(head.sample_name, labels, 0.0)
            metrics.append(metric)
        text = self._written(*metrics)
        at = 0
        for head, series in missing.items():
            header = self._heads[head][0]
            if not text.startswith(header, at):
                raise RuntimeError(f"prometheus_client wrote {text[at : at + 80]!r} where {header!r} was due")
            at += len(header)
            known = self._starts[head]
            for key in series:
                end = text.index(b"\n", at) + 1
                if not text.endswith(b" " + _ZERO, at, end):
                    raise RuntimeError(f"prometheus_client wrote {text[at:end]!r} for one sample of 0.0")
                known[key] = _Series(text[at : end - len(_ZERO)])
                at = end
        if at != len(text):
            raise RuntimeError(f"prometheus_client wrote more than asked: {text[at : at + 80]!r}")

    def _written(self, *metrics: Metric) -> bytes:
        text = self._encode(_Registry(*metrics))
        return text[: len(text) - len(self._end)]
