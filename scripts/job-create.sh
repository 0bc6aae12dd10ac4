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

Env: OSAPI_URL (default http://127.0.0.1:8080), OSAPI_TOKEN (sent as a Bearer token when set, on
curl's standard input: never on a command line).
Exit: 0 created, 1 refused by the server, 2 usage error, 3 server unreachable or unavailable.
EOF
}

url=${OSAPI_URL:-http://127.0.0.1:8080}
if [[ -n ${OSAPI_TOKEN:-} && ! $OSAPI_TOKEN =~ ^[A-Za-z0-9._~+/=-]+$ ]]; then
    echo "job-create: OSAPI_TOKEN does not look like a token" >&2
    exit 2
fi
max_time_s=10

# The token goes to curl as a config on standard input, never as an argument: `ps` shows every
# process's arguments to every local user. (Checked at start: it must not break out of the quotes.)
auth_config() {
    if [[ -z ${OSAPI_TOKEN:-} ]]; then return; fi
    printf 'header = "Authorization: Bearer %s"\n' "$OSAPI_TOKEN"
}

# api METHOD PATH [BODY]: prints the answer's body; on an HTTP error prints the server's message and exits.
api() {
    local args=(-sS -X "$1" --max-time "$max_time_s" -w '\n%{http_code}' -H 'Accept: application/json')
    if [[ $# -ge 3 ]]; then args+=(-H 'Content-Type: application/json' --data-binary "$3"); fi
    local out code message
    out=$(curl --config - "${args[@]}" "$url$2" <<<"$(auth_config)") || { echo "job-create: cannot reach the API at $url" >&2; exit 3; }
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if ((code >= 400)); then
        message=$(jq -r '(.error // "no details given") + (if (.details // "") != "" then " (\(.details))" else "" end)' <<<"$out" 2>/dev/null) || message=$out
        echo "job-create: $1 $2: HTTP $code: $message" >&2
        if ((code == 503)); then exit 3; fi
        exit 1
    fi
    printf '%s\n' "$out"
}

need_value() { if (($1 < 2)); then echo "job-create: $2 needs a value" >&2; exit 2; fi; }

type='' target=_any data='{}' timeout=60s
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --target) need_value $# "$1"; target=$2; shift 2 ;;
        --data) need_value $# "$1"; data=$2; shift 2 ;;
        --timeout) need_value $# "$1"; timeout=$2; shift 2 ;;
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
