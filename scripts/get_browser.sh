#!/usr/bin/env bash
# Chromium and its WebDriver for the browser test of the demo app (tests/test_demo.py), run by `make test`.
# Debian/Ubuntu as root (or with password-less sudo): installs chromium and chromium-driver. Elsewhere it says how,
# and the browser test is skipped with the same message.
set -euo pipefail
if command -v chromedriver >/dev/null && { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
  exit 0
fi
bash "$(dirname "$0")/apt_install.sh" "the browser test of the demo app" chromium chromium-driver \
  || echo "No Chromium: the demo's browser test will be skipped. Install it with: sudo apt-get install chromium chromium-driver"
