//! The fixed pool: exactly `max_jobs` threads taking messages from the fetchers' rendezvous hand-off
//! (`handoff.rs`: jobs wait in JetStream, not in RAM), the `running` count the heartbeat reports and the
//! shared `_any` fetcher waits on, and the in-flight registry a progress thread keeps alive with `+WPI`.
//!
//! Invariant: `running <= max_jobs` (one per pool thread); a thread counts itself before it looks at the
//! shutdown flag, so once shutdown is triggered and `running` reads 0 no job will start.

use crate::handoff::Take;
use crate::run::Runner;
use crate::shutdown::Shutdown;
use crossbeam_channel::Sender;
use osapi_bus::sync::Wakeup;
use osapi_bus::JsMessage;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shortest interval between two `+WPI` rounds.
const PROGRESS_INTERVAL_MIN: Duration = Duration::from_millis(250);

/// What the pool shares with fetchers, the heartbeat and `main`.
pub struct PoolState {
    max_jobs: usize,
    running: AtomicUsize,
    /// Messages a fetcher holds and is offering to the pool.
    handing_off: AtomicUsize,
    changed_lock: Mutex<()>,
    /// Notifies only when someone waits (most changes find nobody waiting).
    changed: Wakeup,
    inflight: Mutex<HashMap<u64, Arc<JsMessage>>>,
    next_slot: AtomicU64,
}

impl PoolState {
    fn new(max_jobs: usize) -> PoolState {
        PoolState {
            max_jobs,
            running: AtomicUsize::new(0),
            handing_off: AtomicUsize::new(0),
            changed_lock: Mutex::new(()),
            changed: Wakeup::new(),
            inflight: Mutex::new(HashMap::new()),
            next_slot: AtomicU64::new(1),
        }
    }

    /// Jobs running right now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    fn spoken_for(&self) -> usize {
        self.running() + self.handing_off.load(Ordering::SeqCst)
    }

    fn lock_changed(&self) -> MutexGuard<'_, ()> {
        self.changed_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        // Taking the lock orders this wake-up after a waiter's check, so none is lost.
        drop(self.lock_changed());
        self.changed.notify_all();
    }

    /// Waits up to `wait` until `ready()` holds; returns whether it does.
    fn wait_until(&self, wait: Duration, ready: impl Fn(&PoolState) -> bool) -> bool {
        let deadline = Instant::now() + wait;
        let guard = self.lock_changed();
        self.changed.wait_until(guard, deadline, |_| ready(self)).1
    }

    /// Waits up to `wait` for a pool thread that nobody has claimed; true when there is one.
    pub fn wait_idle(&self, wait: Duration) -> bool {
        self.wait_until(wait, PoolState::has_idle)
    }

    /// Whether a pool thread is free that nobody has claimed ([`PoolState::wait_idle`] without waiting).
    pub fn has_idle(&self) -> bool {
        self.spoken_for() < self.max_jobs
    }

    /// Marks a fetcher as offering a message. The claim ends when the guard drops (not taken) or, once a
    /// pool thread took the message, when that thread counts it as running: so a message never looks
    /// unclaimed on its way across, and the `_any` fetcher never sees a free thread that is not.
    pub fn handing_off(&self) -> HandOff<'_> {
        self.handing_off.fetch_add(1, Ordering::SeqCst);
        HandOff {
            state: self,
            taken: false,
        }
    }

    fn inflight(&self) -> MutexGuard<'_, HashMap<u64, Arc<JsMessage>>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The messages of the jobs running now.
    pub fn inflight_messages(&self) -> Vec<Arc<JsMessage>> {
        self.inflight().values().cloned().collect()
    }
}

/// See [`PoolState::handing_off`].
pub struct HandOff<'a> {
    state: &'a PoolState,
    taken: bool,
}

impl HandOff<'_> {
    /// A pool thread took the message: it ends the claim itself (see [`Running::begin`]).
    pub fn taken(mut self) {
        self.taken = true;
    }
}

impl Drop for HandOff<'_> {
    fn drop(&mut self) {
        if !self.taken {
            self.state.handing_off.fetch_sub(1, Ordering::SeqCst);
            self.state.notify();
        }
    }
}

/// One running job: counted and registered while it lives, even if the job's code panics.
struct Running<'a> {
    state: &'a PoolState,
    slot: Option<u64>,
}

impl<'a> Running<'a> {
    /// Counts a message a fetcher handed over (every message on the channel comes with a claim).
    fn begin(state: &'a PoolState) -> Running<'a> {
        state.running.fetch_add(1, Ordering::SeqCst);
        state.handing_off.fetch_sub(1, Ordering::SeqCst);
        Running { state, slot: None }
    }

    fn register(&mut self, msg: Arc<JsMessage>) {
        let slot = self.state.next_slot.fetch_add(1, Ordering::Relaxed);
        self.state.inflight().insert(slot, msg);
        self.slot = Some(slot);
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.state.inflight().remove(&slot);
        }
        self.state.running.fetch_sub(1, Ordering::SeqCst);
        self.state.notify();
    }
}

/// Starts `max_jobs` threads. Each ends when every fetcher has dropped its [`crate::handoff::Offer`]; each holds a clone of
/// `done` so `main` sees the pool has drained when that channel disconnects.
pub fn start(
    max_jobs: usize,
    jobs: &Take<JsMessage>,
    runner: &Arc<Runner>,
    shutdown: &Arc<Shutdown>,
    done: &Sender<()>,
) -> std::io::Result<Arc<PoolState>> {
    let state = Arc::new(PoolState::new(max_jobs));
    for i in 0..max_jobs {
        let (jobs, runner, shutdown, done) =
            (jobs.clone(), runner.clone(), shutdown.clone(), done.clone());
        let state = state.clone();
        std::thread::Builder::new()
            .name(format!("job-{i}"))
            .spawn(move || {
                let _done = done;
                osapi_bus::sync::batch_scheduling();
                while let Some(msg) = jobs.recv() {
                    let mut running = Running::begin(&state);
                    if shutdown.is_triggered() {
                        // Not started: hand it straight back so another worker takes it.
                        if let Err(e) = msg.nak(Duration::ZERO) {
                            log::warn!("returning a job at shutdown: {e}");
                        }
                        continue;
                    }
                    let msg = Arc::new(msg);
                    running.register(msg.clone());
                    runner.handle(&msg);
                }
            })?;
    }
    Ok(state)
}

/// How often running jobs tell JetStream they are alive: a third of the shortest redelivery timer (with a
/// `back_off` list the server uses its steps instead of `ack_wait` as the per-delivery deadline).
pub fn progress_interval(ack_wait: Duration, back_off: &[Duration]) -> Duration {
    let shortest = back_off.iter().copied().fold(ack_wait, Duration::min);
    (shortest / 3).max(PROGRESS_INTERVAL_MIN)
}

/// Sends `+WPI` for every running job each `interval`, so a job longer than the ack deadline is not
/// redelivered meanwhile. Runs until the process exits (it must go on during the shutdown grace).
pub fn start_progress(state: &Arc<PoolState>, interval: Duration) -> std::io::Result<()> {
    let state = state.clone();
    std::thread::Builder::new()
        .name("job-progress".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            for msg in state.inflight_messages() {
                if let Err(e) = msg.in_progress() {
                    log::debug!("in-progress signal: {e}");
                }
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_interval_uses_the_shortest_deadline() {
        let s = Duration::from_secs;
        assert_eq!(progress_interval(s(120), &[]), s(40));
        assert_eq!(progress_interval(s(120), &[s(30), s(120)]), s(10));
        assert_eq!(
            progress_interval(s(120), &[Duration::from_millis(300)]),
            PROGRESS_INTERVAL_MIN
        );
    }

    #[test]
    fn idle_and_done_waits() {
        let state = PoolState::new(1);
        assert!(state.wait_idle(Duration::ZERO));
        let offer = state.handing_off();
        assert!(!state.wait_idle(Duration::from_millis(10)));
        drop(offer);
        assert!(state.wait_idle(Duration::ZERO));
        state.handing_off().taken();
        let job = Running::begin(&state);
        assert!(!state.wait_idle(Duration::ZERO));
        assert_eq!(state.running(), 1);
        drop(job);
        assert!(state.wait_idle(Duration::ZERO));
        assert_eq!(state.running(), 0);
    }
}
