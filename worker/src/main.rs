//! `osapi-worker`: runs on each managed host. Start-up (config, logging, hostname, connect, NATS layout,
//! heartbeat, consumers: the worker is listed from its first heartbeat but routed to only once every
//! consumer exists), the threads that do the work (fetchers -> pool -> run -> ops, heartbeat, progress), and a
//! graceful stop on SIGTERM/SIGINT: take no new jobs, let running ones finish within `shutdown_grace`,
//! remove the heartbeat, exit 0.

mod cancel;
mod clock;
mod conditions;
mod consumers;
mod drain;
mod gate;
mod handoff;
mod heartbeat;
mod jobdef;
mod keys;
mod metrics;
mod ops;
mod pool;
mod run;
mod settling;
mod shutdown;
mod subscriptions;

use crossbeam_channel::{bounded, RecvTimeoutError};
use heartbeat::Heartbeat;
use ops::OpContext;
use osapi_bus::{Bus, BusError};
use osapi_common::config::{parse_cli_args, CliArgs, Config};
use run::Runner;
use shutdown::Shutdown;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subscriptions::Fetcher;

const USAGE: &str = "\
Usage: osapi-worker [--config PATH]

Runs jobs for this host from NATS JetStream.

Options:
  -c, --config PATH  config file (default: $OSAPI_CONFIG, else /etc/osapi/osapi.yaml)
  -h, --help         show this help

Logging: RUST_LOG (default info).";

/// Pause between attempts to reach NATS at start-up.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// While NATS stays unreachable at start-up, one log line per this many attempts.
const RETRY_LOG_EVERY: u32 = 30;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let config_path = match parse_cli_args(&args) {
        Ok(CliArgs::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(CliArgs::Run { config }) => config,
        Err(e) => {
            eprintln!("osapi-worker: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = match Config::load(config_path.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("osapi-worker: {e}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The configured hostname, or the OS one when it is empty.
fn resolve_hostname(configured: &str) -> Result<String, String> {
    let name = if configured.is_empty() {
        os_hostname()?
    } else {
        configured.to_string()
    };
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(format!(
            "hostname '{name}' must match [A-Za-z0-9_.-]+; set job.worker.hostname"
        ));
    }
    Ok(name)
}

fn os_hostname() -> Result<String, String> {
    let mut buf = [0_u8; 256];
    // SAFETY: gethostname(2) writes at most buf.len() bytes into buf, which we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(format!("gethostname: {}", std::io::Error::last_os_error()));
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// SIGTERM/SIGINT trigger the graceful stop; a second one ends the process at once.
fn install_signals(shutdown: &Arc<Shutdown>) -> Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("signals: {e}"))?;
    let shutdown = shutdown.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if shutdown.is_triggered() {
                    log::warn!("signal {signal} again: exiting now");
                    std::process::exit(1);
                }
                log::info!("signal {signal}: stopping");
                shutdown.trigger();
            }
        })
        .map(|_| ())
        .map_err(|e| format!("signal thread: {e}"))
}

/// Retries `step` every second while NATS is unreachable (or JetStream not ready); `None` on shutdown.
fn with_retry<T>(
    what: &str,
    shutdown: &Shutdown,
    mut step: impl FnMut() -> Result<T, BusError>,
) -> Result<Option<T>, String> {
    let mut attempts = 0_u32;
    loop {
        match step() {
            Ok(v) => return Ok(Some(v)),
            Err(e @ (BusError::Unavailable(_) | BusError::Api { code: 500.., .. })) => {
                if attempts.is_multiple_of(RETRY_LOG_EVERY) {
                    log::warn!("{what}: {e}; retrying every {}s", RETRY_EVERY.as_secs());
                }
                attempts = attempts.saturating_add(1);
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
        if shutdown.sleep(RETRY_EVERY) {
            return Ok(None);
        }
    }
}

fn run(cfg: Config) -> Result<(), String> {
    let started_us = clock::now_us();
    let w = &cfg.job.worker;
    let hostname = resolve_hostname(&w.hostname)?;
    let trust = keys::load_trust(w)?;
    keys::warn_about_secrets(&cfg);
    let shutdown = Shutdown::new();
    install_signals(&shutdown)?;
    let names = osapi_bus::setup::names(&cfg);
    let opts = osapi_bus::setup::connect_options(
        &cfg,
        &format!("osapi-worker {hostname}"),
        &osapi_common::nats_permissions::worker_inbox_prefix(&names, &hostname),
    );
    log::info!("osapi-worker {hostname}: connecting to {}", opts.url);

    let Some(bus) = with_retry("connecting to NATS", &shutdown, || Bus::connect(&opts))? else {
        return Ok(());
    };
    let layout = with_retry("creating the JetStream layout", &shutdown, || {
        osapi_bus::setup::find_or_create_layout(&bus, &cfg, &names)
    })?;
    if layout.is_none() {
        return Ok(());
    }
    // Job, state and cancel reads: direct gets where they are as true as STREAM.MSG.GET (bus/src/direct.rs).
    match bus.kv_enable_direct(&names.bucket) {
        Ok(Ok(())) => log::info!("reading {} with direct gets", names.bucket),
        Ok(Err(why)) => log::info!("reading {} with STREAM.MSG.GET: {why}", names.bucket),
        Err(e) => log::warn!("reading {} with STREAM.MSG.GET: {e}", names.bucket),
    }
    let version = with_retry("reading the server's version", &shutdown, || {
        bus.server_version()
    })?;
    let Some(version) = version else {
        return Ok(());
    };
    let multi_filter = osapi_bus::version_at_least(&version, (2, 10));
    let (specs, stale) = consumers::plan(&names, &hostname, &w.labels, multi_filter);
    log::info!(
        "nats-server {version}: {} consumers for this worker{}",
        specs.len(),
        if multi_filter {
            " (several filters each)"
        } else {
            ", one filter each"
        }
    );
    consumers::check_room(&bus, &cfg, &names, &specs, &version);
    let subscription = consumers::Subscription::new(&specs);

    let operations: Vec<String> = ops::supported()
        .iter()
        .map(|op| op.as_str().to_string())
        .collect();
    // Drained before a restart: stay drained, pull nothing until the record says otherwise.
    let drain_follow = drain::Drain {
        bus: bus.clone(),
        names: names.clone(),
        hostname: hostname.clone(),
    };
    if with_retry("reading the drain record", &shutdown, || {
        drain_follow.load()
    })?
    .is_none()
    {
        return Ok(());
    }
    let cancels = Arc::new(cancel::Registry::default());
    let runner = Arc::new(Runner {
        bus: bus.clone(),
        names: names.clone(),
        hostname: hostname.clone(),
        max_deliver: u64::try_from(w.consumer.max_deliver).unwrap_or(1).max(1),
        back_off: w.consumer.back_off.clone(),
        ctx: OpContext {
            hostname: hostname.clone(),
            host_root: w.host_root.clone(),
            allow_operations: w.allow_operations.clone(),
        },
        started_us,
        cancels: cancels.clone(),
        refresh_every: run::refresh_interval(w.consumer.ack_wait),
        fresh: run::Fresh::default(),
        settling: Arc::default(),
        gate: gate::Gate {
            trust,
            hostname: hostname.clone(),
            labels: w.labels.clone(),
        },
    });
    start_runner_thread(&runner, "job-fresh", Runner::keep_fresh)?;
    start_runner_thread(&runner, "job-settle", Runner::keep_settling)?;
    cancel::start_listener(bus.clone(), &names, cancels)
        .map_err(|e| format!("starting threads: {e}"))?;
    let (jobs_tx, jobs_rx) = handoff::channel();
    let (done_tx, done_rx) = bounded::<()>(0);
    let spawn_err = |e: std::io::Error| format!("starting threads: {e}");
    let pool =
        pool::start(w.max_jobs, &jobs_rx, &runner, &shutdown, &done_tx).map_err(spawn_err)?;
    drop((jobs_rx, done_tx));
    let progress_every = pool::progress_interval(w.consumer.ack_wait, &w.consumer.back_off);
    pool::start_progress(&pool, progress_every).map_err(spawn_err)?;
    metrics::start(&w.metrics.listen, pool.clone())?;

    let heartbeat = Arc::new(Heartbeat {
        bus: bus.clone(),
        names: names.clone(),
        hostname: hostname.clone(),
        labels: w.labels.clone(),
        started_us,
        every: w.heartbeat,
        max_jobs: w.max_jobs,
        operations,
        conditions: conditions::Conditions::new(runner.ctx.clone(), w.conditions),
        subscription: subscription.clone(),
    });
    if let Err(e) = heartbeat.beat(0) {
        log::warn!("first heartbeat of {hostname} not written: {e}");
    }
    let beating = heartbeat
        .clone()
        .start(pool.clone(), shutdown.clone())
        .map_err(spawn_err)?;
    drain_follow
        .start(pool.clone(), heartbeat.clone(), w.heartbeat)
        .map_err(spawn_err)?;

    let consumer_configs: Vec<_> = specs
        .iter()
        .map(|spec| consumers::consumer_config(spec, &cfg))
        .collect();
    if consumers::subscribe_all(
        &bus,
        &cfg,
        &names,
        &consumer_configs,
        &subscription,
        &shutdown,
    ) {
        consumers::remove_stale(&bus, &names, &stale);
        // Tell the API at once rather than at the next beat: routing waits for this.
        if let Err(e) = heartbeat.beat(pool.running()) {
            log::warn!("heartbeat of {hostname} not written: {e}");
        }
        let cfg = Arc::new(cfg.clone());
        for (spec, consumer) in specs.iter().cloned().zip(consumer_configs) {
            let fetcher = Fetcher {
                bus: bus.clone(),
                cfg: cfg.clone(),
                names: names.clone(),
                spec,
                consumer,
                jobs: jobs_tx.clone(),
                subscription: subscription.clone(),
                pool: pool.clone(),
                shutdown: shutdown.clone(),
                progress_every,
            };
            fetcher.start().map_err(spawn_err)?;
        }
        let filters: Vec<String> = specs.iter().flat_map(|s| s.filters.clone()).collect();
        log::info!(
            "osapi-worker {hostname}: ready, {} threads, listening on {}",
            w.max_jobs,
            filters.join(", ")
        );
    }
    drop(jobs_tx);

    while !shutdown.sleep(Duration::from_secs(3600)) {}
    stop(&cfg, &pool, &done_rx, &runner, &heartbeat, beating);
    Ok(())
}

/// Starts the thread `name`, which runs `work` for the life of the process.
fn start_runner_thread(runner: &Arc<Runner>, name: &str, work: fn(&Runner)) -> Result<(), String> {
    let runner = runner.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || work(&runner))
        .map(|_| ())
        .map_err(|e| format!("starting threads: {e}"))
}

/// Waits until every pool thread has ended (the `done` channel disconnects), or `deadline`.
fn wait_drained(done: &crossbeam_channel::Receiver<()>, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match done.recv_timeout(left) {
            Ok(()) => continue,
            Err(RecvTimeoutError::Disconnected) => return true,
            Err(RecvTimeoutError::Timeout) => return false,
        }
    }
}

/// The graceful stop: fetchers give back what they hold, running jobs get `shutdown_grace`, jobs still
/// running after that are handed back for redelivery, finished ones are settled, and the heartbeat key
/// goes.
fn stop(
    cfg: &Config,
    pool: &pool::PoolState,
    pool_done: &crossbeam_channel::Receiver<()>,
    runner: &Runner,
    heartbeat: &Heartbeat,
    beating: std::thread::JoinHandle<()>,
) {
    let grace = cfg.job.worker.shutdown_grace;
    let started = Instant::now();
    log::info!(
        "taking no new jobs; waiting up to {}s for {} running",
        grace.as_secs_f64(),
        pool.running()
    );
    // Pool threads end once every fetcher has returned its last pull (they hold the channel's senders).
    if !wait_drained(pool_done, started + grace) {
        let left_over = pool.inflight_messages();
        if !left_over.is_empty() {
            log::warn!(
                "{} jobs still running after {}s: handed back for redelivery",
                left_over.len(),
                grace.as_secs_f64()
            );
            for msg in left_over {
                let _ = msg.nak(Duration::ZERO);
            }
        }
        // Fetchers give back what a last pull brings; they are done within STOP_WITHIN of the signal.
        wait_drained(pool_done, started + subscriptions::STOP_WITHIN);
    }
    // A finished job's notification is settled when its record's ack comes, or by the settling
    // thread within the request timeout (plus one write more when the record was refused).
    let timeout = runner.bus.request_timeout();
    if !runner.settling.wait_empty(Instant::now() + timeout * 2) {
        log::warn!(
            "finished jobs left unsettled: JetStream redelivers them (one whose record was stored is then acked as done)"
        );
    }
    if beating.join().is_err() {
        log::warn!("heartbeat thread panicked");
    }
    // A request after the NAKs above: its answer also means they went out.
    match heartbeat.remove() {
        Ok(()) => log::info!(
            "stopped; {} removed from the worker list",
            heartbeat.hostname
        ),
        Err(e) => log::warn!(
            "stopped; heartbeat of {} not removed: {e}",
            heartbeat.hostname
        ),
    }
}
