"""A scrape's body in prometheus_client's words, each series' name and labels written once.

prometheus_client writes every sample whole at every scrape: it checks and escapes the metric's
name and each label's name and value again, which is most of what an idle host's scrape costs in
exposition (0.6 of 0.8 ms for ~100 series). A series' name and labels outlive many scrapes; its
value changes at nearly every one (power is a rate), so reusing whole unchanged families saves
little. This writer asks prometheus_client's own encoder for each family's header and for the
line of each series it has not written before, keeps the line up to its value, and at a scrape
joins those starts to the values, formatted by prometheus_client's `floatToGoString`. The body is
byte for byte what the encoder writes for the same families (tests compare the two). Which
processes are exposed changes from one scrape to the next (those that ran), so a series is kept
until it has been missing from KEEP to 2 * KEEP bodies: what is kept is bounded by what ran lately.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

Encoder = Callable[..., bytes]  # prometheus_client's generate_latest of one format (a registry in, text out)
_ZERO = b"0.0\n"  # how the encoders end the line of a sample whose value is 0.0
KEEP = 64  # bodies: a series missing from this many to twice as many is forgotten


class Head(NamedTuple):
    """A family as a Metric is made: its name (without _total), help, type and unit; its samples' name."""

    name: str
    help: str
    kind: str
    unit: str
    sample_name: str

    def metric(self) -> Metric:
        return Metric(self.name, self.help, self.kind, self.unit)


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
        self._starts: dict[tuple[Head, tuple[tuple[str, str], ...]], bytes] = {}  # used since the last turn
        self._older: dict[tuple[Head, tuple[tuple[str, str], ...]], bytes] = {}  # used in the KEEP before
        self._bodies = 0

    def body(self, families: Iterable[tuple[Head, Iterable[tuple[dict[str, str], float]]]]) -> bytes:
        """The text of `families`, each with its samples' (labels, value), in the order given."""
        out: list[bytes] = []
        starts, older = self._starts, self._older
        for head, samples in families:
            out.append((self._heads.get(head) or self._head(head))[1])
            for labels, value in samples:
                key = (head, tuple(labels.items()))
                start = starts.get(key)
                if start is None:
                    start = starts[key] = older.get(key) or self._start(head, labels)
                out.append(start + floatToGoString(value).encode() + b"\n")
        out.append(self._end)
        self._bodies += 1
        if self._bodies % KEEP == 0:
            self._older, self._starts = starts, {}
        return b"".join(out)

    def _head(self, head: Head) -> tuple[bytes, bytes]:
        text = self._written(head.metric())
        self._heads[head] = (text, self._rename(head, text))
        return self._heads[head]

    def _start(self, head: Head, labels: dict[str, str]) -> bytes:
        """The encoder's line for this series, up to its value."""
        metric = head.metric()
        metric.add_sample(head.sample_name, labels, 0.0)
        text = self._written(metric)
        header = self._heads[head][0]
        if not (text.startswith(header) and text.endswith(_ZERO)):
            raise RuntimeError(f"prometheus_client wrote {text[len(header) :]!r} for one sample of 0.0")
        return text[len(header) : -len(_ZERO)]

    def _written(self, metric: Metric) -> bytes:
        text = self._encode(_Registry(metric))
        return text[: len(text) - len(self._end)]
