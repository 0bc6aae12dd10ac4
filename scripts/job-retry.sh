#!/usr/bin/env bash
# Retries a job (POST /job/ID/retry): submits a new job with the same operation and prints its id.
# Needs curl and jq.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: job-retry.sh ID [--target T]

Submits a new job with job ID's operation and data (the original is kept) and prints the new id.
  --target T    where the new job goes (default: the original job's target)
  --idempotency-key K  sent as Idempotency-Key (default: a fresh key per run); the same K within
                 24h gives the first answer again and creates nothing

Env: OSAPI_URL (default http://127.0.0.1:8080), OSAPI_TOKEN (sent as a Bearer token when set, on
curl's standard input: never on a command line).
     OSAPI_RETRIES (default 3: tries on no answer, 503 or 409, each with the same Idempotency-Key).
Exit: 0 created, 1 refused by the server (e.g. 404), 2 usage error, 3 server unreachable or unavailable.
EOF
}

prog='job-retry'
# shellcheck source-path=SCRIPTDIR source=lib/job-common.sh
source "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib/job-common.sh"
use_retries

id='' target=''
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --target) need_value $# "$1"; target=$2; shift 2 ;;
        --idempotency-key) need_value $# "$1"; idempotency_key=$2; shift 2 ;;
        -*) echo "job-retry: unknown option $1 (try --help)" >&2; exit 2 ;;
        *)
            [[ -z $id ]] || { echo "job-retry: unexpected argument $1 (try --help)" >&2; exit 2; }
            id=$1
            shift ;;
    esac
done
[[ -n $id ]] || { usage >&2; exit 2; }

path="/job/$(uri "$id")/retry"
if [[ -n $target ]]; then
    reply=$(api POST "$path" "$(jq -cn --arg t "$target" '{target_hostname: $t}')")
else
    reply=$(api POST "$path")
fi
jq -r .job_id <<<"$reply"
