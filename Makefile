# osapi: build, test, lint and run everything from the workspace root.
#   make build   debug binaries (osapi-api, osapi-worker, ...)
#   make test    every test, against a real nats-server (installed from Debian's package when missing)
#   make lint    rustfmt check and clippy with warnings as errors
#   make run     local nats-server + API + one worker, see scripts/run-local.sh
#   make bench   raw NATS floor vs HTTP round trip, one run (scripts/bench.sh)
#   make clean   cargo clean and the local NATS store under .data/

CARGO ?= cargo

.PHONY: build test lint run bench clean

build:
	$(CARGO) build --workspace --bins

# The integration tests run the binaries from target/, so build them first; OSAPI_NATS_SERVER tells the
# harness which nats-server to start. nextest runs each test in its own process (the crates have no
# doctests, so nextest's summary is the last word).
test:
	@set -e; \
	nats="$$(scripts/ensure-nats.sh)"; \
	echo "using $$nats"; \
	$(CARGO) build --workspace --bins; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		OSAPI_NATS_SERVER="$$nats" $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		OSAPI_NATS_SERVER="$$nats" $(CARGO) test --workspace --no-fail-fast; \
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
