//! From the osapi config to NATS: connection options, and the JetStream layout (job stream, dead-letter
//! stream, the KV buckets) that whichever daemon starts first creates and the other finds. Idempotent.

use crate::{Bus, BusError, ConnectOptions, ConsumerConfig, Identity, StreamConfig};
use osapi_common::config::{Config, NatsAuth};
use osapi_common::names::{ConsumerSpec, Names};
use std::time::{Duration, Instant};

/// Pull requests a consumer of one host holds at once (one fetcher; the rest is slack).
const OWN_MAX_WAITING: i64 = 512;

/// Connection options for `cfg.nats`, naming the client `name` on the server; its replies and deliveries
/// come on `inbox_prefix` (`osapi_common::nats_permissions`: one per identity).
pub fn connect_options(cfg: &Config, name: &str, inbox_prefix: &str) -> ConnectOptions {
    let (user_pass, token) = match &cfg.nats.auth {
        NatsAuth::None => (None, None),
        NatsAuth::UserPass { username, password } => {
            (Some((username.clone(), password.clone())), None)
        }
        NatsAuth::Token { token } => (None, Some(token.clone())),
        NatsAuth::Nkey { .. } | NatsAuth::Creds { .. } => (None, None),
    };
    let file = |path: &str| (!path.is_empty()).then(|| path.into());
    let tls = &cfg.nats.tls;
    let identity = Identity {
        nkey_seed_file: match &cfg.nats.auth {
            NatsAuth::Nkey { nkey_seed_file } => Some(nkey_seed_file.clone()),
            _ => None,
        },
        creds_file: match &cfg.nats.auth {
            NatsAuth::Creds { creds_file } => Some(creds_file.clone()),
            _ => None,
        },
        ca_file: file(&tls.ca_file),
        client_cert: file(&tls.cert_file).zip(file(&tls.key_file)),
    };
    ConnectOptions {
        url: cfg.nats.url.clone(),
        user_pass,
        token,
        identity,
        request_timeout: cfg.nats.request_timeout,
        name: name.to_string(),
        inbox_prefix: inbox_prefix.to_string(),
    }
}

/// The consumer settings of `spec` from `job.worker.consumer`. Every worker keeps a pull waiting on the
/// shared `_any` consumer, so its `max_waiting` is sized like the fleet (`nats.stream.max_consumers`,
/// at least one consumer a host): with the old 512, pulls of a larger fleet were refused (409).
pub fn consumer_config(spec: &ConsumerSpec, cfg: &Config) -> ConsumerConfig {
    let c = &cfg.job.worker.consumer;
    let fleet = i64::try_from(cfg.nats.stream.max_consumers).unwrap_or(i64::MAX);
    ConsumerConfig {
        durable: spec.durable.clone(),
        filters: spec.filters.clone(),
        ack_wait: c.ack_wait,
        max_deliver: c.max_deliver,
        back_off: c.back_off.clone(),
        max_ack_pending: c.max_ack_pending,
        max_waiting: if spec.shared {
            fleet.max(OWN_MAX_WAITING)
        } else {
            OWN_MAX_WAITING
        },
        // The shared consumer serves every host: it keeps the stream's copies, whatever a worker asks.
        replicas: if spec.shared { 0 } else { c.replicas },
    }
}

/// The names of every NATS resource for this config.
pub fn names(cfg: &Config) -> Names {
    Names::new(
        &cfg.nats.namespace,
        &cfg.nats.stream.name,
        &cfg.nats.kv.bucket,
        &cfg.nats.kv.response_bucket,
        &cfg.job.worker.consumer.name,
    )
    .with_workers_bucket(&cfg.nats.kv.workers_bucket)
}

/// Connects, retrying every second until NATS answers or `give_up_after` passes (a daemon passes a
/// long bound and logs while it waits).
pub fn connect_with_retry(opts: &ConnectOptions, give_up_after: Duration) -> Result<Bus, BusError> {
    let deadline = Instant::now() + give_up_after;
    let mut logged = false;
    loop {
        match Bus::connect(opts) {
            Ok(bus) => return Ok(bus),
            // A mistake in the config (a bad seed file) stays one: only what may pass is retried.
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                if !logged {
                    log::warn!("{e}; retrying every second");
                    logged = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// For a worker: waits for nothing, but creates the layout only when part of it is missing. A worker
/// with a least-privilege NATS identity may read stream info but not create streams (packaging/nats/):
/// when the API has laid everything out, this succeeds with reads alone; until then the create is refused
/// (no answer: `Unavailable`) and the caller retries.
pub fn find_or_create_layout(bus: &Bus, cfg: &Config, names: &Names) -> Result<(), BusError> {
    let streams = [
        names.stream.clone(),
        format!("KV_{}", names.bucket),
        format!("KV_{}", names.response_bucket),
        format!("KV_{}", names.workers_bucket),
        format!("KV_{}", names.drain_bucket),
    ];
    for stream in &streams {
        match bus.stream_messages(stream) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return ensure_layout(bus, cfg, names),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How long a notification is worth keeping: `nats.stream.max_age`, but never past the bucket's TTL,
/// after which its job is gone from KV and a worker would only skip it (a TTL of 0 keeps jobs for ever).
fn notification_max_age(cfg: &Config) -> Duration {
    match cfg.nats.kv.ttl {
        ttl if ttl.is_zero() => cfg.nats.stream.max_age,
        ttl => cfg.nats.stream.max_age.min(ttl),
    }
}

/// Creates (or updates) the job stream, the dead-letter stream, the five buckets and the shared `_any`
/// consumer (a worker may only read and pull that one: docs/security.md).
///
/// The job stream discards *new* messages when full: a publish to a full stream fails, the API answers
/// 503 and removes the job again, so a 201 always means the notification is stored (docs/nats.md).
pub fn ensure_layout(bus: &Bus, cfg: &Config, names: &Names) -> Result<(), BusError> {
    let s = &cfg.nats.stream;
    bus.stream_ensure(
        &names.stream,
        &[names.stream_subjects()],
        &StreamConfig {
            max_age: notification_max_age(cfg),
            max_msgs: s.max_msgs,
            // Sized by the bucket: a notification is smaller than its job's record and lives no longer,
            // so with the same byte limit the job bucket fills (503 store full) before the stream does.
            max_bytes: cfg.nats.kv.max_bytes,
            storage: s.storage.as_str().into(),
            replicas: s.replicas,
            discard: "new".into(),
            max_consumers: i64::try_from(s.max_consumers).unwrap_or(i64::MAX),
        },
    )?;
    let d = &cfg.nats.dlq;
    bus.stream_ensure(
        &names.dlq_stream,
        &[names.dlq_subject()],
        &StreamConfig {
            max_age: d.max_age,
            max_msgs: d.max_msgs,
            max_bytes: -1,
            storage: d.storage.as_str().into(),
            replicas: d.replicas,
            discard: "old".into(),
            max_consumers: -1,
        },
    )?;
    let kv = &cfg.nats.kv;
    let bucket_cfg = StreamConfig {
        max_age: kv.ttl,
        max_msgs: -1,
        max_bytes: kv.max_bytes,
        storage: kv.storage.as_str().into(),
        replicas: kv.replicas,
        discard: "new".into(),
        max_consumers: -1,
    };
    bus.kv_ensure(&names.bucket, &bucket_cfg)?;
    bus.kv_ensure(&names.response_bucket, &bucket_cfg)?;
    // One small record per host, rewritten in place: no byte limit, so it cannot fill up with jobs.
    let workers_cfg = StreamConfig {
        max_bytes: -1,
        ..bucket_cfg.clone()
    };
    bus.kv_ensure(&names.workers_bucket, &workers_cfg)?;
    // Drain records: no TTL, so a drain lasts until undrain however long the host is down (a record in
    // the heartbeat bucket would expire after `nats.kv.ttl` and the host would take jobs again). One
    // small record per host, written by an admin or by the worker once per drain: no byte limit.
    let drain_cfg = StreamConfig {
        max_age: Duration::ZERO,
        ..workers_cfg
    };
    bus.kv_ensure(&names.drain_bucket, &drain_cfg)?;
    // Idempotency-Key records: a day, whatever the job TTL, so a client's retry within 24 h is a replay.
    let idempotency_cfg = StreamConfig {
        max_age: osapi_common::idempotency::KEY_TTL,
        ..bucket_cfg
    };
    bus.kv_ensure(&names.idempotency_bucket, &idempotency_cfg)?;
    ensure_shared_consumer(bus, cfg, names)
}

/// Creates or updates the shared `_any` consumer. One the server will not change (2.9 refuses most
/// updates) is kept as it is, with a warning, as a worker does with its own.
fn ensure_shared_consumer(bus: &Bus, cfg: &Config, names: &Names) -> Result<(), BusError> {
    let consumer = consumer_config(&names.any_consumer(), cfg);
    match bus.consumer_ensure(&names.stream, &consumer) {
        Ok(()) => Ok(()),
        Err(e @ BusError::Unavailable(_)) => Err(e),
        Err(refused) if bus.consumer_exists(&names.stream, &consumer.durable)? => {
            log::warn!(
                "consumer {} kept with its existing settings: {refused}",
                consumer.durable
            );
            Ok(())
        }
        Err(refused) => Err(refused),
    }
}
