#!/usr/bin/env bash
# Submits a job (POST /job) and prints its id. Needs curl and jq.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: job-create.sh TYPE [--target T] [--data JSON] [--timeout 60s]

Submits an operation (e.g. test.ping.do, system.hostname.get) and prints the new job's id.
  --target T     _any (default), _all, a hostname, or KEY:VALUE (e.g. group:web.dev)
  --data JSON    the operation's data (default {})
  --timeout D    how long hosts have to answer (default 60s)
  --idempotency-key K  sent as Idempotency-Key (default: a fresh key per run); the same K within
                 24h gives the first answer again and creates nothing

Env: OSAPI_URL (default http://127.0.0.1:8080), OSAPI_TOKEN (sent as a Bearer token when set, on
curl's standard input: never on a command line).
     OSAPI_RETRIES (default 3: tries on no answer, 503 or 409, each with the same Idempotency-Key).
Exit: 0 created, 1 refused by the server, 2 usage error, 3 server unreachable or unavailable.
EOF
}

prog='job-create'
# shellcheck source-path=SCRIPTDIR source=lib/job-common.sh
source "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib/job-common.sh"
use_retries

type='' target=_any data='{}' timeout=60s
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --target) need_value $# "$1"; target=$2; shift 2 ;;
        --data) need_value $# "$1"; data=$2; shift 2 ;;
        --timeout) need_value $# "$1"; timeout=$2; shift 2 ;;
        --idempotency-key) need_value $# "$1"; idempotency_key=$2; shift 2 ;;
        -*) echo "job-create: unknown option $1 (try --help)" >&2; exit 2 ;;
        *)
            [[ -z $type ]] || { echo "job-create: unexpected argument $1 (try --help)" >&2; exit 2; }
            type=$1
            shift ;;
    esac
done
[[ -n $type ]] || { usage >&2; exit 2; }

body=$(jq -cn --arg type "$type" --argjson data "$data" --arg target "$target" --arg timeout "$timeout" \
    '{operation: {type: $type, data: $data}, target_hostname: $target, timeout: $timeout}' 2>/dev/null) ||
    { echo "job-create: --data is not valid JSON: $data" >&2; exit 2; }

reply=$(api POST /job "$body")
jq -r .job_id <<<"$reply"
