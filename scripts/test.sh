#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run it.
# Usage: scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests run for real (a Prometheus server, a Pushgateway, a browser that renders
# wattprobe run's HTML report, and the exporters the peers benchmark runs next to wattprobe).
APT_PACKAGES=(prometheus prometheus-pushgateway chromium prometheus-node-exporter prometheus-process-exporter)
# A real container engine (Podman with runc, and a static busybox for its image) for containers' names.
APT_PACKAGES+=(podman runc busybox-static)
missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packages start their services; the tests run their own instances on loopback.
  for service in "${missing[@]}"; do $SUDO systemctl stop "$service" 2>/dev/null || true; done
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
ruff check .
ruff format --check .
mypy
NO_MKDOCS_2_WARNING=1 python3 -m mkdocs build --strict -d "$(mktemp -d)"  # not -q: it stops --strict counting warnings
python3 -m pytest "$@"
