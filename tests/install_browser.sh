#!/usr/bin/env bash
# Installs what the report's browser test (tests/test_report_browser.py) runs: Debian's chromium,
# headless. Does nothing when a browser is present; without root or apt-get it says so and the test
# skips (CI sets AOIDEFT_REQUIRE_BROWSER=1, where a missing browser fails instead).
set -euo pipefail
for browser in chromium chromium-browser google-chrome; do
  if command -v "$browser" >/dev/null; then
    exit 0
  fi
done
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install_browser.sh: not root or no apt-get; the report's browser test will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "install_browser.sh: installed $(chromium --version)"
