# shellcheck shell=bash
# What scripts/job-*.sh share, sourced (never run) right after `set -euo pipefail` and `prog=NAME`
# (NAME starts each message): the API's URL and token from the environment, the one curl call that
# prints an answer's body or the server's error, and the exit codes every script documents:
# 1 refused by the server, 2 usage error, 3 server unreachable or unavailable (503).

prog=${prog:?set prog before sourcing lib/job-common.sh}
url=${OSAPI_URL:-http://127.0.0.1:8080}
if [[ -n ${OSAPI_TOKEN:-} && ! $OSAPI_TOKEN =~ ^[A-Za-z0-9._~+/=-]+$ ]]; then
    echo "$prog: OSAPI_TOKEN does not look like a token" >&2
    exit 2
fi
max_time_s=10 # curl's --max-time per request (job-wait.sh sets it for each held request)
attempts=1    # tries per request; use_retries raises it
# idempotency_key stays unset (no Idempotency-Key header) unless use_retries sets it.

# use_retries: for a script that creates jobs: up to OSAPI_RETRIES tries per request, every one with
# the run's one Idempotency-Key (a fresh one; `--idempotency-key K` may replace it).
use_retries() {
    attempts=${OSAPI_RETRIES:-3}
    [[ $attempts =~ ^[1-9][0-9]?$ ]] || { echo "$prog: OSAPI_RETRIES must be 1 to 99, got '$attempts'" >&2; exit 2; }
    idempotency_key=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || echo "$(date +%s%N)-$$-$RANDOM")
}

# The token goes to curl as a config on standard input, never as an argument: `ps` shows every
# process's arguments to every local user. (Checked at start: it must not break out of the quotes.)
auth_config() {
    if [[ -z ${OSAPI_TOKEN:-} ]]; then return; fi
    printf 'header = "Authorization: Bearer %s"\n' "$OSAPI_TOKEN"
}

# api METHOD PATH [BODY]: prints the answer's body; on an HTTP error prints the server's message and exits.
# Tries up to $attempts times (1 s, 2 s, ... apart) when there is no answer, a 503 or a 409 (the same key
# still in progress), always with the run's one Idempotency-Key: a POST whose answer was lost is not
# submitted twice.
api() {
    local args=(-sS -X "$1" --max-time "$max_time_s" -w '\n%{http_code}' -H 'Accept: application/json')
    if [[ $# -ge 3 ]]; then args+=(-H 'Content-Type: application/json' --data-binary "$3"); fi
    if [[ -n ${idempotency_key+set} ]]; then args+=(-H "Idempotency-Key: $idempotency_key"); fi
    local out code message try
    for ((try = 1; ; try++)); do
        if out=$(curl --config - "${args[@]}" "$url$2" <<<"$(auth_config)"); then
            code=${out##*$'\n'}
            out=${out%$'\n'*}
            if ((code != 503 && code != 409)) || ((try >= attempts)); then break; fi
        elif ((try >= attempts)); then
            echo "$prog: cannot reach the API at $url" >&2
            exit 3
        fi
        sleep "$try"
    done
    if ((code >= 400)); then
        message=$(jq -r '(.error // "no details given") + (if (.details // "") != "" then " (\(.details))" else "" end)' <<<"$out" 2>/dev/null) || message=$out
        echo "$prog: $1 $2: HTTP $code: $message" >&2
        if ((code == 503)); then exit 3; fi
        exit 1
    fi
    printf '%s\n' "$out"
}

# need_value ARGC OPTION: an option given last, without its value, is a usage error.
need_value() { if (($1 < 2)); then echo "$prog: $2 needs a value" >&2; exit 2; fi; }

# uri TEXT: TEXT escaped for a URL path segment or query value.
uri() { jq -rn --arg s "$1" '$s | @uri'; }
