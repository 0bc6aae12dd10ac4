#!/usr/bin/env bash
# Cancels a job (POST /job/ID/cancel) and prints its status right after. Needs curl and jq.
set -euo pipefail

usage() {
    cat <<'EOF2'
Usage: job-cancel.sh ID

Cancels job ID: hosts that have not started it never will, hosts running it stop it. Prints the job's
status as of the answer: `cancelled`, or `running` while a host is still stopping (job-wait.sh waits).

Env: OSAPI_URL (default http://127.0.0.1:8080), OSAPI_TOKEN (sent as a Bearer token when set, on
curl's standard input: never on a command line).
Exit: 0 cancelled, 1 refused by the server (404 unknown job, 409 already finished), 2 usage error,
      3 server unreachable or unavailable.
EOF2
}

prog='job-cancel'
# shellcheck source-path=SCRIPTDIR source=lib/job-common.sh
source "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib/job-common.sh"

id=''
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        -*) echo "job-cancel: unknown option $1 (try --help)" >&2; exit 2 ;;
        *)
            [[ -z $id ]] || { echo "job-cancel: unexpected argument $1 (try --help)" >&2; exit 2; }
            id=$1
            shift ;;
    esac
done
[[ -n $id ]] || { usage >&2; exit 2; }

reply=$(api POST "/job/$(uri "$id")/cancel")
jq -r .status <<<"$reply"
