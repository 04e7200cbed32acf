# The two commands a new user needs: `make run` (the demo) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench faults soak services venv clean lock

run: $(STAMP)
	$(BIN)/course run --day-seconds 10 $(ARGS)

# pytest-xdist: a worker per core (at most 4, as many as tests/support/services.py has Redis
# databases for), each test file on one worker (its module fixtures, the fault suite's own
# PostgreSQL cluster, are made once).
test: $(STAMP) services
	$(BIN)/pytest -n auto --maxprocesses 4 --dist loadfile

bench: $(STAMP) services
	$(BIN)/course bench

# Every fault scenario, the slow double faults (Redis with a worker or the database) included.
faults: $(STAMP) services
	$(BIN)/pytest tests/faults -m fault

# Not in CI: >= 50,000 deliveries under random faults for >= 10 minutes, then the audit (docs/reliability.md).
soak: $(STAMP) services
	$(BIN)/python -m tests.faults.soak

# Start the local services the tests use (PostgreSQL, Redis) and install the
# Debian tools they drive (smtp-sink, docker-compose, chromium) when missing.
services:
	bash scripts/services.sh

venv: $(STAMP)

$(STAMP): requirements-dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed" or 0)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Re-pin every dependency (needs network and uv: `pip install uv`). requirements-dev.lock is what the
# tests and CI install; requirements.lock, the same pins without the test tools, is what the image
# installs. Existing pins are kept unless `uv pip compile --upgrade` is asked for.
PLATFORM = --python-version 3.11 --python-platform x86_64-unknown-linux-gnu
lock:
	uv pip compile pyproject.toml --extra dev $(PLATFORM) -o requirements-dev.lock
	uv pip compile pyproject.toml $(PLATFORM) -c requirements-dev.lock -o requirements.lock

clean:
	rm -rf $(VENV) var
