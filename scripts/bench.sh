#!/usr/bin/env bash
# `make bench`: release binaries, a private nats-server on a free port with its own store, the API and
# one worker; then osapi-bench measures the raw NATS floor and the HTTP round trip in the same run.
# JOBS (default 300) sets the sequential sample size. Results also go to bench/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${JOBS:-300}
nats_server=$(scripts/ensure-nats.sh)
cargo build --release --workspace --bins >&2

dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nats_port=$(free_port)
api_port=$(free_port)
"$nats_server" -a 127.0.0.1 -p "$nats_port" -js -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
pids+=($!)
cat >"$dir/osapi.yaml" <<YAML
nats:
  url: 'nats://127.0.0.1:$nats_port'
api:
  server:
    listen: '127.0.0.1:$api_port'
    security:
      signing_key: 'bench-signing-key'
job:
  worker:
    hostname: 'bench1'
    heartbeat: '1s'
YAML
deadline=$((SECONDS + 15))
until (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "bench: nats-server did not start" >&2; exit 1; }
    sleep 0.1
done
RUST_LOG=warn target/release/osapi-api -c "$dir/osapi.yaml" >"$dir/api.log" 2>&1 &
pids+=($!)
RUST_LOG=warn target/release/osapi-worker -c "$dir/osapi.yaml" >"$dir/worker.log" 2>&1 &
pids+=($!)
until curl -fsS "http://127.0.0.1:$api_port/health/ready" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "bench: API or worker did not come up" >&2; cat "$dir"/*.log >&2; exit 1; }
    sleep 0.1
done
mkdir -p bench
OSAPI_TOKEN=$(target/release/osapi -c "$dir/osapi.yaml" token generate -r admin -u bench --ttl 1h)
export OSAPI_TOKEN
target/release/osapi-bench "nats://127.0.0.1:$nats_port" "http://127.0.0.1:$api_port" "$jobs" | tee "$dir/out.txt"
tail -n 1 "$dir/out.txt" >bench/results.json
