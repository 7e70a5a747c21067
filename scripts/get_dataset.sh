#!/usr/bin/env bash
# Get Fashion-MNIST during setup. On Debian/Ubuntu, as root (or with password-less sudo), install the
# package dataset-fashion-mnist; elsewhere the loader downloads the files into the Keras cache.
# Then load once: every file is checked against the official SHA-256 before anything else runs.
set -euo pipefail
PYTHON=${PYTHON:-python3}
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${FMNIST_DATA_DIR:-}" ]; then
  bash "$(dirname "$0")/apt_install.sh" "Fashion-MNIST" dataset-fashion-mnist \
    || echo "dataset-fashion-mnist could not be installed with apt-get here; the loader will download the files instead."
fi
"$PYTHON" -c "from fmnist_utils.data import load_data; load_data()"
