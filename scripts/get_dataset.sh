#!/usr/bin/env bash
# Get Fashion-MNIST during setup. On Debian/Ubuntu, as root (or with password-less sudo), install the
# package dataset-fashion-mnist; elsewhere the loader downloads the files into the Keras cache.
# Then load once: every file is checked against the official SHA-256 before anything else runs.
set -euo pipefail
PYTHON=${PYTHON:-python3}
APT_LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-600}  # seconds to wait for a dpkg lock held by another apt-get
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${FMNIST_DATA_DIR:-}" ] && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=skip; fi
  if [ "$SUDO" != skip ]; then
    echo "Installing the Debian/Ubuntu package dataset-fashion-mnist..."
    # On a fresh cloud machine another apt-get (unattended upgrades) may hold the dpkg lock for minutes: wait.
    if command -v fuser >/dev/null && $SUDO fuser /var/lib/dpkg/lock-frontend >/dev/null 2>&1; then
      echo "Another apt-get holds the dpkg lock; waiting for it (up to ${APT_LOCK_TIMEOUT} s)..."
    fi
    APT="$SUDO apt-get -o DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT}"
    $APT update -qq && $APT install -y -qq dataset-fashion-mnist >/dev/null \
      || echo "apt-get could not install dataset-fashion-mnist; the loader will download the files instead."
  fi
fi
"$PYTHON" -c "from fmnist_utils.data import load_data; load_data()"
