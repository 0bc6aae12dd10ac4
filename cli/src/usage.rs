//! The `--help` texts.

pub const TOP: &str = "\
osapi: command line client of the osapi job API

Usage:
  osapi job COMMAND [OPTIONS]      submit, wait for and inspect jobs (osapi job --help)
  osapi worker drain|undrain HOST  stop and resume a worker taking jobs (osapi job --help)
  osapi token COMMAND [OPTIONS]    generate and check JWTs (osapi token --help)

Options for every command:
  --url URL          API address (else $OSAPI_URL, else config api.client.url)
  --token TOKEN      bearer token (else $OSAPI_TOKEN, else config api.client.bearer_token)
  -c, --config PATH  config file (else $OSAPI_CONFIG, else /etc/osapi/osapi.yaml)
  --json             print the server's JSON as is (for scripts)
  -h, --help         print this text

Exit codes: 0 ok/completed, 1 failed (job failed, partial_failure or cancelled, server error, bad token),
2 usage or config error, 3 server unreachable or unavailable (503), or the wait timed out.
";

pub const JOB: &str = "\
Usage:
  osapi job add TYPE [--target T] [--data JSON | --json-file F] [--timeout 60s]
        submit a job and print its id
  osapi job run TYPE [--target T] [--data JSON | --json-file F] [--timeout 60s]
        submit a job, wait for it (up to --timeout) and print each host's result
  osapi job get ID [--wait 30s]      show a job (waiting up to --wait for it to finish)
  osapi job list [--status S] [--limit N] [--offset N]
        list jobs, newest first (S: pending, running, completed, failed, partial_failure, cancelled;
        N: 1 to 1000, default 10)
  osapi job delete ID                delete a job
  osapi job cancel ID                cancel a pending or running job (hosts running it stop it)
  osapi job retry ID [--target T]    submit a new job like ID (default: the same target)
        add, run and retry take --idempotency-key KEY: the same command with the same KEY within
        24h prints the first job's id again and creates nothing (safe to re-run after a timeout)
  osapi job status                   job counts by status and operation
  osapi job workers                  live workers
  osapi worker drain HOST            HOST finishes what it runs and takes nothing new (then: cordoned)
  osapi worker undrain HOST          HOST takes jobs again

Targets (-t, --target): _any (default), _all, HOSTNAME, KEY:VALUE (e.g. group:web.dev).
Options for every command: --url URL, --token TOKEN, -c/--config PATH, --json (see osapi --help).
";

pub const TOKEN: &str = "\
Usage:
  osapi token generate -r ROLE -u SUBJECT [-p PERMISSION]... [--ttl 90d]
        print an HS256 JWT signed with api.server.security.signing_key
        ROLE: read, write, admin, or a role of api.server.security.roles
  osapi token validate TOKEN
        check a token's signature, issuer and expiry and print its claims

Options: -c/--config PATH (see osapi --help).
";
