#!/usr/bin/env bash
# Lists jobs, newest first (GET /job): one line per job with id, status, operation and target. Needs curl and jq.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: job-list.sh [--status S] [--limit N] [--offset N]

Prints one tab-separated line per job, newest first: ID STATUS OPERATION TARGET.
  --status S    pending, running, completed, failed, partial_failure or cancelled
  --limit N     how many, 1 to 1000 (the server's default is 10)
  --offset N    how many of the newest to skip

Env: OSAPI_URL (default http://127.0.0.1:8080), OSAPI_TOKEN (sent as a Bearer token when set, on
curl's standard input: never on a command line).
Exit: 0 ok, 1 refused by the server, 2 usage error, 3 server unreachable or unavailable.
EOF
}

prog='job-list'
# shellcheck source-path=SCRIPTDIR source=lib/job-common.sh
source "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib/job-common.sh"

query=()
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --status) need_value $# "$1"; query+=("status=$(uri "$2")"); shift 2 ;;
        --limit | --offset)
            need_value $# "$1"
            [[ $2 =~ ^[0-9]+$ ]] || { echo "job-list: $1 '$2' is not a non-negative integer" >&2; exit 2; }
            query+=("${1#--}=$2")
            shift 2 ;;
        *) echo "job-list: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done

path=/job
if ((${#query[@]} > 0)); then path+="?$(IFS='&'; echo "${query[*]}")"; fi
reply=$(api GET "$path")
jq -r '.items[] | [.id, .status, .operation.type, .target_hostname] | @tsv' <<<"$reply"
