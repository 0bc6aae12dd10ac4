//! The durable consumers this worker needs, and making sure they exist. On nats-server 2.10+ that is two
//! (the shared `_any` one and one of its own filtering `_all`, its hostname and every label prefix); on
//! 2.9, which allows one filter per consumer, one per subject (three plus one per label prefix).
//!
//! A consumer that cannot be created is an error, not a warning: [`Subscription`] records which are
//! missing and why, the heartbeat carries it (`subscribed: false` and the problem), the API routes nothing
//! to this worker meanwhile, and start-up retries with back-off until every one exists.

use crate::shutdown::Shutdown;
use osapi_bus::setup;
pub use osapi_bus::setup::consumer_config;
use osapi_bus::{Bus, BusError, ConsumerConfig};
use osapi_common::config::Config;
use osapi_common::names::{ConsumerSpec, Names};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Start-up's retries of missing consumers: the first pause, doubled after each round up to the last.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// JetStream's error code for "maximum consumers limit reached".
const ERR_MAX_CONSUMERS: u32 = 10026;
/// JetStream's error code for "consumer not found".
const ERR_CONSUMER_NOT_FOUND: u32 = 10014;

/// The consumers this worker needs on a server that does (or does not) allow several filters per
/// consumer, and those of the other plan, which a worker moved between server versions leaves behind.
pub fn plan(
    names: &Names,
    hostname: &str,
    labels: &BTreeMap<String, String>,
    multi_filter: bool,
) -> (Vec<ConsumerSpec>, Vec<ConsumerSpec>) {
    let merged = names.worker_consumers_merged(hostname, labels);
    let single = names.worker_consumers(hostname, labels);
    if multi_filter {
        (merged, single)
    } else {
        (single, merged)
    }
}

/// Which of this worker's consumers are missing, and why. Read by the heartbeat; the worker counts as
/// subscribed only while none is.
pub struct Subscription {
    missing: Mutex<BTreeMap<String, String>>,
}

impl Subscription {
    /// Every consumer of `specs` missing until created.
    pub fn new(specs: &[ConsumerSpec]) -> Arc<Subscription> {
        let missing = specs
            .iter()
            .map(|s| (s.durable.clone(), "not created yet".to_string()))
            .collect();
        Arc::new(Subscription {
            missing: Mutex::new(missing),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.missing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `(subscribed, problem)` for the heartbeat; the problem names the first missing consumer.
    pub fn state(&self) -> (bool, Option<String>) {
        let missing = self.lock();
        let problem = missing.iter().next().map(|(durable, why)| {
            let more = match missing.len() {
                1 => String::new(),
                n => format!(" ({} more consumers missing)", n - 1),
            };
            format!("consumer {durable}: {why}{more}")
        });
        (missing.is_empty(), problem)
    }

    pub fn set_missing(&self, durable: &str, why: String) {
        self.lock().insert(durable.to_string(), why);
    }

    pub fn set_present(&self, durable: &str) {
        self.lock().remove(durable);
    }
}

/// Creates the consumer, or accepts an existing one. One that exists with settings the server will not
/// change (another worker version, an edited config) is used as it is, with a warning: refusing it would
/// stop the fleet. A refusal after which the consumer does not exist (the stream's consumer limit, a
/// server too old for several filters) is the error.
pub fn ensure_consumer(
    bus: &Bus,
    cfg: &Config,
    names: &Names,
    consumer: &ConsumerConfig,
) -> Result<(), BusError> {
    if consumer.durable == names.any_consumer().durable {
        if bus.consumer_exists(&names.stream, &consumer.durable)? {
            return Ok(());
        }
        // The stream itself gone (a wiped server): lay everything out again, as for its own consumers;
        // the layout includes the shared one (a least-privilege worker is refused and waits instead).
        if let Err(e) = bus.stream_messages(&names.stream) {
            if e.is_not_found() {
                setup::ensure_layout(bus, cfg, names)?;
            }
        }
        return match bus.consumer_exists(&names.stream, &consumer.durable)? {
            true => Ok(()),
            false => Err(BusError::Api {
                code: 404,
                err_code: ERR_CONSUMER_NOT_FOUND,
                description: "not there yet: the API creates the shared consumer when it lays out \
                              NATS (start the API)"
                    .into(),
            }),
        };
    }
    let refused = match bus.consumer_ensure(&names.stream, consumer) {
        Ok(()) => return Ok(()),
        Err(e @ BusError::Unavailable(_)) => return Err(e),
        Err(e) if e.is_not_found() => {
            // The stream itself is gone (a wiped server): lay everything out again.
            setup::ensure_layout(bus, cfg, names)?;
            match bus.consumer_ensure(&names.stream, consumer) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            }
        }
        Err(e) => e,
    };
    if bus.consumer_exists(&names.stream, &consumer.durable)? {
        log::warn!(
            "consumer {} kept with its existing settings: {refused}",
            consumer.durable
        );
        return Ok(());
    }
    Err(refused)
}

/// What a failure to create a consumer means to a reader of `/job/workers`: NATS's answer and, for the
/// consumer limit, the stream's use of it and the key that raises it.
pub fn explain(bus: &Bus, names: &Names, e: &BusError) -> String {
    if let BusError::Api {
        err_code: ERR_MAX_CONSUMERS,
        ..
    } = e
    {
        if let Ok(room) = bus.stream_consumers(&names.stream) {
            return format!(
                "{e} (stream {} holds {} of {} consumers; raise nats.stream.max_consumers)",
                names.stream, room.used, room.limit
            );
        }
    }
    e.to_string()
}

/// The start-up check of the stream's consumer limit: an error when it leaves no room for those of
/// `specs` that do not exist yet, a warning when it is not what the config asks (a stream made before the
/// key on a server that will not change it). Before nats-server 2.15 "no limit" (-1 or 0) is unlimited
/// and fine; since 2.15 it means the server's default of 1,000.
pub fn check_room(bus: &Bus, cfg: &Config, names: &Names, specs: &[ConsumerSpec], version: &str) {
    let room = match bus.stream_consumers(&names.stream) {
        Ok(room) => room,
        Err(e) => {
            log::warn!("consumer limit of stream {} not read: {e}", names.stream);
            return;
        }
    };
    let unlimited = room.limit <= 0 && !osapi_bus::version_at_least(version, (2, 15));
    let wanted = i64::try_from(cfg.nats.stream.max_consumers).unwrap_or(i64::MAX);
    if room.limit != wanted && !unlimited {
        log::warn!(
            "stream {} allows {} consumers, not nats.stream.max_consumers {wanted} (-1 or 0: the \
             server's default, 1,000 on nats-server {version})",
            names.stream,
            room.limit
        );
    }
    let limit = match room.limit {
        _ if unlimited => return,
        n if n <= 0 => 1_000,
        n => n.unsigned_abs(),
    };
    let missing = specs
        .iter()
        .filter(|s| bus.consumer_exists(&names.stream, &s.durable) == Ok(false))
        .count();
    let missing = u64::try_from(missing).unwrap_or(u64::MAX);
    if room.used.saturating_add(missing) > limit {
        log::error!(
            "stream {} holds {} of {limit} consumers and this worker needs {missing} more: raise \
             nats.stream.max_consumers",
            names.stream,
            room.used,
        );
    }
}

/// Creates every consumer of `consumers`, retrying the missing ones with back-off (1 s doubling to 30 s)
/// and logging each failure as an error, until all exist (`true`) or shutdown (`false`).
pub fn subscribe_all(
    bus: &Bus,
    cfg: &Config,
    names: &Names,
    consumers: &[ConsumerConfig],
    subscription: &Subscription,
    shutdown: &Shutdown,
) -> bool {
    let mut pause = BACKOFF_FIRST;
    loop {
        let mut failed = 0_usize;
        for c in consumers {
            match ensure_consumer(bus, cfg, names, c) {
                Ok(()) => subscription.set_present(&c.durable),
                Err(e) => {
                    let why = explain(bus, names, &e);
                    log::error!(
                        "consumer {} not created: {why}; this worker takes no jobs until it exists \
                         (next try in {}s)",
                        c.durable,
                        pause.as_secs()
                    );
                    subscription.set_missing(&c.durable, why);
                    failed += 1;
                }
            }
        }
        if failed == 0 {
            return true;
        }
        if shutdown.sleep(pause) {
            return false;
        }
        pause = (pause * 2).min(BACKOFF_MAX);
    }
}

/// Removes this host's consumers of the other plan, best effort: after a server upgrade they would keep
/// a copy of every broadcast and count against the stream's consumer limit.
pub fn remove_stale(bus: &Bus, names: &Names, stale: &[ConsumerSpec]) {
    for spec in stale.iter().filter(|s| !s.shared) {
        if let Err(e) = bus.consumer_delete(&names.stream, &spec.durable) {
            log::warn!("old consumer {} not removed: {e}", spec.durable);
        }
    }
}
