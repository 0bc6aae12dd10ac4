#!/usr/bin/env bash
# Waits for a job to finish (GET /job/ID?wait=..., the server holds each request) and prints its JSON.
# Needs curl and jq.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: job-wait.sh ID [--timeout 60s]

Waits until job ID is completed, failed or partial_failure (at most --timeout: N, Ns, Nm or Nh)
and prints the job as JSON (the last state seen when time runs out).

Env: OSAPI_URL (default http://127.0.0.1:8080), OSAPI_TOKEN (sent as a Bearer token when set, on
curl's standard input: never on a command line).
Exit: 0 completed, 1 failed or partial_failure (or the server refused, e.g. 404),
      2 usage error, 3 still unfinished at --timeout, or the server is unreachable or unavailable.
EOF
}

url=${OSAPI_URL:-http://127.0.0.1:8080}
if [[ -n ${OSAPI_TOKEN:-} && ! $OSAPI_TOKEN =~ ^[A-Za-z0-9._~+/=-]+$ ]]; then
    echo "job-wait: OSAPI_TOKEN does not look like a token" >&2
    exit 2
fi
hold_max_s=30   # the longest ?wait= asked for in one request (the server's maximum is 60 s)
slack_s=10      # curl's --max-time is the hold plus this

# The token goes to curl as a config on standard input, never as an argument: `ps` shows every
# process's arguments to every local user. (Checked at start: it must not break out of the quotes.)
auth_config() {
    if [[ -z ${OSAPI_TOKEN:-} ]]; then return; fi
    printf 'header = "Authorization: Bearer %s"\n' "$OSAPI_TOKEN"
}

# get PATH MAX_TIME_S: prints the answer's body; on an HTTP error prints the server's message and exits.
get() {
    local args=(-sS --max-time "$2" -w '\n%{http_code}' -H 'Accept: application/json')
    local out code message
    out=$(curl --config - "${args[@]}" "$url$1" <<<"$(auth_config)") || { echo "job-wait: cannot reach the API at $url" >&2; exit 3; }
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if ((code >= 400)); then
        message=$(jq -r '(.error // "no details given") + (if (.details // "") != "" then " (\(.details))" else "" end)' <<<"$out" 2>/dev/null) || message=$out
        echo "job-wait: GET $1: HTTP $code: $message" >&2
        if ((code == 503)); then exit 3; fi
        exit 1
    fi
    printf '%s\n' "$out"
}

id='' timeout=60s
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --timeout) (($# >= 2)) || { echo "job-wait: --timeout needs a value" >&2; exit 2; }; timeout=$2; shift 2 ;;
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

path="/job/$(jq -rn --arg id "$id" '$id | @uri')"
deadline=$((SECONDS + timeout_s))
job=''
while ((SECONDS < deadline)); do
    hold_s=$((deadline - SECONDS < hold_max_s ? deadline - SECONDS : hold_max_s))
    asked=$SECONDS
    job=$(get "$path?wait=${hold_s}s" $((hold_s + slack_s)))
    case $(jq -r .status <<<"$job") in
        completed) printf '%s\n' "$job"; exit 0 ;;
        failed | partial_failure) printf '%s\n' "$job"; exit 1 ;;
    esac
    # The server answers at once when too many requests are already waiting: do not spin.
    if ((SECONDS == asked)); then sleep 1; fi
done
printf '%s\n' "$job"
echo "job-wait: job $id is still $(jq -r .status <<<"$job") after ${timeout_s}s" >&2
exit 3
