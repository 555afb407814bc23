"""Streams in other tools' formats (the Green Metrics Tool's metric providers)."""
