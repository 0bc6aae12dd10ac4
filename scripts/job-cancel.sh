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

url=${OSAPI_URL:-http://127.0.0.1:8080}
if [[ -n ${OSAPI_TOKEN:-} && ! $OSAPI_TOKEN =~ ^[A-Za-z0-9._~+/=-]+$ ]]; then
    echo "job-cancel: OSAPI_TOKEN does not look like a token" >&2
    exit 2
fi
max_time_s=10

# The token goes to curl as a config on standard input, never as an argument: `ps` shows every
# process's arguments to every local user. (Checked at start: it must not break out of the quotes.)
auth_config() {
    if [[ -z ${OSAPI_TOKEN:-} ]]; then return; fi
    printf 'header = "Authorization: Bearer %s"\n' "$OSAPI_TOKEN"
}

# api METHOD PATH: prints the answer's body; on an HTTP error prints the server's message and exits.
api() {
    local args=(-sS -X "$1" --max-time "$max_time_s" -w '\n%{http_code}' -H 'Accept: application/json')
    local out code message
    out=$(curl --config - "${args[@]}" "$url$2" <<<"$(auth_config)") || { echo "job-cancel: cannot reach the API at $url" >&2; exit 3; }
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if ((code >= 400)); then
        message=$(jq -r '(.error // "no details given") + (if (.details // "") != "" then " (\(.details))" else "" end)' <<<"$out" 2>/dev/null) || message=$out
        echo "job-cancel: $1 $2: HTTP $code: $message" >&2
        if ((code == 503)); then exit 3; fi
        exit 1
    fi
    printf '%s\n' "$out"
}

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

reply=$(api POST "/job/$(jq -rn --arg id "$id" '$id | @uri')/cancel")
jq -r .status <<<"$reply"
