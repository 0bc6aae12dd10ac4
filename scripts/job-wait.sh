#!/usr/bin/env bash
# Waits for a job to finish (GET /job/ID?wait=..., the server holds each request) and prints its JSON.
# Needs curl and jq.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: job-wait.sh ID [--timeout 60s]

Waits until job ID is completed, failed, partial_failure or cancelled (at most --timeout: N, Ns, Nm or Nh)
and prints the job as JSON (the last state seen when time runs out).

Env: OSAPI_URL (default http://127.0.0.1:8080), OSAPI_TOKEN (sent as a Bearer token when set, on
curl's standard input: never on a command line).
Exit: 0 completed, 1 failed, partial_failure or cancelled (or the server refused, e.g. 404),
      2 usage error, 3 still unfinished at --timeout, or the server is unreachable or unavailable.
EOF
}

prog='job-wait'
# shellcheck source-path=SCRIPTDIR source=lib/job-common.sh
source "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib/job-common.sh"
hold_max_s=30   # the longest ?wait= asked for in one request (the server's maximum is 60 s)
slack_s=10      # curl's --max-time is the hold plus this

id='' timeout=60s
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --timeout) need_value $# "$1"; timeout=$2; shift 2 ;;
        -*) echo "job-wait: unknown option $1 (try --help)" >&2; exit 2 ;;
        *)
            [[ -z $id ]] || { echo "job-wait: unexpected argument $1 (try --help)" >&2; exit 2; }
            id=$1
            shift ;;
    esac
done
[[ -n $id ]] || { usage >&2; exit 2; }
[[ $timeout =~ ^([0-9]+)([smh]?)$ ]] || { echo "job-wait: --timeout '$timeout' is not N, Ns, Nm or Nh" >&2; exit 2; }
case ${BASH_REMATCH[2]} in
    m) unit_s=60 ;;
    h) unit_s=3600 ;;
    *) unit_s=1 ;;
esac
timeout_s=$((10#${BASH_REMATCH[1]} * unit_s))
((timeout_s > 0)) || { echo "job-wait: --timeout must be more than 0s" >&2; exit 2; }

path="/job/$(uri "$id")"
deadline=$((SECONDS + timeout_s))
job=''
while ((SECONDS < deadline)); do
    hold_s=$((deadline - SECONDS < hold_max_s ? deadline - SECONDS : hold_max_s))
    asked=$SECONDS
    max_time_s=$((hold_s + slack_s))
    job=$(api GET "$path?wait=${hold_s}s")
    case $(jq -r .status <<<"$job") in
        completed) printf '%s\n' "$job"; exit 0 ;;
        failed | partial_failure | cancelled) printf '%s\n' "$job"; exit 1 ;;
    esac
    # The server answers at once when too many requests are already waiting: do not spin.
    if ((SECONDS == asked)); then sleep 1; fi
done
printf '%s\n' "$job"
echo "job-wait: job $id is still $(jq -r .status <<<"$job") after ${timeout_s}s" >&2
exit 3
