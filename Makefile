# Two commands from a fresh clone: `make run` (service on the development LiveKit) and `make test`.
# `make livekit-server` finds or builds the pinned real server and prints its path last.
# `make bench` runs the benchmark (installs wrk from Debian's packages when missing).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run token usage lint test install system-packages livekit-server bench soak cold-start

# make run's key for tenant tokens: public, for development only (make run binds loopback).
DEV_TENANT_SECRET := development-tenant-secret-change-me
# make run's key for tenants' webhook secrets (32 bytes in base64): development only.
DEV_WEBHOOK_SECRETS_KEY := ZGV2ZWxvcG1lbnQtd2ViaG9vay1rZXktY2hhbmdlLW0=
TENANT ?= acme

# make run needs only the runtime (.venv/.runtime): pip installs it while npm installs the browser
# example, and the pinned livekit-server builds in the background meanwhile (make run serves on
# the emulator until it is built). make install adds the test tools, the SDK tests' npm packages
# and .venv/wheelhouse: the runtime's wheels, from which tests/test_package.py installs the built
# wheel into a fresh venv offline (the suite runs in a network namespace of its own).
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# The console's scripts (htmx, uPlot) come from npm too: npm ci of tokensvc/console/assets, then
# scripts/console-assets copies them into the package (static/vendor) before pip installs it.
$(VENV)/.runtime: requirements.txt pyproject.toml examples/browser/package-lock.json \
		tokensvc/console/assets/package-lock.json
	@echo "installing the runtime into $(VENV) (pip) and the browser example (npm), side by side" >&2
	@$(PYTHON) -m venv $(VENV)
	@command -v npm >/dev/null && \
	  npm ci --prefix tokensvc/console/assets --silent --no-audit --no-fund && \
	  scripts/console-assets || \
	  echo "npm ci of tokensvc/console/assets failed: the console runs without its scripts" >&2
	@npm_status=0; \
	if command -v npm >/dev/null; then \
	  npm ci --prefix examples/browser --silent --no-audit --no-fund & npm_pid=$$!; fi; \
	$(PIP) -r requirements.txt && $(PIP) --no-deps -e . || exit 1; \
	[ -z "$${npm_pid:-}" ] || wait $$npm_pid || npm_status=$$?; \
	[ $$npm_status = 0 ] || echo "npm ci of examples/browser failed: make run has no browser example" >&2
	@touch $@

$(VENV)/.installed: $(VENV)/.runtime requirements-dev.txt tests/node/package-lock.json
	npm_status=0; \
	if command -v npm >/dev/null; then \
	  npm ci --prefix tests/node --silent --no-audit --no-fund & npm_pid=$$!; fi; \
	$(PIP) -r requirements-dev.txt && \
	$(PY) -m pip download --quiet --disable-pip-version-check -d $(VENV)/wheelhouse \
	  -r requirements.txt || exit 1; \
	[ -z "$${npm_pid:-}" ] || wait $$npm_pid || npm_status=$$?; \
	[ $$npm_status = 0 ] || exit $$npm_status
	touch $@

install: $(VENV)/.installed

# The build starts first (in the background, when it is needed), so it overlaps the install.
run:
	@[ -n "$${LIVEKIT_URL:-}" ] || scripts/livekit-server --background >/dev/null 2>&1 || true
	@$(MAKE) --no-print-directory $(VENV)/.runtime
	AUTH_JWT_SECRET="$${AUTH_JWT_SECRET:-$(DEV_TENANT_SECRET)}" \
	  TENANT_WEBHOOK_SECRETS_KEY="$${TENANT_WEBHOOK_SECRETS_KEY:-$(DEV_WEBHOOK_SECRETS_KEY)}" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/dev

# A tenant token that make run's service accepts: make token TENANT=acme TTL=3600, with any of
# SCOPE="tokens:create rooms:read", ROLE="speaker viewer", IDENTITY=alice (make run reads no
# identity claim unless AUTH_IDENTITY_CLAIM is set for both), CLAIMS="max_rooms=3 plan=gold".
TTL ?= 3600
SCOPE ?=
ROLE ?=
IDENTITY ?=
CLAIMS ?=
token: $(VENV)/.runtime
	@AUTH_JWT_SECRET="$${AUTH_JWT_SECRET:-$(DEV_TENANT_SECRET)}" LOG_LEVEL=ERROR \
	  TENANT_WEBHOOK_SECRETS_KEY="$${TENANT_WEBHOOK_SECRETS_KEY:-$(DEV_WEBHOOK_SECRETS_KEY)}" \
	  $(PY) -m tokensvc.processes.cli tenant-token --tenant "$(TENANT)" --ttl "$(TTL)" \
	  $(foreach s,$(SCOPE),--scope '$(s)') $(foreach r,$(ROLE),--role '$(r)') \
	  $(if $(IDENTITY),--identity '$(IDENTITY)') $(foreach c,$(CLAIMS),--claim '$(c)')

# Every tenant's usage from make run's storage: make usage FROM=2026-01-01T00:00:00Z
# TO=2026-02-01T00:00:00Z FORMAT=json (default: this month so far, CSV).
FROM ?=
TO ?=
FORMAT ?= csv
usage: $(VENV)/.runtime
	@AUTH_JWT_SECRET="$${AUTH_JWT_SECRET:-$(DEV_TENANT_SECRET)}" LOG_LEVEL=ERROR \
	  TENANT_WEBHOOK_SECRETS_KEY="$${TENANT_WEBHOOK_SECRETS_KEY:-$(DEV_WEBHOOK_SECRETS_KEY)}" \
	  $(PY) -m tokensvc.processes.cli usage $(if $(FROM),--from '$(FROM)') \
	  $(if $(TO),--to '$(TO)') --format '$(FORMAT)'

# How long a fresh clone with empty caches takes to a first token and to the real LiveKit
# (the README's figures): clones this checkout's HEAD into a temporary folder.
cold-start:
	scripts/cold-start

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

# make bench takes about 20 minutes (every row, both connection modes), then about 5 more for
# tenants' webhooks (bench/webhooks.py, on SQLite and Redis: delivery latency, one worker's
# throughput, noisy neighbours beside a healthy tenant, the token route beside hanging
# endpoints), then about 5 more for the reconciliation with LiveKit (bench/reconcile.py: one
# sweep at 100 and 1,000 live rooms, and the LiveKit events one instance takes in with the
# sweeper running, on SQLite and Redis); a short form:
#   make bench BENCH_ARGS="--rows 1,3,4,5 --modes keep-alive --requests 8000 --rounds 3" \
#     BENCH_WEBHOOKS_ARGS="--rows throughput,noisy --cpu-seconds 10" \
#     BENCH_RECONCILE_ARGS="--storage sqlite --sweeps 3 --rounds 1 --seconds 4"
BENCH_ARGS ?=
BENCH_WEBHOOKS_ARGS ?=
BENCH_RECONCILE_ARGS ?=
bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m bench.run $(BENCH_ARGS)
	$(PY) -m bench.webhooks $(BENCH_WEBHOOKS_ARGS)
	$(PY) -m bench.reconcile $(BENCH_RECONCILE_ARGS)

# make soak runs 120 s; make soak SOAK_SECONDS=20 for a short one.
SOAK_SECONDS ?= 120
soak: install
	$(PY) tests/soak.py --seconds $(SOAK_SECONDS)
