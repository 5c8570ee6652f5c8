# Two commands from a fresh clone: `make run` (service on the development LiveKit) and `make test`.
# `make livekit-server` finds or builds the pinned real server and prints its path last.
# `make bench` runs the benchmark (installs wrk from Debian's packages when missing).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run token lint test install system-packages livekit-server bench soak

# make run's key for tenant tokens: public, for development only (make run binds loopback).
DEV_TENANT_SECRET := development-tenant-secret-change-me
TENANT ?= acme

# .venv/wheelhouse: the runtime's wheels, from which tests/test_package.py installs the built
# wheel into a fresh venv offline (the suite runs in a network namespace of its own).
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml tests/node/package-lock.json \
		examples/browser/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(PY) -m pip download --quiet --disable-pip-version-check -d $(VENV)/wheelhouse -r requirements.txt
	if command -v npm >/dev/null; then \
	  npm ci --prefix tests/node --silent --no-audit --no-fund && \
	  npm ci --prefix examples/browser --silent --no-audit --no-fund; fi
	touch $@

install: $(VENV)/.installed

run: install
	AUTH_JWT_SECRET="$${AUTH_JWT_SECRET:-$(DEV_TENANT_SECRET)}" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/dev

# A tenant token that make run's service accepts: make token TENANT=acme TTL=3600
TTL ?= 3600
token: install
	@AUTH_JWT_SECRET="$${AUTH_JWT_SECRET:-$(DEV_TENANT_SECRET)}" LOG_LEVEL=ERROR \
	  $(VENV)/bin/flask --app 'tokensvc:create_app()' tenant-token --tenant "$(TENANT)" --ttl "$(TTL)"

livekit-server:
	@scripts/livekit-server

# The browser test needs Debian's chromium, the storage and rate-limit tests Debian's
# redis-server, the clock-skew test Debian's faketime (libfaketime); install
# what is missing when we may (CI runs as root).
system-packages:
	@missing=""; command -v chromium >/dev/null || missing="chromium chromium-driver"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v faketime >/dev/null || missing="$$missing faketime"; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } || \
	  echo "not installed: $$missing (their tests will be skipped)"

# ruff (lint rules and formatting), mypy and import-linter's layer contracts, with the settings
# in pyproject.toml: a few seconds.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --config pyproject.toml

# The suite runs in a private network namespace (scripts/in-private-network) on the real
# livekit-server and the emulator; without the server, its cases skip (fail with
# TOKENSVC_REQUIRE_LIVEKIT=1, as .ci/run sets). scripts/run-tests runs the tests that wait
# minutes of real time (marked `waits`, about 14 minutes) beside the rest.
test: install system-packages lint
	server=$$(scripts/livekit-server | tail -n 1) || server=""; \
	TOKENSVC_LIVEKIT_SERVER="$$server" PYTHON=$(PY) scripts/in-private-network scripts/run-tests

# make bench takes about 20 minutes (every row, both connection modes), then about 2 more for
# tenants' webhooks (bench/webhooks.py: delivery latency and throughput, and the token route
# beside hanging endpoints); a short form:
#   make bench BENCH_ARGS="--rows 1,3,4,5 --modes keep-alive --requests 8000 --rounds 3" \
#     BENCH_WEBHOOKS_ARGS="--hanging --rounds 2"
BENCH_ARGS ?=
BENCH_WEBHOOKS_ARGS ?=
bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m bench.run $(BENCH_ARGS)
	$(PY) -m bench.webhooks $(BENCH_WEBHOOKS_ARGS)

# make soak runs 120 s; make soak SOAK_SECONDS=20 for a short one.
SOAK_SECONDS ?= 120
soak: install
	$(PY) tests/soak.py --seconds $(SOAK_SECONDS)
