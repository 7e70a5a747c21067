# JupyterLab with the Fashion-MNIST notebooks, for NVIDIA GPUs (x86_64). Build and run: docs/docker.md,
# or simply `docker compose up --build`. `make docker-smoke` builds it and checks the running server.
#
# The base is Python's official slim Debian image, with the Python version the project is tested on;
# TensorFlow, CUDA and cuDNN come as pip wheels (requirements.txt, docker/requirements-cuda.txt).
# docs/docker.md says why not TensorFlow's own GPU images. Keep the Python minor version equal to
# the one in .ci and README; tests/test_docker.py checks it.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# The non-root user that runs Jupyter. Build with --build-arg NB_UID=$(id -u) --build-arg NB_GID=$(id -g)
# so that files it writes into bind-mounted host folders (results/) belong to you.
ARG NB_USER=fmnist
ARG NB_UID=1000
ARG NB_GID=1000

# Several notebooks share the GPU in one Jupyter server: TensorFlow takes GPU memory as it needs it instead of
# almost all of it per kernel, and JAX does not pre-allocate 75 % of it.
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=1 \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    XLA_PYTHON_CLIENT_PREALLOCATE=false \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH}

# The dataset comes from Debian's dataset-fashion-mnist package, into /usr/share/datasets/fashion-mnist/,
# where fmnist_utils.data.load_data() looks first. Unpinned: Debian publishes one version of it per
# release, and the loader checks the SHA-256 of every file anyway.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid "${NB_GID}" "${NB_USER}" \
    && useradd --no-log-init --create-home --uid "${NB_UID}" --gid "${NB_GID}" --shell /bin/bash "${NB_USER}"

# Python packages, in a virtual environment: the project's exact pins, plus the CUDA/cuDNN wheels that
# match TensorFlow (see the file). Their library folders are registered with the dynamic linker.
# Behind a TLS-inspecting proxy, give pip your CA bundle as the build secret `ca-bundle`
# (docker build --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt .): it is mounted for
# the steps that download and never stored in the image.
COPY requirements.txt docker/requirements-cuda.txt /tmp/fmnist-requirements/
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && python3 -m venv "${VIRTUAL_ENV}" \
    && python3 -m pip install --no-cache-dir \
        -r /tmp/fmnist-requirements/requirements.txt \
        -r /tmp/fmnist-requirements/requirements-cuda.txt \
    && python3 -c "import glob, os, nvidia; print('\n'.join(sorted(d for p in nvidia.__path__ for d in glob.glob(os.path.join(p, '*', 'lib')))))" \
        > /etc/ld.so.conf.d/00-tensorflow-cuda-wheels.conf \
    && ldconfig \
    && rm -rf /tmp/fmnist-requirements

# The project: notebooks, fmnist_utils, tests, images, results, README (.dockerignore leaves out
# virtual environments, caches, run logs and git). fmnist_utils is installed as a package.
WORKDIR /workspace
COPY --chown=${NB_UID}:${NB_GID} . /workspace
# (pip fetches the package's build backend, setuptools, so this step takes the CA secret too.)
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && python3 -m pip install --no-cache-dir --no-deps /workspace \
    && rm -rf /workspace/build /workspace/fmnist_utils.egg-info \
    && install -m 0755 /workspace/docker/entrypoint.sh /usr/local/bin/fmnist-entrypoint \
    && install -m 0755 /workspace/docker/gpu_check.py /usr/local/bin/fmnist-gpu-check \
    && install -D -m 0644 /workspace/scripts/jupyterlab_overrides.json \
        "${VIRTUAL_ENV}/share/jupyter/lab/settings/overrides.json" \
    && install -d -o "${NB_UID}" -g "${NB_GID}" /workspace/results "/home/${NB_USER}/.keras"

USER ${NB_UID}:${NB_GID}
ENV HOME=/home/${NB_USER} \
    KERAS_HOME=/home/${NB_USER}/.keras

# Check the packaged dataset now: load_data() verifies the SHA-256 of every file.
RUN python3 -c "from fmnist_utils.data import load_data; load_data()"

EXPOSE 8888
# /api answers without a token; it only tells that the server is up. (podman keeps HEALTHCHECK only
# when building with --format docker, as scripts/docker_smoke.py does.)
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/api', timeout=5)"]

ENTRYPOINT ["/usr/local/bin/fmnist-entrypoint"]
CMD ["lab"]
