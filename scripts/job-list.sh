#!/usr/bin/env bash
# Lists jobs, newest first (GET /job): one line per job with id, status, operation and target. Needs curl and jq.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: job-list.sh [--status S] [--limit N] [--offset N]

Prints one tab-separated line per job, newest first: ID STATUS OPERATION TARGET.
  --status S    pending, running, completed, failed or partial_failure
  --limit N     how many, 1 to 1000 (the server's default is 10)
  --offset N    how many of the newest to skip

Env: OSAPI_URL (default http://127.0.0.1:8080), OSAPI_TOKEN (sent as a Bearer token when set, on
curl's standard input: never on a command line).
Exit: 0 ok, 1 refused by the server, 2 usage error, 3 server unreachable or unavailable.
EOF
}

url=${OSAPI_URL:-http://127.0.0.1:8080}
if [[ -n ${OSAPI_TOKEN:-} && ! $OSAPI_TOKEN =~ ^[A-Za-z0-9._~+/=-]+$ ]]; then
    echo "job-list: OSAPI_TOKEN does not look like a token" >&2
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
    out=$(curl --config - "${args[@]}" "$url$2" <<<"$(auth_config)") || { echo "job-list: cannot reach the API at $url" >&2; exit 3; }
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if ((code >= 400)); then
        message=$(jq -r '(.error // "no details given") + (if (.details // "") != "" then " (\(.details))" else "" end)' <<<"$out" 2>/dev/null) || message=$out
        echo "job-list: $1 $2: HTTP $code: $message" >&2
        if ((code == 503)); then exit 3; fi
        exit 1
    fi
    printf '%s\n' "$out"
}

need_value() { if (($1 < 2)); then echo "job-list: $2 needs a value" >&2; exit 2; fi; }

query=()
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --status) need_value $# "$1"; query+=("status=$(jq -rn --arg s "$2" '$s | @uri')"); shift 2 ;;
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
