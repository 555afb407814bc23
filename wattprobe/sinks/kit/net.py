"""Network addresses as URLs and log lines write them."""

from __future__ import annotations


def netloc(host: str, port: int) -> str:
    """HOST:PORT, with an IPv6 address in brackets (given with or without them)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"
