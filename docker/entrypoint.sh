#!/usr/bin/env bash
# Entrypoint of the Fashion-MNIST notebook image (installed as /usr/local/bin/fmnist-entrypoint).
#
#   docker run IMAGE              -> JupyterLab on port 8888, protected by a token (the default CMD "lab")
#   docker run IMAGE COMMAND ...  -> runs COMMAND instead, e.g. `python3 -m pytest --nbval-lax notebooks`
#
# Environment:
#   JUPYTER_TOKEN       token for JupyterLab; a random one is generated and printed when unset or empty.
#                       Jupyter is never started without a token.
#   FMNIST_REQUIRE_GPU  1: exit with an error unless TensorFlow sees a working GPU (used by the GPU CI job).
#   FMNIST_ROOT_DIR     folder JupyterLab opens (default: the project, /workspace).
set -euo pipefail

PORT=8888
ROOT_DIR="${FMNIST_ROOT_DIR:-/workspace}"
CUDA_WHEELS_CONF=/etc/ld.so.conf.d/00-tensorflow-cuda-wheels.conf

say() { printf '[fmnist] %s\n' "$*"; }

# TensorFlow loads the CUDA/cuDNN libraries from NVIDIA's pip wheels (docker/requirements-cuda.txt); put their
# folders first on the library path, so that no other copy (a derived image's, a mounted one) can shadow them.
if [[ -s "$CUDA_WHEELS_CONF" ]]; then
    wheel_libs="$(paste -sd: "$CUDA_WHEELS_CONF")"
    export LD_LIBRARY_PATH="${wheel_libs}${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"
fi

# Report (and with FMNIST_REQUIRE_GPU=1 enforce) whether TensorFlow can use a GPU.
check_gpu() {
    if [[ "${FMNIST_REQUIRE_GPU:-0}" == "1" ]]; then
        if ! fmnist-gpu-check --require; then
            say "FMNIST_REQUIRE_GPU=1 and TensorFlow has no working GPU: stopping." >&2
            exit 1
        fi
    else
        # Only a report: the notebooks also run (slower, with the quick profile) on the CPU.
        fmnist-gpu-check || say "The GPU check itself failed; see the message above."
    fi
}

if [[ $# -gt 0 && "$1" != "lab" ]]; then
    if [[ "${FMNIST_REQUIRE_GPU:-0}" == "1" ]]; then
        check_gpu
    fi
    exec "$@"
fi
if [[ $# -gt 0 ]]; then
    shift  # "lab"
fi
if [[ $# -gt 0 ]]; then
    say "Extra arguments after 'lab' are not supported: $*" >&2
    say "Run the command you want instead, e.g. docker run IMAGE jupyter lab --help" >&2
    exit 2
fi

check_gpu

# A token is mandatory: use JUPYTER_TOKEN when it is set and not blank, else make a random one.
token="${JUPYTER_TOKEN:-}"
token="${token//[[:space:]]/}"
generated=0
if [[ -z "$token" ]]; then
    token="$(python3 -c 'import secrets; print(secrets.token_hex(24))' || true)"
    generated=1
fi
if [[ ! "$token" =~ ^[[:graph:]]+$ ]]; then
    say "ERROR: could not create a Jupyter token; refusing to start Jupyter without one." >&2
    exit 1
fi
# Keep the token out of the kernels' environment (and so out of notebook outputs).
unset JUPYTER_TOKEN

say "JupyterLab is starting on port ${PORT}; folder ${ROOT_DIR}."
if [[ "$generated" == "1" ]]; then
    say "Open:  http://localhost:${PORT}/lab?token=${token}"
    say "(a random token; set JUPYTER_TOKEN to choose your own. With another published host port, change ${PORT} in the URL.)"
else
    say "Open:  http://localhost:${PORT}/lab  and log in with the value of JUPYTER_TOKEN."
fi

# The token goes to Jupyter in a config file that only this user can read, never on the command line,
# where anyone who can list processes (`ps` on the host, too) would see it.
config_dir="$(mktemp -d "${TMPDIR:-/tmp}/fmnist-jupyter-XXXXXX")"
config_file="${config_dir}/jupyter_server_config.json"
(
    umask 077
    FMNIST_JUPYTER_TOKEN="$token" python3 -c '
import json, os, sys
json.dump({"IdentityProvider": {"token": os.environ["FMNIST_JUPYTER_TOKEN"]}}, open(sys.argv[1], "w"))
' "$config_file"
) || { say "ERROR: could not write Jupyter's token file; refusing to start Jupyter without a token." >&2; exit 1; }

exec jupyter lab \
    --ip=0.0.0.0 \
    --port="${PORT}" \
    --no-browser \
    --ServerApp.root_dir="${ROOT_DIR}" \
    --config="${config_file}"
