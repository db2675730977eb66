#!/usr/bin/env bash
# System packages the tests need: Debian's Chromium and ChromeDriver for the browser test, and
# bubblewrap (bwrap) for the OS isolation of the agent's python tool (util-linux's unshare and
# setpriv are the fallback; they ship with every Debian).
# Idempotent; needs root (CI and the dev machines run as root).
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install_system_deps: ${missing[*]} missing and not root; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
chromium --version
bwrap --version
