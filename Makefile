# ienet-tf: `make demo` and `make test` set everything up on a fresh machine (idempotent).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ienet-installed
# Quiet TensorFlow's C++ start-up logs in the commands below.
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install test lint demo lock clean

install: $(STAMP)

# Re-installs only when the pins or the package metadata change.
$(STAMP): constraints.txt pyproject.toml setup.cfg
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt -e ".[cpu,dev]"
	$(BIN)/python -m pip check
	@touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

# The main job on embedded data: train, evaluate, export (verified) -- see README.
DEMO_CONFIG := configs/digits_convnet_ienet.yaml
DEMO_DIR := runs/demo
demo: install
	$(BIN)/ienet train --config $(DEMO_CONFIG) --output-dir $(DEMO_DIR) --verbose 2
	$(BIN)/ienet evaluate --checkpoint $(DEMO_DIR)
	$(BIN)/ienet export --checkpoint $(DEMO_DIR) --output $(DEMO_DIR)/model.tflite

# Re-pin the whole stack from a fresh resolve (needs the package registry).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet -e ".[cpu,dev]"
	{ head -n 2 constraints.txt; .venv-lock/bin/python -m pip freeze --exclude-editable; } \
		> constraints.txt.new && mv constraints.txt.new constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
