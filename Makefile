# osapi: build, test, lint and run everything from the workspace root.
#   make build   debug binaries (osapi-api, osapi-worker, ...)
#   make test    every test, against a real nats-server (scripts/ensure-deps.sh installs nats-server,
#                ping, curl and jq from Debian's packages when missing)
#   make test-vendor   the vendored NATS client's unit tests (part of make test)
#   make test-integration OSAPI_NATS_SERVER=PATH   the integration suite against another nats-server
#                (.ci/run passes 2.15.1 from scripts/ensure-nats-current.sh)
#   make lint    rustfmt check and clippy with warnings as errors
#   make run     local nats-server + API + one worker, see scripts/run-local.sh (same ensure-deps.sh)
#   make bench   the benchmark table of docs/benchmarks.md, every figure from one run (scripts/bench.sh)
#   make clean   cargo clean and the local NATS store under .data/
#   make install    release binaries, sample config and systemd units (see the variables below)
#   make uninstall  removes the binaries and units; keeps the config

CARGO ?= cargo

.PHONY: build test test-vendor test-integration lint run bench clean install uninstall

# make install / uninstall. Paths are $(DESTDIR)$(PREFIX)/bin, $(DESTDIR)$(SYSCONFDIR)/osapi/osapi.yaml
# and $(DESTDIR)$(SYSTEMD_UNIT_DIR); DESTDIR stages everything under another root (packaging, tests).
# INSTALL_FROM picks the cargo profile dir the binaries come from: `release` (default) builds them first;
# any other value (e.g. `debug`, used by the tests) installs what $(TARGET_DIR)/$(INSTALL_FROM) already
# holds, without building. TARGET_DIR is $CARGO_TARGET_DIR, else target.
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
SYSTEMD_UNIT_DIR ?= /etc/systemd/system
INSTALL_FROM ?= release
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
INSTALL_BINS := osapi-api osapi-worker osapi
UNITS := osapi-api.service osapi-worker.service

build:
	$(CARGO) build --workspace --bins

# The integration tests run the binaries from target/, so build them first; OSAPI_NATS_SERVER tells the
# harness which nats-server to start. nextest runs each test in its own process (the crates have no
# doctests, so nextest's summary is the last word).
test:
	@set -e; \
	nats="$$(scripts/ensure-deps.sh)"; \
	echo "using $$nats"; \
	$(CARGO) build --workspace --bins; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		OSAPI_NATS_SERVER="$$nats" $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		OSAPI_NATS_SERVER="$$nats" $(CARGO) test --workspace --no-fail-fast; \
	fi
	$(MAKE) --no-print-directory test-vendor

# The vendored NATS client's own unit tests (its osapi patches': message decoding, the name rules, the
# .creds parser), with the workspace's versions (its lock file, offline: the build above fetched them).
# tiny_http's patches are tested through the API (tests/tests/hostile_*.rs).
test-vendor:
	cp Cargo.lock vendor/nats/Cargo.lock
	CARGO_TARGET_DIR=$(TARGET_DIR)/vendor-tests $(CARGO) test --offline --manifest-path vendor/nats/Cargo.toml --lib

test-integration:
	@set -e; \
	nats="$${OSAPI_NATS_SERVER:-$$(scripts/ensure-deps.sh)}"; \
	echo "using $$nats"; \
	$(CARGO) build --workspace --bins; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		OSAPI_NATS_SERVER="$$nats" $(CARGO) nextest run -p osapi-tests --no-fail-fast; \
	else \
		OSAPI_NATS_SERVER="$$nats" $(CARGO) test -p osapi-tests --no-fail-fast; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

run:
	scripts/run-local.sh

bench:
	scripts/bench.sh

clean:
	$(CARGO) clean
	rm -rf .data

# The config is installed only when none exists (mode 0600: it holds the signing key) and is never
# overwritten; the units get PREFIX and SYSCONFDIR filled in. Nothing here needs root unless the
# paths do. After a real install: set the signing key, then systemctl daemon-reload and enable --now.
install:
	@if [ "$(INSTALL_FROM)" = release ]; then $(CARGO) build --release -p osapi-api -p osapi-worker -p osapi-cli; fi
	@for bin in $(INSTALL_BINS); do \
		[ -x "$(TARGET_DIR)/$(INSTALL_FROM)/$$bin" ] || { echo "install: $(TARGET_DIR)/$(INSTALL_FROM)/$$bin is missing; build it first" >&2; exit 1; }; \
	done
	install -d "$(DESTDIR)$(PREFIX)/bin" "$(DESTDIR)$(SYSCONFDIR)/osapi" "$(DESTDIR)$(SYSTEMD_UNIT_DIR)"
	install -m 0755 $(addprefix $(TARGET_DIR)/$(INSTALL_FROM)/,$(INSTALL_BINS)) "$(DESTDIR)$(PREFIX)/bin/"
	@set -e; for unit in $(UNITS); do \
		sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' packaging/systemd/$$unit.in > "$(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit" && \
		chmod 0644 "$(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit" && \
		echo "installed $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit"; \
	done
	@if [ -e "$(DESTDIR)$(SYSCONFDIR)/osapi/osapi.yaml" ]; then \
		echo "kept the existing $(DESTDIR)$(SYSCONFDIR)/osapi/osapi.yaml (the new sample is config/osapi.yaml)"; \
	else \
		install -m 0600 config/osapi.yaml "$(DESTDIR)$(SYSCONFDIR)/osapi/osapi.yaml" && \
		echo "installed $(DESTDIR)$(SYSCONFDIR)/osapi/osapi.yaml: set api.server.security.signing_key and nats.url"; \
	fi

uninstall:
	@set -e; for path in $(addprefix $(PREFIX)/bin/,$(INSTALL_BINS)) $(addprefix $(SYSTEMD_UNIT_DIR)/,$(UNITS)); do \
		rm -f "$(DESTDIR)$$path" && echo "removed $(DESTDIR)$$path"; \
	done
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/osapi/osapi.yaml (remove it by hand if you want it gone)"
