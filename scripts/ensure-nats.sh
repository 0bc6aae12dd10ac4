#!/usr/bin/env bash
# Prints the path of a nats-server binary, installing Debian's package when there is none.
# Messages go to stderr, so `NATS=$(scripts/ensure-nats.sh)` captures only the path.
set -euo pipefail

debian_path=/usr/sbin/nats-server

if [[ -x "$debian_path" ]]; then
    echo "$debian_path"
    exit 0
fi
if on_path=$(command -v nats-server 2>/dev/null); then
    echo "$on_path"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-nats: nats-server not found and apt-get is missing: install nats-server (https://nats.io) and put it on PATH" >&2
    exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "ensure-nats: nats-server not found; run as root or install sudo, or: apt-get install nats-server" >&2
        exit 1
    fi
    sudo=(sudo)
fi

echo "ensure-nats: installing Debian package nats-server" >&2
if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; } >&2; then
    echo "ensure-nats: apt-get install nats-server failed" >&2
    exit 1
fi
if [[ ! -x "$debian_path" ]]; then
    echo "ensure-nats: package installed but $debian_path is missing" >&2
    exit 1
fi
echo "$debian_path"
