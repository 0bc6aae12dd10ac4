//! Where jobs come from: one durable pull consumer per subscribed subject (the shared `_any` one, this
//! host's `_all` and hostname ones, one per label prefix) and one fetcher thread per consumer that long-polls
//! it and hands each message to the pool over the rendezvous channel.
//!
//! The shared `_any` fetcher pulls only while a pool thread is free, so a busy worker leaves `_any` jobs to
//! idle ones; the others pull freely (those jobs are this host's alone). While a message waits for a free
//! thread, its fetcher keeps its ack deadline alive with `+WPI`.

use crate::pool::PoolState;
use crate::shutdown::Shutdown;
use crossbeam_channel::{SendTimeoutError, Sender};
use osapi_bus::setup;
use osapi_bus::{Bus, BusError, ConsumerConfig, JsMessage, Puller};
use osapi_common::config::Config;
use osapi_common::names::{ConsumerSpec, Names};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One long poll: the pull itself is the wait, so an idle fetcher costs one request per this interval.
const PULL_WAIT: Duration = Duration::from_secs(5);
/// Longest wait for a free pool thread before the `_any` fetcher looks at the shutdown flag again.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// Longest a fetcher waits for a pool thread before looking at the shutdown flag again.
const HAND_OFF_SLICE: Duration = Duration::from_secs(1);
/// Pause after a NATS error before the next try.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Longest time a fetcher may keep running after shutdown is triggered (a pull in flight, then a return).
pub const STOP_WITHIN: Duration = Duration::from_secs(7);

/// The consumer settings of `spec` from `job.worker.consumer`.
pub fn consumer_config(spec: &ConsumerSpec, cfg: &Config) -> ConsumerConfig {
    let c = &cfg.job.worker.consumer;
    ConsumerConfig {
        durable: spec.durable.clone(),
        filter: spec.filter.clone(),
        ack_wait: c.ack_wait,
        max_deliver: c.max_deliver,
        back_off: c.back_off.clone(),
        max_ack_pending: c.max_ack_pending,
    }
}

/// Creates the consumer, or accepts an existing one. One that exists with other settings (another worker
/// version, an edited config) is used as it is, with a warning: refusing to start would stop the fleet.
pub fn ensure_consumer(
    bus: &Bus,
    cfg: &Config,
    names: &Names,
    consumer: &ConsumerConfig,
) -> Result<(), BusError> {
    match bus.consumer_ensure(&names.stream, consumer) {
        Ok(()) => Ok(()),
        Err(e @ BusError::Unavailable(_)) => Err(e),
        Err(e) if e.is_not_found() => {
            // The stream itself is gone (a wiped server): lay everything out again.
            setup::ensure_layout(bus, cfg, names)?;
            bus.consumer_ensure(&names.stream, consumer)
        }
        Err(e) => {
            log::warn!(
                "consumer {} kept with its existing settings: {e}",
                consumer.durable
            );
            Ok(())
        }
    }
}

/// What one fetcher thread owns.
pub struct Fetcher {
    pub bus: Bus,
    pub cfg: Arc<Config>,
    pub names: Names,
    pub spec: ConsumerSpec,
    pub consumer: ConsumerConfig,
    pub jobs: Sender<JsMessage>,
    pub pool: Arc<PoolState>,
    pub shutdown: Arc<Shutdown>,
    /// How often a message waiting for a pool thread says `+WPI`.
    pub progress_every: Duration,
}

impl Fetcher {
    /// Runs the fetch loop on its own thread until shutdown.
    pub fn start(self) -> std::io::Result<()> {
        let name = format!("fetch-{}", self.spec.filter);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
            .map(|_| ())
    }

    fn run(self) {
        let mut puller: Option<Puller> = None;
        let mut failing = false;
        let mut ensure_again = false;
        while !self.shutdown.is_triggered() {
            // Drained (`drain.rs`): pull nothing; jobs for this host wait in NATS, `_any` ones go elsewhere.
            if crate::drain::paused() {
                self.shutdown.sleep(IDLE_WAIT);
                continue;
            }
            if self.spec.shared && !self.pool.wait_idle(IDLE_WAIT) {
                continue;
            }
            if ensure_again && self.bus.is_connected() {
                // After an outage the consumer may be gone (server store wiped); this is a no-op otherwise.
                ensure_again =
                    ensure_consumer(&self.bus, &self.cfg, &self.names, &self.consumer).is_err();
            }
            let pulled = match &puller {
                Some(p) => p.next(PULL_WAIT),
                None => self
                    .bus
                    .puller(&self.names.stream, &self.spec.durable)
                    .and_then(|p| {
                        let first = p.next(PULL_WAIT);
                        puller = Some(p);
                        first
                    }),
            };
            match pulled {
                Ok(got) => {
                    if failing {
                        log::info!("pulling jobs from {} again", self.spec.filter);
                        failing = false;
                    }
                    match got {
                        // Drained while this pull was in flight: give it back at once (an `_any` job
                        // goes to another worker; one for this host waits in NATS).
                        Some(msg) if crate::drain::paused() => {
                            if let Err(e) = msg.nak(Duration::ZERO) {
                                log::warn!("returning a job pulled while drained: {e}");
                            }
                        }
                        Some(msg) => self.hand_off(msg),
                        None => {}
                    }
                }
                Err(e) => {
                    if !failing {
                        log::warn!(
                            "pulling jobs from {}: {e}; retrying every second",
                            self.spec.filter
                        );
                        failing = true;
                    }
                    ensure_again = true;
                    self.shutdown.sleep(ERROR_BACKOFF);
                }
            }
        }
    }

    /// Blocks until a pool thread takes `msg`, keeping its ack deadline alive; gives it back at shutdown.
    fn hand_off(&self, msg: JsMessage) {
        let offer = self.pool.handing_off();
        let mut msg = msg;
        let mut last_progress = Instant::now();
        loop {
            if self.shutdown.is_triggered() {
                let _ = msg.nak(Duration::ZERO);
                return;
            }
            match self
                .jobs
                .send_timeout(msg, HAND_OFF_SLICE.min(self.progress_every))
            {
                Ok(()) => return offer.taken(),
                Err(SendTimeoutError::Timeout(m)) => {
                    if last_progress.elapsed() >= self.progress_every {
                        if let Err(e) = m.in_progress() {
                            log::debug!("in-progress signal while waiting for a pool thread: {e}");
                        }
                        last_progress = Instant::now();
                    }
                    msg = m;
                }
                Err(SendTimeoutError::Disconnected(m)) => {
                    let _ = m.nak(Duration::ZERO);
                    return;
                }
            }
        }
    }
}
