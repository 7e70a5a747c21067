# JupyterLab with the Fashion-MNIST notebooks on TensorFlow's GPU image (x86_64, NVIDIA CUDA).
# Build and run: see docs/docker.md, or simply `docker compose up --build`.
#
# The tag must match the tensorflow pin in requirements.txt; tests/test_docker.py checks that,
# and runs hadolint on this file.
FROM tensorflow/tensorflow:2.21.0-gpu-jupyter

# The non-root user that runs Jupyter. Build with --build-arg NB_UID=$(id -u) --build-arg NB_GID=$(id -g)
# so that files it writes into bind-mounted host folders (results/) belong to you.
ARG NB_USER=fmnist
ARG NB_UID=1000
ARG NB_GID=1000

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    TF_CPP_MIN_LOG_LEVEL=1

# The dataset comes from Ubuntu's dataset-fashion-mnist package (universe), into
# /usr/share/datasets/fashion-mnist/, where fmnist_utils.data.load_data() looks first. Should this
# Ubuntu release not have the package, a later step downloads the dataset instead.
# Unpinned: Ubuntu publishes one version of it per release, and the loader checks the SHA-256
# of every file anyway.
# hadolint ignore=DL3008
RUN (apt-get update || echo "warning: apt-get update reported errors") \
    && if DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dataset-fashion-mnist; then \
           echo "Fashion-MNIST: installed from the dataset-fashion-mnist package"; \
       else \
           echo "Fashion-MNIST: package dataset-fashion-mnist unavailable; the dataset will be downloaded below"; \
       fi \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid "${NB_GID}" "${NB_USER}" \
    && useradd --no-log-init --create-home --uid "${NB_UID}" --gid "${NB_GID}" --shell /bin/bash "${NB_USER}"

# Python packages: the project's exact pins, plus the CUDA/cuDNN wheels that match TensorFlow
# (the base image's system CUDA libraries are older than this TensorFlow needs; see the file).
# The wheels' library folders are registered with the dynamic linker; the entrypoint also puts
# them first on LD_LIBRARY_PATH.
COPY requirements.txt docker/requirements-cuda.txt /tmp/fmnist-requirements/
RUN python3 -m pip install --no-cache-dir \
        -r /tmp/fmnist-requirements/requirements.txt \
        -r /tmp/fmnist-requirements/requirements-cuda.txt \
    && python3 -c "import glob, os, nvidia; print('\n'.join(sorted(d for p in nvidia.__path__ for d in glob.glob(os.path.join(p, '*', 'lib')))))" \
        > /etc/ld.so.conf.d/00-tensorflow-cuda-wheels.conf \
    && ldconfig \
    && rm -rf /tmp/fmnist-requirements

# The project: notebooks, fmnist_utils, tests, images, results, README (.dockerignore leaves out
# virtual environments, caches and git). fmnist_utils is installed as a package.
WORKDIR /workspace
COPY --chown=${NB_UID}:${NB_GID} . /workspace
RUN python3 -m pip install --no-cache-dir --no-deps /workspace \
    && rm -rf /workspace/build /workspace/fmnist_utils.egg-info \
    && install -m 0755 /workspace/docker/entrypoint.sh /usr/local/bin/fmnist-entrypoint \
    && install -m 0755 /workspace/docker/gpu_check.py /usr/local/bin/fmnist-gpu-check \
    && install -D -m 0644 /workspace/scripts/jupyterlab_overrides.json \
        "$(python3 -c 'import sys; print(sys.prefix)')/share/jupyter/lab/settings/overrides.json" \
    && install -d -o "${NB_UID}" -g "${NB_GID}" /workspace/results "/home/${NB_USER}/.keras"

USER ${NB_UID}:${NB_GID}
ENV HOME=/home/${NB_USER} \
    KERAS_HOME=/home/${NB_USER}/.keras

# Check the dataset now: the packaged copy is verified by SHA-256; without the package this
# downloads it from Keras' mirror into the Keras cache ($KERAS_HOME/datasets/fashion-mnist).
RUN python3 -c "from fmnist_utils.data import load_data; load_data()"

EXPOSE 8888
# /api answers without a token; it only tells that the server is up.
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/api', timeout=5)"]

ENTRYPOINT ["/usr/local/bin/fmnist-entrypoint"]
CMD ["lab"]
