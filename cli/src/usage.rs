//! The `--help` texts.

pub const TOP: &str = "\
osapi: command line client of the osapi job API

Usage:
  osapi job COMMAND [OPTIONS]      submit, wait for and inspect jobs (osapi job --help)
  osapi worker drain|undrain HOST  stop and resume a worker taking jobs (osapi job --help)
  osapi token COMMAND [OPTIONS]    generate and check JWTs (osapi token --help)
  osapi keys generate --out PATH   make the Ed25519 key pair jobs are signed with (osapi keys --help)
  osapi audit list|export          the API's audit trail, admin only (osapi audit --help)
  osapi nats-permissions --hostname H   one host's NATS user for nats-server's config

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
  osapi job list [--status S] [--limit N] [--offset M]
        list jobs, newest first (S: pending, running, completed, failed, partial_failure, cancelled;
        N: 1 to 1000, default 10; M: 0 or more, default 0)
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

pub const KEYS: &str = "\
Usage:
  osapi keys generate --out PATH
        write a new Ed25519 job-signing key pair: PATH (private, PEM PKCS#8, mode 0600) and
        PATH.pub (public, PEM), the same formats as `openssl genpkey -algorithm ed25519` and
        `openssl pkey -pubout`. Existing files are never overwritten.
        The API signs with PATH (api.server.security.job_signing_key_file); workers trust
        PATH.pub (job.worker.trusted_job_keys).
";

pub const AUDIT: &str = "\
Usage:
  osapi audit list [--limit 20] [--offset N]
        the newest entries of the audit trail: every request that changed something, and every
        401 and 403 (who, what, answer, from where, which job). Needs a token with audit:read (admin).
  osapi audit export --out FILE
        every entry kept (audit.max_age), oldest first, as JSON Lines into a new FILE

Options for every command: --url URL, --token TOKEN, -c/--config PATH, --json (see osapi --help).
";

pub const NATS_PERMISSIONS: &str = "\
Usage:
  osapi nats-permissions --hostname H [--label KEY=VALUE]... [--nkey U...]
        print worker host H's entry for nats-server's `authorization { users = [...] }`: it may
        read job definitions, create and pull only its own consumers, and write only its own
        state, response and heartbeat keys. Give the host's labels: each label has its consumers.
  osapi nats-permissions --api [--nkey U...]
        print the API's entry: everything but writing a host's records or settling its jobs

The names (namespace, stream, buckets) come from the config (-c/--config). --nkey is the
identity's public NKey (`nk -gen user -pubout`); without it the block holds a placeholder.
See packaging/nats/ and docs/security.md.
";
