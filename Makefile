# Task runner. README's two commands: `make test` (set up, then run every test) and `make lab` (start JupyterLab).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NOTEBOOKS ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# Unset: each notebook chooses by hardware (full when a GPU is visible, else quick), as it does in JupyterLab.
PROFILE ?=
# Jupyter refuses to run as root (containers, CI machines) unless told to.
LAB_ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
# JupyterLab settings that every user of this venv gets; see scripts/jupyterlab_overrides.json.
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json

.PHONY: setup lab test browser demo notebooks results bench speedrun search docker-smoke web web-vendor

setup: $(VENV)/.ready $(LAB_OVERRIDES)

# Each step says what it does; pip shows its own progress for the pins. fmnist_utils goes in with -qq (errors
# only): with -q, pip 26 still relays setuptools' "Editable installation" warning banner, which is only noise here.
$(VENV)/.ready: requirements.txt pyproject.toml scripts/get_dataset.sh scripts/apt_install.sh
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null || { \
	  echo "The pins in requirements.txt need Python 3.11 to 3.13, and $(PYTHON) is $$($(PYTHON) --version 2>/dev/null || echo 'not found')." \
	    "Name another one, e.g. make setup PYTHON=python3.11" >&2; exit 1; }
	@echo "[1/4] Creating the virtual environment $(VENV) with $$($(PYTHON) --version)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "[2/4] Installing the exact pins of requirements.txt (TensorFlow, JAX, JupyterLab and what they need: a few minutes on a first install)"
	@$(BIN)/python -m pip install -r requirements.txt
	@echo "[3/4] Installing fmnist_utils from this folder (editable: changes to its code apply without reinstalling)"
	@$(BIN)/python -m pip install -qq --no-deps -e .
	@echo "[4/4] Getting and verifying the Fashion-MNIST data"
	@PYTHON=$(BIN)/python bash scripts/get_dataset.sh
	@touch $@
	@echo "Setup done: $(VENV) is ready."

# No pop-up asking to fetch Jupyter's news on first start.
$(LAB_OVERRIDES): scripts/jupyterlab_overrides.json $(VENV)/.ready
	@echo "JupyterLab: no news pop-up on first start ($@)"
	@mkdir -p $(@D)
	@cp scripts/jupyterlab_overrides.json $@

lab: setup
	$(BIN)/jupyter lab $(LAB_ROOT_FLAG) notebooks/

# Unit tests, Makefile/Docker/workflow checks, the demo app in a real browser, and every notebook executed by nbval
# in the small CI profile.
test: setup browser web-vendor
	FMNIST_PROFILE=smoke $(BIN)/python -m pytest

# Chromium for the demo's browser test: installed with apt-get where this user may, else a message (the test skips).
browser:
	@bash scripts/get_browser.sh

# Notebook 10's web page (web/): its npm dependencies, pinned in web/package-lock.json, copied into web/vendor/.
web-vendor: web/vendor/.ready

web/vendor/.ready: web/package.json web/package-lock.json scripts/web_vendor.sh
	@bash scripts/web_vendor.sh

# The page on http://127.0.0.1:8000 (make web PORT=8080 for another port): a static server, as GitHub Pages is.
web: web-vendor
	@echo "Serving web/ on http://127.0.0.1:$(or $(PORT),8000)/ (only this machine can reach it; Ctrl+C stops it)"
	@$(PYTHON) -m http.server $(or $(PORT),8000) --bind 127.0.0.1 --directory web

# The "try it on your own photo" app of notebook 08 on http://127.0.0.1:7860 (make demo PORT=8000 for another port).
demo: setup
	$(BIN)/python -m fmnist_utils.demo$(if $(PORT), --port $(PORT))

# Re-execute notebooks in place, printing their progress (make notebooks PROFILE=full NOTEBOOKS=notebooks/04_wide_resnet.ipynb),
# keeping their outputs, then refresh README's results table from results/. DRY_RUN=1 checks a profile's recipe on
# a few hundred images (FMNIST_DRY_RUN); smoke and dry runs leave the notebooks unwritten.
notebooks: setup
	$(if $(PROFILE),FMNIST_PROFILE=$(PROFILE) )$(if $(DRY_RUN),FMNIST_DRY_RUN=$(DRY_RUN) )$(BIN)/python scripts/run_notebooks.py $(NOTEBOOKS)
	$(BIN)/python -m fmnist_utils.results

results: setup
	$(BIN)/python -m fmnist_utils.results

# Notebook 07's coarse search with a chief and WORKERS workers on this machine (fmnist_utils/distributed.py;
# docs/scaling.md says how to add workers on other machines). make search WORKERS=4 TRIALS=16
search: setup
	$(BIN)/python -m fmnist_utils.distributed launch --workers $(or $(WORKERS),2)$(if $(TRIALS), --trials $(TRIALS))

# Notebook 09's speedrun recipe trained on this machine, with one line to share per seed, recorded in
# results/speedrun/ (fmnist_utils/speedrun.py). make speedrun SEEDS="0 1 2" for three seeds.
speedrun: setup
	$(BIN)/python -m fmnist_utils.speedrun$(if $(SEEDS), --seeds $(SEEDS))

# Timing figures of this machine, printed with the machine's name (scripts/bench.py).
bench: setup
	$(BIN)/python scripts/bench.py

# Opt-in, not part of `make test`: build the Docker image, start its Jupyter server and check it for real
# (scripts/docker_smoke.py; docs/docker.md). Needs docker or podman; without one it says so and exits 0.
# Extra options: make docker-smoke DOCKER_SMOKE_ARGS="--skip-notebooks".
docker-smoke:
	$(PYTHON) scripts/docker_smoke.py $(DOCKER_SMOKE_ARGS)
