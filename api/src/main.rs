//! `osapi-api`: reads the config, connects to NATS, makes sure the JetStream layout exists, starts the
//! index watch and serves HTTP until SIGTERM/SIGINT.

mod alloc;
mod audit;
mod auth;
mod ctx;
mod error;
mod handlers;
mod idempotency;
mod index;
mod metrics;
mod routes;
mod server;
mod store;
mod watch;

use osapi_bus::setup;
use osapi_common::config::{parse_cli_args, CliArgs, Config};
use osapi_common::trust::{self, JobSigningKey};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

/// Requests that may hold a handler thread in `?wait=` at once: half the threads, so waiting clients
/// never starve the others.
const WAITERS_MAX: usize = server::HANDLER_THREADS / 2;
/// A daemon waits for NATS as long as it takes; it logs once and retries every second.
const CONNECT_PATIENCE: Duration = Duration::from_secs(365 * 24 * 3600);

const USAGE: &str = "usage: osapi-api [--config PATH] [--no-auth]

Config: --config/-c, else $OSAPI_CONFIG, else /etc/osapi/osapi.yaml; OSAPI_* env vars override keys.
--no-auth: serve without tokens (development only; refused unless api.server.listen is a loopback address).";

/// Without a signing key the API serves only when told so, and only on loopback.
fn check_auth_mode(cfg: &Config, no_auth: bool) -> Result<(), String> {
    let keyless = cfg.api.server.security.signing_key.is_empty();
    if keyless && !no_auth {
        return Err(format!(
            "api.server.security.signing_key is empty: set it (env {}), or pass --no-auth for development on loopback",
            osapi_common::config::env_name("api.server.security.signing_key")
        ));
    }
    if keyless {
        let listen = &cfg.api.server.listen;
        let loopback = listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
            || listen.starts_with("localhost:");
        if !loopback {
            return Err(format!(
                "--no-auth is only allowed on a loopback address, and api.server.listen is {listen}"
            ));
        }
        log::warn!("serving WITHOUT authentication (--no-auth): anyone who can reach {listen} may submit jobs");
    } else {
        let key = &cfg.api.server.security.signing_key;
        osapi_common::permission::check_signing_key(key)
            .map_err(|e| format!("api.server.security.signing_key {e}"))?;
        if no_auth {
            log::warn!("--no-auth ignored: a signing key is configured, tokens are required");
        }
    }
    Ok(())
}

/// The Ed25519 key every job is signed with; the API does not start without one.
fn load_job_key(path: &str) -> Result<JobSigningKey, String> {
    let setting = "api.server.security.job_signing_key_file";
    if path.is_empty() {
        return Err(format!(
            "{setting} is empty: workers run only signed jobs. Make a key pair with \
             `osapi keys generate --out /etc/osapi/job.key` (or `openssl genpkey -algorithm ed25519`), \
             set {setting} to it and list the .pub file in the workers' job.worker.trusted_job_keys"
        ));
    }
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{setting} {path}: {e}"))?;
    let key = trust::signing_key_from_pem(&pem).map_err(|e| format!("{setting} {path}: {e}"))?;
    log::info!(
        "signing jobs with key {}",
        trust::key_id(&key.verifying_key())
    );
    Ok(key)
}

/// How long a host may stay `running`/`retryable` with no new record past the job's deadline before it
/// counts as `failed: worker lost` (`common::status::Grace`), from the workers' consumer settings in the
/// shared config: a live worker's delivery outlives `ack_wait` only by in-progress acks, and a retry
/// comes at most the longest `back_off` step later.
fn hosts_grace(cfg: &Config) -> osapi_common::status::Grace {
    let c = &cfg.job.worker.consumer;
    let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let longest_back_off = c.back_off.iter().max().copied().unwrap_or(Duration::ZERO);
    osapi_common::status::Grace {
        running_us: us(c.ack_wait),
        retryable_us: us(c.ack_wait).saturating_add(us(longest_back_off)),
    }
}

fn main() {
    let tuned = alloc::tune();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = tuned {
        log::warn!("{e}");
    }
    if let Err(e) = run() {
        eprintln!("osapi-api: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args: Vec<String> = std::env::args().collect();
    let no_auth = args.iter().any(|a| a == "--no-auth");
    args.retain(|a| a != "--no-auth");
    let config_path = match parse_cli_args(&args).map_err(|e| format!("{e}\n{USAGE}"))? {
        CliArgs::Help => {
            println!("{USAGE}");
            return Ok(());
        }
        CliArgs::Run { config } => config,
    };
    let cfg = Config::load(config_path.as_deref()).map_err(|e| e.to_string())?;
    check_auth_mode(&cfg, no_auth)?;
    let job_key = Arc::new(load_job_key(&cfg.api.server.security.job_signing_key_file)?);
    let names = Arc::new(setup::names(&cfg));

    let inbox = osapi_common::nats_permissions::api_inbox_prefix(&names);
    let bus = setup::connect_with_retry(
        &setup::connect_options(&cfg, "osapi-api", &inbox),
        CONNECT_PATIENCE,
    )
    .map_err(|e| e.to_string())?;
    while let Err(e) = setup::ensure_layout(&bus, &cfg, &names) {
        log::warn!("cannot set up JetStream streams and buckets: {e}; retrying");
        std::thread::sleep(Duration::from_secs(1));
    }

    let audit = audit::Audit::new(bus.clone(), &names);
    while let Err(e) = audit.ensure(&cfg) {
        log::warn!("cannot set up the audit stream: {e}; retrying");
        std::thread::sleep(Duration::from_secs(1));
    }

    let grace = hosts_grace(&cfg);
    let detail_bytes = cfg.api.server.detail_cache_bytes;
    let index = Arc::new(index::Index::with_detail_cache(
        grace,
        detail_bytes,
        cfg.nats.kv.ttl,
    ));
    let mut watched = vec![
        (&names.bucket, index::Source::Jobs),
        (&names.workers_bucket, index::Source::Workers),
    ];
    if detail_bytes > 0 {
        // Only the detail cache reads responses; with it off nothing watches them.
        watched.push((&names.response_bucket, index::Source::Responses));
    }
    for (bucket, source) in watched {
        watch::spawn(watch::Watched {
            bus: bus.clone(),
            bucket: bucket.clone(),
            source,
            index: index.clone(),
            ttl: cfg.nats.kv.ttl,
            from_now: source == index::Source::Responses,
        })
        .map_err(|e| format!("cannot start the {} watch: {e}", source.name()))?;
    }

    let listen = &cfg.api.server.listen;
    let http = server::bind(listen, cfg.api.server.max_connections)
        .map_err(|e| format!("cannot listen on {listen} (api.server.listen): {e}"))?;
    log::info!("listening on http://{listen}");

    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.clone())
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    let ctx = Arc::new(ctx::Ctx {
        store: store::Store::new(bus, names, index, grace, job_key),
        auth: auth::Auth::new(
            &cfg.api.server.security.signing_key,
            &cfg.api.server.security.audience,
            cfg.api.server.security.roles.clone(),
        ),
        audit,
        waiters: AtomicUsize::new(0),
        waiters_max: WAITERS_MAX,
        max_job_data_bytes: cfg.api.server.max_job_data_bytes,
    });
    metrics::start(&cfg.api.metrics.listen, ctx.clone(), shutdown.clone())?;
    server::serve(http, ctx.clone(), cfg.api.server.max_body_bytes, shutdown)?;
    // The handlers have stopped: write the audit entries still queued, within a bound.
    ctx.audit.close();
    log::info!("stopped");
    Ok(())
}
