#!/usr/bin/env bash
# System packages the tests need: Debian's Chromium and ChromeDriver for the browser test.
# Idempotent; needs root (CI and the dev machines run as root).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install_system_deps: chromium/chromedriver missing and not root; run: sudo apt-get install -y chromium chromium-driver" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium chromium-driver >/dev/null
chromium --version
