"""Prometheus: the pull sink (sink, its HTTP server) and the push sink (push), both rendering the
metric families of families.py with the series options of series.py."""
