#!/usr/bin/env bash
# Makes sure this machine has what `make test` and `make run` use, installing the missing Debian packages,
# then prints the path of the nats-server binary:
#   nats-server    the only state (JetStream); Debian puts it in /usr/sbin, not on every PATH
#   ping           network.ping.do runs the system ping (iputils-ping gives it cap_net_raw)
#   curl, jq       scripts/ and their tests, and the try-it line `make run` prints
#   openssl        the keys, CA and certificates the trust tests make, as an operator would
# Messages go to stderr, so `NATS=$(scripts/ensure-deps.sh)` captures only the path.
set -euo pipefail

debian_nats=/usr/sbin/nats-server

find_nats() {
    if [[ -x "$debian_nats" ]]; then
        echo "$debian_nats"
    else
        command -v nats-server 2>/dev/null || true
    fi
}

missing=()
[[ -n "$(find_nats)" ]] || missing+=(nats-server)
command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ensure-deps: missing ${missing[*]} and apt-get is not here: install them (nats-server: https://nats.io)" >&2
        exit 1
    fi
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "ensure-deps: missing ${missing[*]}; run as root or install sudo, or: apt-get install ${missing[*]}" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    echo "ensure-deps: installing Debian packages: ${missing[*]}" >&2
    if ! { "${sudo[@]}" apt-get update -qq &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >&2; then
        echo "ensure-deps: apt-get install ${missing[*]} failed" >&2
        exit 1
    fi
fi

nats=$(find_nats)
if [[ -z "$nats" ]]; then
    echo "ensure-deps: nats-server installed but found neither at $debian_nats nor on PATH" >&2
    exit 1
fi
echo "$nats"
