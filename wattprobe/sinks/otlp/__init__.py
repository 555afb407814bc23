"""`wattprobe otlp`: the same figures, as OpenTelemetry metrics, to any OTLP/HTTP collector.

sink.py declares the command and its options and needs nothing beyond the standard library (the
command line imports it); metrics.py renders Frames with the OpenTelemetry SDK's data model, and
export.py sends them with its OTLP/HTTP exporter: both are imported only when the output starts.
"""
