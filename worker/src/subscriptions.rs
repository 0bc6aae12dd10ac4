//! Where jobs come from: one fetcher thread per durable pull consumer of this worker (`consumers.rs` says
//! which and creates them) that long-polls it; each message goes to the pool over the rendezvous
//! hand-off (`handoff.rs`), straight from the connection's reading thread when a pool thread waits for
//! one (one wake-up on a job's way, not two), else from the fetcher once one is free.
//!
//! The shared `_any` fetcher pulls only while a pool thread is free, so a busy worker leaves `_any` jobs to
//! idle ones; the others pull freely (those jobs are this host's alone). While a message waits for a free
//! thread, its fetcher keeps its ack deadline alive with `+WPI`.

use crate::consumers::{ensure_consumer, explain, Subscription};
use crate::handoff::{NotTaken, Offer};
use crate::pool::PoolState;
use crate::shutdown::Shutdown;
use osapi_bus::{Bus, ConsumerConfig, JsMessage, Puller, Taker, Took};
use osapi_common::config::Config;
use osapi_common::names::{ConsumerSpec, Names};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One long poll: the pull itself is the wait, so an idle fetcher costs one request per this interval
/// (with 1,000 hosts, consumers x 1,000 / 30 s pull requests a second on nats-server). Its length costs
/// nothing else: a stopping or drained fetcher leaves the pull within `osapi_bus::PULL_SLICE` and drops
/// its inbox (the server then delivers nothing to it), and a reconnect starts a new pull at once.
const PULL_WAIT: Duration = Duration::from_secs(30);
/// The pull after a failed one: short, so a recovery shows at once.
const PROBE_WAIT: Duration = Duration::from_secs(1);
/// Longest wait for a free pool thread before the `_any` fetcher looks at the shutdown flag again.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// Longest a fetcher waits for a pool thread before looking at the shutdown flag again.
const HAND_OFF_SLICE: Duration = Duration::from_secs(1);
/// Pause after a NATS error before the next try.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Each failed check of the consumer doubles that pause, up to this, until a check or a pull succeeds: a
/// node down behind hundreds of hosts' consumers costs NATS a few requests a second, not hundreds, and
/// its return still shows within about ten seconds.
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(8);

/// Longest time a fetcher may keep running after shutdown is triggered (it leaves a pull in flight within
/// `PULL_SLICE`, gives back what it holds, then returns).
pub const STOP_WITHIN: Duration = Duration::from_secs(3);

/// What one fetcher thread owns.
pub struct Fetcher {
    pub bus: Bus,
    pub cfg: Arc<Config>,
    pub names: Names,
    pub spec: ConsumerSpec,
    pub consumer: ConsumerConfig,
    pub jobs: Offer<JsMessage>,
    /// Told when the consumer turns out to be gone and cannot be made again, and when it answers again.
    pub subscription: Arc<Subscription>,
    pub pool: Arc<PoolState>,
    pub shutdown: Arc<Shutdown>,
    /// How often a message waiting for a pool thread says `+WPI`.
    pub progress_every: Duration,
}

impl Fetcher {
    /// Runs the fetch loop on its own thread until shutdown.
    pub fn start(self) -> std::io::Result<()> {
        let name = format!("fetch-{}", self.spec.durable);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
            .map(|_| ())
    }

    fn run(self) {
        let mut puller: Option<Puller> = None;
        let mut failing = false;
        let mut ensure_again = false;
        // The last reason the consumer could not be made again: logged once, not every second.
        let mut gone_why = String::new();
        let mut error_pause = ERROR_BACKOFF;
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
                // In a cluster it may also be there but out of reach: its one copy's node is down.
                match ensure_consumer(&self.bus, &self.cfg, &self.names, &self.consumer) {
                    Ok(()) => {
                        ensure_again = false;
                        error_pause = ERROR_BACKOFF;
                        if !gone_why.is_empty() {
                            log::info!("consumer {} is there again", self.spec.durable);
                            self.subscription.set_present(&self.spec.durable);
                            gone_why.clear();
                        }
                    }
                    Err(e) => {
                        error_pause = (error_pause * 2).min(ERROR_BACKOFF_MAX);
                        let why = explain(&self.bus, &self.names, &e);
                        if why != gone_why {
                            log::error!(
                                "consumer {} is out of reach and not created again: {why}",
                                self.spec.durable
                            );
                            self.subscription
                                .set_missing(&self.spec.durable, why.clone());
                            gone_why = why;
                        }
                    }
                }
            }
            let stop = || stopping(&self.shutdown);
            // After a failure short pulls, each followed by a check of the consumer, so a recovery shows
            // within a second or two instead of at the end of a long poll.
            // The reading thread renews only a steady long poll; probes report back each time.
            let steady = !(failing || ensure_again);
            let wait = if steady { PULL_WAIT } else { PROBE_WAIT };
            let pulled = match &puller {
                Some(p) => p.next_until(wait, steady, &stop),
                None => self
                    .bus
                    .puller_with(&self.names.stream, &self.spec.durable, Some(self.taker()))
                    .and_then(|p| {
                        let first = p.next_until(wait, steady, &stop);
                        puller = Some(p);
                        first
                    }),
            };
            if stop() {
                // Left mid-pull: without the inbox the server sends that pull nothing (Puller::next_until).
                if let Some(p) = puller.take() {
                    p.close();
                }
            }
            match pulled {
                Ok(got) => {
                    if failing {
                        log::info!("pulling jobs from {} again", self.spec.durable);
                        self.subscription.set_present(&self.spec.durable);
                        gone_why.clear();
                        error_pause = ERROR_BACKOFF;
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
                        log::warn!("pulling jobs from {}: {e}; retrying", self.spec.durable);
                        failing = true;
                    }
                    // No consumer answers the pull: it is gone, or (one copy in a cluster) its node is
                    // down and it still exists, yet no job reaches it. Not subscribed until a pull is
                    // answered again. (NATS away altogether is not this: no heartbeat goes out then
                    // either; a pull that got no answer at all is settled by the check that follows.)
                    if e.is_not_found() {
                        self.subscription
                            .set_missing(&self.spec.durable, format!("no job can be pulled: {e}"));
                    }
                    ensure_again = true;
                    self.shutdown.sleep(error_pause);
                }
            }
        }
    }

    /// What the connection's reading thread does with a message this fetcher's pull brought: hand it
    /// to a pool thread that waits for one, with the same claim as [`Fetcher::hand_off`] (so the
    /// `_any` fetcher never counts a thread free that is not), or give it back to this fetcher (no
    /// thread free, drained, stopping), which then waits for one. Never blocks.
    ///
    /// A message handed over renews the pull at once (a steady long poll only: `next_until`'s
    /// `renew`) when this fetcher would pull again anyway (the `_any` one only while another pool thread is free), so under load the fetcher
    /// thread is not woken for every job.
    fn taker(&self) -> Taker {
        let (jobs, pool, shutdown) = (self.jobs.clone(), self.pool.clone(), self.shutdown.clone());
        let shared = self.spec.shared;
        Arc::new(move |msg: JsMessage| {
            if stopping(&shutdown) {
                return Took::Back(msg);
            }
            let offer = pool.handing_off();
            match jobs.send_timeout(msg, Duration::ZERO) {
                Ok(()) => {
                    offer.taken();
                    let again = !stopping(&shutdown) && (!shared || pool.has_idle());
                    Took::Taken { again }
                }
                Err(NotTaken::Timeout(m) | NotTaken::Disconnected(m)) => Took::Back(m),
            }
        })
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
                Err(NotTaken::Timeout(m)) => {
                    if last_progress.elapsed() >= self.progress_every {
                        if let Err(e) = m.in_progress() {
                            log::debug!("in-progress signal while waiting for a pool thread: {e}");
                        }
                        last_progress = Instant::now();
                    }
                    msg = m;
                }
                Err(NotTaken::Disconnected(m)) => {
                    let _ = m.nak(Duration::ZERO);
                    return;
                }
            }
        }
    }
}

/// Whether fetchers stop taking jobs: the worker shuts down or is drained.
fn stopping(shutdown: &Shutdown) -> bool {
    shutdown.is_triggered() || crate::drain::paused()
}
