#!/usr/bin/env bash
# `make bench`: release binaries, a private nats-server on a free port with its own store, and the API;
# then osapi-bench runs every phase of docs/benchmarks.md in the same run (it starts the workers and the
# extra APIs it needs), prints one table and writes bench/results.json.
#
# Sizes (env): JOBS (300), BENCH_DURATION (20s), BENCH_CLIENTS (16), BENCH_WORKERS (2), BENCH_MAX_JOBS (8),
# BENCH_BROADCAST_WORKERS (10), BENCH_BROADCAST_RUNS (5), BENCH_SCALING (10000,50000),
# BENCH_SCALING_SAMPLES (30), BENCH_READY_RUNS (3), BENCH_SLICES (4: phase 3's raw floor and two HTTP loads take
# turns in that many slices of the duration each). BENCH_HTTP_CLIENT: the throughput clients' HTTP code,
# lean (default: a hand-written keep-alive client, bench/src/lean.rs) or ureq.
# Fleet phase: BENCH_FLEET (1000 worker processes; 0 skips it), BENCH_FLEET_IDLE (60s), BENCH_FLEET_RUNS (5),
# BENCH_FLEET_ANY (10s), BENCH_FLEET_HEARTBEAT (10s), BENCH_FLEET_CLUSTER (0: workers on a 3-node cluster,
# replicas 3, of the last server, after the single servers), BENCH_FLEET_CONSUMER_REPLICAS (0: the workers'
# own consumers keep the stream's replicas; 1: one copy each, see docs/nats.md), BENCH_FLEET_NODE_DOWN (0;
# a duration D: then the cluster idles D with all nodes and D with one stopped, then it restarts). It runs on a fresh
# nats-server of each binary in BENCH_FLEET_NATS (default: the run's server, then 2.15.1 from
# scripts/ensure-nats-current.sh when it can be had). BENCH_ONLY=fleet runs the fleet phase alone and
# replaces only `fleet` in the results file.
# BENCH_SMOKE=1: tiny defaults for all of them (a few seconds; tests/tests/bench_smoke.rs).
# BENCH_PROFILE=debug: use target/debug binaries and build nothing (the caller built them).
# BENCH_BIN_DIR: take the binaries from there instead. BENCH_OUT: results file (bench/results.json).
# OSAPI_NATS_SERVER: the nats-server binary (else scripts/ensure-deps.sh finds or installs one).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${BENCH_SMOKE:-0} == 1 ]]; then
    defaults=(5 1s 4 2 2 2 2 50,100 3 1 3 1s 2 1s 2)
else
    defaults=(300 20s 16 2 8 10 5 10000,50000 30 3 1000 60s 5 10s 4)
fi
args=(
    --jobs "${JOBS:-${defaults[0]}}"
    --duration "${BENCH_DURATION:-${defaults[1]}}"
    --clients "${BENCH_CLIENTS:-${defaults[2]}}"
    --slices "${BENCH_SLICES:-${defaults[14]}}"
    --http-client "${BENCH_HTTP_CLIENT:-lean}"
    --workers "${BENCH_WORKERS:-${defaults[3]}}"
    --max-jobs "${BENCH_MAX_JOBS:-${defaults[4]}}"
    --broadcast-workers "${BENCH_BROADCAST_WORKERS:-${defaults[5]}}"
    --broadcast-runs "${BENCH_BROADCAST_RUNS:-${defaults[6]}}"
    --scaling "${BENCH_SCALING:-${defaults[7]}}"
    --scaling-samples "${BENCH_SCALING_SAMPLES:-${defaults[8]}}"
    --ready-runs "${BENCH_READY_RUNS:-${defaults[9]}}"
    --fleet "${BENCH_FLEET:-${defaults[10]}}"
    --fleet-idle "${BENCH_FLEET_IDLE:-${defaults[11]}}"
    --fleet-runs "${BENCH_FLEET_RUNS:-${defaults[12]}}"
    --fleet-any "${BENCH_FLEET_ANY:-${defaults[13]}}"
    --fleet-heartbeat "${BENCH_FLEET_HEARTBEAT:-10s}"
    --fleet-cluster "${BENCH_FLEET_CLUSTER:-0}"
    --fleet-consumer-replicas "${BENCH_FLEET_CONSUMER_REPLICAS:-0}"
    --fleet-node-down "${BENCH_FLEET_NODE_DOWN:-0}"
)
case ${BENCH_ONLY:-} in
    '') ;;
    fleet) args+=(--only fleet) ;;
    *) echo "bench: BENCH_ONLY may be fleet, not '$BENCH_ONLY'" >&2; exit 2 ;;
esac

profile=${BENCH_PROFILE:-release}
case $profile in
    release) [[ -n ${BENCH_BIN_DIR:-} ]] || cargo build --release --workspace --bins >&2 ;;
    debug) ;;
    *) echo "bench: BENCH_PROFILE must be release or debug, not '$profile'" >&2; exit 2 ;;
esac
bin=${BENCH_BIN_DIR:-target/$profile}
for b in osapi-api osapi-worker osapi osapi-bench; do
    [[ -x $bin/$b ]] || { echo "bench: $bin/$b missing: run cargo build --workspace --bins${profile/debug/}" >&2; exit 1; }
done
out=${BENCH_OUT:-bench/results.json}
nats_server=${OSAPI_NATS_SERVER:-$(scripts/ensure-deps.sh)}
fleet_nats=${BENCH_FLEET_NATS:-}
if [[ -z $fleet_nats ]]; then
    fleet_nats=$nats_server
    # The smoke run stays on one server; a real run measures the current release too when it can be had.
    if [[ ${BENCH_SMOKE:-0} != 1 ]]; then
        if current=$(scripts/ensure-nats-current.sh); then
            [[ $current -ef $nats_server ]] || fleet_nats+=",$current"
        else
            echo "bench: no nats-server 2.15.1; the fleet phase runs on $nats_server alone" >&2
        fi
    fi
fi
args+=(--fleet-nats "$fleet_nats")

dir=$(mktemp -d)
pids=()
cleanup() {
    # osapi-bench lists the workers and APIs it started, in case it could not stop them itself.
    if [[ -f $dir/bench.pids ]]; then
        while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$dir/bench.pids"
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

# The daemons must not see the caller's OSAPI_* variables: they would override the config file.
clean_env=()
for v in $(compgen -e); do [[ $v == OSAPI_* ]] && clean_env+=(-u "$v"); done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nats_port=$(free_port)
monitor_port=$(free_port)
api_port=$(free_port)
# -m: the monitoring port, loopback only (-a); osapi-bench reads /varz to count the messages of one job.
"$nats_server" -a 127.0.0.1 -p "$nats_port" -m "$monitor_port" -js -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
nats_pid=$!
pids+=("$nats_pid")
env "${clean_env[@]}" "$bin/osapi" keys generate --out "$dir/job.key" >/dev/null
cat >"$dir/osapi.yaml" <<YAML
nats:
  url: 'nats://127.0.0.1:$nats_port'
  # Phase 3 leaves ~60,000 jobs (~1.5 KB each) in the bucket in 20 s on a quick 2-core machine: the
  # default 100 MiB would refuse writes in a longer BENCH_DURATION or on a quicker machine.
  kv: { max_bytes: 1073741824 }
api:
  server:
    listen: '127.0.0.1:$api_port'
    security:
      signing_key: 'bench-signing-key-of-32-bytes-or-more'
      job_signing_key_file: '$dir/job.key'
  metrics: { listen: '' }
job:
  worker:
    heartbeat: '1s'
    trusted_job_keys: ['$dir/job.key.pub']
    metrics: { listen: '' }
YAML
deadline=$((SECONDS + 15))
until (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "bench: nats-server did not start" >&2; cat "$dir/nats.log" >&2; exit 1; }
    sleep 0.1
done
env "${clean_env[@]}" RUST_LOG=warn "$bin/osapi-api" -c "$dir/osapi.yaml" >"$dir/api.log" 2>&1 &
api_pid=$!
pids+=("$api_pid")
until curl -fsS "http://127.0.0.1:$api_port/health/ready" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "bench: the API did not come up" >&2; cat "$dir"/*.log >&2; exit 1; }
    sleep 0.1
done
mkdir -p "$(dirname "$out")"
OSAPI_TOKEN=$(env "${clean_env[@]}" "$bin/osapi" -c "$dir/osapi.yaml" token generate -r admin -u bench --ttl 1h)
export OSAPI_TOKEN
if ! "$bin/osapi-bench" --nats "nats://127.0.0.1:$nats_port" --api "http://127.0.0.1:$api_port" \
    --api-pid "$api_pid" --nats-pid "$nats_pid" \
    --nats-monitor "http://127.0.0.1:$monitor_port" --config "$dir/osapi.yaml" --bin-dir "$bin" --run-dir "$dir" --out "$out" "${args[@]}"; then
    echo "bench: failed; last lines of the logs:" >&2
    tail -n 20 "$dir"/*.log >&2
    exit 1
fi
echo "results: $out" >&2
