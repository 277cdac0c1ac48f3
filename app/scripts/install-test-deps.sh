#!/usr/bin/env bash
# Installs what the reference app's tests need on a fresh Debian machine, as root:
# PostgreSQL server binaries, Chromium with its driver, and Azurite (npm, pinned by
# app/package-lock.json). Idempotent; starts nothing (the tests run their own servers).
set -euo pipefail
APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps.sh: run as root (it installs Debian packages)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
# postgresql: initdb/pg_ctl under /usr/lib/postgresql/<major>/bin, and the 'postgres'
# system user the tests run the server as when they run as root (initdb refuses root).
# util-linux: runuser. nodejs/npm: only if missing (the machine may ship newer ones).
packages=(postgresql chromium chromium-driver util-linux)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
apt-get install -y --no-install-recommends "${packages[@]}"

# Azurite, exactly as locked (3.35.0: later releases require Node 21+, Debian-family
# machines here have Node 20); --ignore-scripts: nothing in its tree needs to build.
npm ci --prefix "$APP_DIR" --no-audit --no-fund --ignore-scripts

echo "install-test-deps.sh: done ($(ls -d /usr/lib/postgresql/*/bin | tail -1); $(chromium --version 2>/dev/null | head -1); azurite $("$APP_DIR/node_modules/.bin/azurite-blob" --version))"
