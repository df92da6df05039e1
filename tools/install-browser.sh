#!/usr/bin/env bash
# Installs Debian's Chromium and ChromeDriver for the report's browser test
# (tests/test_report_browser.py), when they are missing and this can install them.
# Quiet and idempotent; never fails the caller: without a browser that test skips
# and says why.
set -u
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-browser: not root or no apt-get; the browser test will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt_install() {
  apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends chromium chromium-driver
}
apt_install >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt_install >/dev/null 2>&1; } \
  || echo "install-browser: apt-get could not install chromium; the browser test will be skipped" >&2
exit 0
