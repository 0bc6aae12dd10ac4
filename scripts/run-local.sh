#!/usr/bin/env bash
# `make run`: a local nats-server (JetStream, store under .data/nats), the API and one worker, all with
# config/dev.yaml (the worker: config/dev-worker.yaml). Prints a curl line to try; Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."

config=config/dev.yaml
worker_config=config/dev-worker.yaml
api_url=http://127.0.0.1:8080
nats_port=4222
ready_deadline_s=15

if [[ ! -f $config ]]; then
    echo "run-local: $config is missing" >&2
    exit 1
fi
nats_server=$(scripts/ensure-deps.sh)
cargo build --workspace --bins
mkdir -p .data/nats
# Development signs jobs too: one key pair, made once, kept under .data/ (config/dev.yaml names it).
if [[ ! -f .data/job.key ]]; then
    target/debug/osapi keys generate --out .data/job.key
fi

pids=()
stop_all() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    echo "stopped; logs in .data/*.log"
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

# Polls `$2` (a command) until it succeeds or `ready_deadline_s` passes; `$1` says what we wait for.
wait_for() {
    local what=$1
    shift
    local deadline=$((SECONDS + ready_deadline_s))
    until "$@" >/dev/null 2>&1; do
        for pid in "${pids[@]}"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "run-local: a process exited while waiting for $what; see .data/*.log" >&2
                exit 1
            fi
        done
        if ((SECONDS >= deadline)); then
            echo "run-local: $what not ready after ${ready_deadline_s}s; see .data/*.log" >&2
            exit 1
        fi
        sleep 0.2
    done
}

nats_accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$nats_port"); }

if nats_accepts 2>/dev/null; then
    echo "run-local: something already listens on 127.0.0.1:$nats_port; stop it first" >&2
    exit 1
fi
"$nats_server" -a 127.0.0.1 -p "$nats_port" -js -sd .data/nats >.data/nats.log 2>&1 &
pids+=($!)
wait_for "nats-server on port $nats_port" nats_accepts

export RUST_LOG=${RUST_LOG:-info}
target/debug/osapi-api --config "$config" >.data/api.log 2>&1 &
pids+=($!)
target/debug/osapi-worker --config "$worker_config" >.data/worker.log 2>&1 &
pids+=($!)
wait_for "the API at $api_url" curl -fsS "$api_url/health/ready"

token=$(target/debug/osapi --config "$config" token generate -r admin -u dev --ttl 1d)

cat <<MSG
osapi is running (logs: .data/nats.log, .data/api.log, .data/worker.log). Try:

  export OSAPI_TOKEN=$token

  (the token goes to curl through a pipe, -H @<(...), never as an argument that ps would show)

  curl -s -X POST $api_url/job -H @<(echo "Authorization: Bearer \$OSAPI_TOKEN") -H 'Content-Type: application/json' \\
       -d '{"operation":{"type":"system.hostname.get","data":{}},"target_hostname":"_any"}'

then, with the job_id it prints:

  curl -s -H @<(echo "Authorization: Bearer \$OSAPI_TOKEN") '$api_url/job/JOB_ID?wait=10s'

or with the CLI (it reads OSAPI_TOKEN): target/debug/osapi job run system.hostname.get

Ctrl-C stops nats-server, the API and the worker.
MSG

# Wait for Ctrl-C, or for any of the three to exit on its own.
wait -n || true
echo "run-local: a process exited; see .data/*.log" >&2
