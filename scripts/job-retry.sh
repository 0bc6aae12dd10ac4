#!/usr/bin/env bash
# Retries a job (POST /job/ID/retry): submits a new job with the same operation and prints its id.
# Needs curl and jq.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: job-retry.sh ID [--target T]

Submits a new job with job ID's operation and data (the original is kept) and prints the new id.
  --target T    where the new job goes (default: the original job's target)

Env: OSAPI_URL (default http://127.0.0.1:8080), OSAPI_TOKEN (sent as a Bearer token when set, on
curl's standard input: never on a command line).
Exit: 0 created, 1 refused by the server (e.g. 404), 2 usage error, 3 server unreachable or unavailable.
EOF
}

url=${OSAPI_URL:-http://127.0.0.1:8080}
if [[ -n ${OSAPI_TOKEN:-} && ! $OSAPI_TOKEN =~ ^[A-Za-z0-9._~+/=-]+$ ]]; then
    echo "job-retry: OSAPI_TOKEN does not look like a token" >&2
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
    out=$(curl --config - "${args[@]}" "$url$2" <<<"$(auth_config)") || { echo "job-retry: cannot reach the API at $url" >&2; exit 3; }
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if ((code >= 400)); then
        message=$(jq -r '(.error // "no details given") + (if (.details // "") != "" then " (\(.details))" else "" end)' <<<"$out" 2>/dev/null) || message=$out
        echo "job-retry: $1 $2: HTTP $code: $message" >&2
        if ((code == 503)); then exit 3; fi
        exit 1
    fi
    printf '%s\n' "$out"
}

id='' target=''
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --target) (($# >= 2)) || { echo "job-retry: --target needs a value" >&2; exit 2; }; target=$2; shift 2 ;;
        -*) echo "job-retry: unknown option $1 (try --help)" >&2; exit 2 ;;
        *)
            [[ -z $id ]] || { echo "job-retry: unexpected argument $1 (try --help)" >&2; exit 2; }
            id=$1
            shift ;;
    esac
done
[[ -n $id ]] || { usage >&2; exit 2; }

path="/job/$(jq -rn --arg id "$id" '$id | @uri')/retry"
if [[ -n $target ]]; then
    reply=$(api POST "$path" "$(jq -cn --arg t "$target" '{target_hostname: $t}')")
else
    reply=$(api POST "$path")
fi
jq -r .job_id <<<"$reply"
