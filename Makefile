# Task runner. README's two commands: `make lab` (set up, then start JupyterLab) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= quick
NOTEBOOKS ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: setup lab test notebooks results

setup: $(VENV)/.ready

$(VENV)/.ready: requirements.txt pyproject.toml scripts/get_dataset.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	PYTHON=$(BIN)/python bash scripts/get_dataset.sh
	touch $@

lab: setup
	$(BIN)/jupyter lab notebooks/

# Unit tests, Docker/workflow checks, and every notebook executed by nbval in the small CI profile.
test: setup
	FMNIST_PROFILE=smoke $(BIN)/python -m pytest

# Re-execute notebooks in a profile (make notebooks PROFILE=full NOTEBOOKS=notebooks/04_wide_resnet.ipynb),
# keeping their outputs, then refresh README's results table from results/.
notebooks: setup
	for nb in $(NOTEBOOKS); do \
	  FMNIST_PROFILE=$(PROFILE) $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=-1 $$nb || exit 1; \
	done
	$(BIN)/python -m fmnist_utils.results

results: setup
	$(BIN)/python -m fmnist_utils.results
