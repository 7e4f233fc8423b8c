# The two commands: `make run` (the platform, embedded default) and `make test` (the whole suite).
# Both install what they need first; a second run reinstalls nothing unless the deps changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export DAGSTER_TELEMETRY_ENABLED := false
# `make run` is the flight-assistant example; point these at your own streams file and producer.
FRESHLAKE_STREAMS ?= examples/flight_assistant/streams.yaml
PRODUCER ?= $(BIN)/python -m examples.flight_assistant.producer --rate 5
# `make run PROFILE=prod`: the production-shaped stack on this machine (see README).
PROFILE ?= embedded
# The Dagster UI's port: `make run PORT=3001` when 3000 is taken.
PORT ?= 3000

.PHONY: install run test test-fast lint format bench clean

install: $(STAMP)

# constraints.txt pins torch to the CPU build on this machine's disk; the project itself does
# not pin torch, so a GPU node installs its own build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/freshlake dev --port "$(PORT)" --streams "$(FRESHLAKE_STREAMS)" --producer "$(PRODUCER)" --profile "$(PROFILE)"

# Every tier: unit, integration (real broker), slow (real model) and e2e (daemon + UI).
test: install lint
	$(BIN)/pytest -m "" $(PYTEST_ARGS)

# The default tier only (no slow/e2e), for the edit-test loop.
test-fast: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m bench.ingest

# Everything `make run` keeps (tables, offsets, Dagster runs, logs); `freshlake reset STREAM`
# archives one stream's tables instead.
clean:
	rm -rf .freshlake .pytest_cache .ruff_cache
