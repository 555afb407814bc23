"""One export per Frame through the OpenTelemetry SDK's OTLP/HTTP exporter, with its outcome said in
one line: Retry when the collector may take it later, Fatal when it never will.

The exporter retries by itself (429, 502, 503, 504 and connection errors, with backoff, Retry-After
honoured), but only while its deadline allows: every attempt, and every wait between two, fits in the
`timeout_s` it is given, so an export returns within that time whatever the collector does. Its own
log lines (one per attempt) go to the debug log: the outage is said once, by whoever retries the Frame.
"""

from __future__ import annotations

import logging
import re
import ssl
from typing import Any

import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData

from wattprobe.errors import WattprobeError
from wattprobe.sinks import Fatal, Retry

log = logging.getLogger(__name__)

RETRYABLE = frozenset({408, 429})  # 4xx answers worth sending again; 5xx always are
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+|timed out|certificate verify failed[^'\")]*")
_SDK_LOGGER = "opentelemetry.exporter.otlp"


class _ToDebug(logging.Handler):
    """The SDK exporter's lines, at debug level under this module's logger."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("exporter: %s", record.getMessage())


def _quiet_sdk_logs() -> None:
    sdk = logging.getLogger(_SDK_LOGGER)
    if not any(isinstance(h, _ToDebug) for h in sdk.handlers):
        sdk.addHandler(_ToDebug())
        sdk.propagate = False


class _Recording(requests.Session):
    """A requests session that remembers how its last request ended, to say why an export failed, and
    that keeps the CA it was given: requests would otherwise trust REQUESTS_CA_BUNDLE instead."""

    status: int | None = None
    outcome = ""

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("verify", self.verify)
        try:
            response = super().request(method, url, *args, **kwargs)
        except Exception as error:
            self.status, self.outcome = None, reason(error)
            raise
        self.status, self.outcome = response.status_code, f"HTTP {response.status_code} {response.reason}"
        return response


def reason(error: BaseException) -> str:
    """The useful end of a requests error ("[Errno 111] Connection refused"), else its type."""
    found = _ERRNO.search(str(error))
    return found.group(0).strip() if found else type(error).__name__


def check_tls(ca_file: str | None, cert_file: str | None, key_file: str | None) -> None:
    """WattprobeError, at start, for a TLS file that is missing or not what it should be."""
    try:
        if ca_file:
            ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as error:
        raise WattprobeError(f"--ca-file {ca_file}: not a readable PEM certificate ({error})") from None
    try:
        if cert_file:
            ssl.create_default_context().load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as error:
        what = "--cert-file and --key-file" if key_file else "--cert-file (without --key-file)"
        raise WattprobeError(
            f"{what}: not a readable PEM certificate and its private key ({error})"
        ) from None


class Exporter:
    """Exports MetricsData to `url` (the full .../v1/metrics URL), one request per call."""

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str],
        timeout_s: float,
        compression: str | None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> None:
        check_tls(ca_file, cert_file, key_file)
        _quiet_sdk_logs()
        self.url = url
        self.timeout_s = timeout_s
        self._session = _Recording()
        # Not given: the SDK reads the standard environment (headers, compression, certificates).
        self._exporter = OTLPMetricExporter(
            endpoint=url,
            certificate_file=ca_file,
            client_certificate_file=cert_file,
            client_key_file=key_file,
            headers=headers,
            timeout=timeout_s,
            compression=Compression(compression) if compression else None,
            session=self._session,
        )

    def export(self, data: MetricsData) -> None:
        self._session.status, self._session.outcome = None, ""
        result = self._exporter.export(data, timeout_millis=self.timeout_s * 1000)
        if result is MetricExportResult.SUCCESS:
            return
        status = self._session.status
        why = self._session.outcome or "the export failed"
        if status is not None and 400 <= status < 500 and status not in RETRYABLE:
            raise Fatal(
                f"the collector at {self.url} refused the metrics: {why} (check --endpoint and --headers)"
            )
        raise Retry(why)

    def close(self) -> None:
        self._exporter.shutdown()
