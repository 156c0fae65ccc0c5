# ienet-tf: `make demo` and `make test` set everything up on a fresh machine (idempotent).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ienet-installed
# Quiet TensorFlow's C++ start-up logs in the commands below.
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install test test-fast lint demo docs lock clean bench bench-smoke bench-data campaign campaign-smoke \
	config-reference arm-runtime arm-example test-arm

install: $(STAMP)

# Re-installs only when the pins or the package metadata change.
$(STAMP): constraints.txt pyproject.toml setup.cfg
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt -e ".[cpu,all,dev,docs,torch]"
	$(BIN)/python -m pip check
	@touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two pytest workers: the suite is mostly single-threaded tracing and conversion, so two
# processes use both cores of a CI machine (each peaks near 2.5 GB). TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2

test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

# The quick tier (docs/development.md): everything but the tests marked slow.
test-fast: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow"

# The main job on embedded data: train, evaluate, export (verified) -- see README.
DEMO_CONFIG := configs/digits_convnet_ienet.yaml
DEMO_DIR := runs/demo
demo: install
	$(BIN)/ienet train --config $(DEMO_CONFIG) --run $(DEMO_DIR) --verbose 2
	$(BIN)/ienet evaluate --run $(DEMO_DIR)
	$(BIN)/ienet export --run $(DEMO_DIR) --output $(DEMO_DIR)/model.tflite

# The documentation site into site/ (strict: a broken link or reference fails the build).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# docs/config.md's table, rendered from the config schema (a test checks it is current).
config-reference: install
	{ sed '/^| key |/,$$d' docs/config.md; $(BIN)/python -c \
		'from ienet_tf import config; print(config.reference(), end="")'; } > docs/config.md.new
	mv docs/config.md.new docs/config.md

# Benchmarks (see docs/campaign.md): every result file under benchmarks/results/ and
# docs/results.md, generated from them. BENCH_EXPORT=1 adds the ~10-minute export benchmark.
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
BENCH_SMOKE_DIR := runs/bench-smoke
bench: install bench-data
	@start=$$(date +%s); \
	$(BIN)/python benchmarks/run_all.py $(if $(BENCH_EXPORT),--with-export,); status=$$?; \
	echo "make bench: $$(( ($$(date +%s) - start) / 60 )) min"; exit $$status

# The smoke mode of every benchmark into $(BENCH_SMOKE_DIR) (never benchmarks/results).
bench-smoke: install bench-data
	rm -rf $(BENCH_SMOKE_DIR)
	$(BIN)/python benchmarks/run_all.py --smoke --results-dir $(BENCH_SMOKE_DIR)/results \
		--docs $(BENCH_SMOKE_DIR)/docs

# The Fashion-MNIST campaign (docs/campaign.md): resumable, niced, one run at a time with one
# TF thread by default (CAMPAIGN_WORKERS=2 trains two runs at once, one core each); then
# docs/results.md.
CAMPAIGN_THREADS ?= 1
CAMPAIGN_WORKERS ?= 1
campaign: install bench-data
	nice -n 10 $(BIN)/python benchmarks/campaign.py --threads $(CAMPAIGN_THREADS) \
		--workers $(CAMPAIGN_WORKERS)
	$(BIN)/python benchmarks/make_docs.py

campaign-smoke: install
	$(BIN)/python benchmarks/campaign.py --smoke

# Fashion-MNIST from the Debian package dataset-fashion-mnist (apt-get; sudo unless root).
bench-data:
	@if ls $(FASHION_MNIST_DIR)/t10k-labels-idx1-ubyte* >/dev/null 2>&1; then \
		echo "Fashion-MNIST: $(FASHION_MNIST_DIR)"; \
	elif ! command -v apt-get >/dev/null; then \
		echo "bench-data: no apt-get here; install the Debian package dataset-fashion-mnist" \
			"or put the four IDX files in $(FASHION_MNIST_DIR)" >&2; exit 1; \
	else \
		sudo=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq dataset-fashion-mnist \
		|| { echo "bench-data: could not install dataset-fashion-mnist with apt-get" \
			"(needs root or sudo, and a Debian/Ubuntu archive that has it)" >&2; exit 1; }; \
	fi

# The aarch64 LCE runtime (and its x86-64 build) for `ienet verify-arm`, into
# ~/.cache/ienet-tf/arm-runtime/<key of its inputs>; rebuilt only when an input changes (see
# converters/arm_runtime/Makefile, docs/guide/arm.md). Needs
# `apt-get install -y g++-aarch64-linux-gnu qemu-user-static libeigen3-dev`.
ARM_RUNTIME_JOBS ?= 2
arm-runtime:
	$(MAKE) --no-print-directory -C converters/arm_runtime -j$(ARM_RUNTIME_JOBS)

# The C++ example converters/cpp/ienet_infer.cc, static for aarch64, linked with the objects
# of that runtime (built first if needed) into its cache folder (converters/cpp/example.mk,
# converters/README.md).
arm-example:
	$(MAKE) --no-print-directory -C converters/arm_runtime -f Makefile -f ../cpp/example.mk \
		-j$(ARM_RUNTIME_JOBS) example

# Every registry family x variant on the aarch64 kernels (tests/export/test_arm_matrix.py,
# ~20 min; the suite leaves it out), after the runtime.
test-arm: install arm-runtime
	IENET_ARM_MATRIX=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal \
		tests/export/test_arm_matrix.py tests/export/test_arm.py tests/export/test_cpp_example.py

# Re-pin the whole stack from a fresh resolve (needs the package registry).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet -e ".[cpu,all,dev,docs,torch]"
	{ head -n 2 constraints.txt; .venv-lock/bin/python -m pip freeze --all --exclude-editable | grep -v '^pip=='; } \
		> constraints.txt.new && mv constraints.txt.new constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache *.egg-info
