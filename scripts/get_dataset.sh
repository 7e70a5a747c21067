#!/usr/bin/env bash
# Get Fashion-MNIST during setup. On Debian/Ubuntu, as root (or with password-less sudo), install the
# package dataset-fashion-mnist; elsewhere the loader downloads the files into the Keras cache.
# Then load once: every file is checked against the official SHA-256 before anything else runs.
set -euo pipefail
PYTHON=${PYTHON:-python3}
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${FMNIST_DATA_DIR:-}" ] && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=skip; fi
  if [ "$SUDO" != skip ]; then
    echo "Installing the Debian/Ubuntu package dataset-fashion-mnist..."
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
      || echo "apt-get could not install dataset-fashion-mnist; the loader will download the files instead."
  fi
fi
"$PYTHON" -c "from fmnist_utils.data import load_data; load_data()"
