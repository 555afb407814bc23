"""Riemann: the sink, and its protobuf messages built from the shipped riemann.proto."""
