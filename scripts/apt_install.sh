#!/usr/bin/env bash
# apt_install.sh PURPOSE PACKAGE...: install Debian/Ubuntu packages if this user may (root, or password-less sudo).
# Exit status 0 when they are installed, 1 when they cannot be (no apt-get, no rights, or apt-get failed).
# Used by get_dataset.sh (dataset-fashion-mnist) and get_browser.sh (chromium for the demo's browser test).
set -euo pipefail
purpose=$1
shift
command -v apt-get >/dev/null || exit 1
if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else exit 1; fi
APT_LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-600}  # seconds to wait for a dpkg lock held by another apt-get
echo "Installing the Debian/Ubuntu package(s) $* ($purpose)..."
# On a fresh cloud machine another apt-get (unattended upgrades) may hold the dpkg lock for minutes: wait.
if command -v fuser >/dev/null && $SUDO fuser /var/lib/dpkg/lock-frontend >/dev/null 2>&1; then
  echo "Another apt-get holds the dpkg lock; waiting for it (up to ${APT_LOCK_TIMEOUT} s)..."
fi
APT="$SUDO apt-get -o DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT}"
$APT update -qq && $APT install -y -qq --no-install-recommends "$@" >/dev/null
