//! Drain on this worker. The `drain.{host}` record in the drain bucket (no TTL; written by the API's
//! `POST /job/workers/{host}/drain|undrain`) says whether to take new jobs; it is read once before
//! the fetchers start (so a drained worker stays drained across a restart) and then on every notice
//! of a change (a core subscription to its subject), after every reconnect (a notice sent while the
//! connection was down is lost), every [`DRAINING_POLL`] while drained, and at least every
//! [`RECHECK_MAX`] (were a notice lost otherwise). Not every heartbeat: at 1,000 hosts that was 100 reads
//! a second, a third of a resting fleet's messages on nats-server.
//! While drained, every fetcher stops pulling ([`paused`]): jobs addressed to this host wait in NATS,
//! `_any` jobs go to other workers. Once nothing runs, the worker records `cordoned` in the record's
//! timeline; the heartbeat shows the state (`common::drain::state`) and that timeline.

use crate::clock::now_us;
use crate::heartbeat::Heartbeat;
use crate::pool::PoolState;
use osapi_bus::{Bus, BusError};
use osapi_common::drain::{self, DrainEvent, DrainRecord, WorkerState, CORDONED};
use osapi_common::names::{keys, Names};
use osapi_common::timefmt::format_micros;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a draining worker looks whether it runs nothing yet.
const DRAINING_POLL: Duration = Duration::from_millis(200);
/// The longest an undrained worker goes without reading its record when no notice came.
const RECHECK_MAX: Duration = Duration::from_secs(60);

static PAUSED: AtomicBool = AtomicBool::new(false);
static RECORD: Mutex<Option<DrainRecord>> = Mutex::new(None);

/// Whether the fetchers should pull nothing now.
pub fn paused() -> bool {
    PAUSED.load(Ordering::SeqCst)
}

/// The state and timeline the heartbeat shows, given the jobs running now.
pub fn snapshot(running: usize) -> (WorkerState, Vec<DrainEvent>) {
    let record = RECORD.lock().unwrap_or_else(|p| p.into_inner());
    match record.as_ref() {
        Some(r) => (drain::state(r.drain, running), r.events.clone()),
        None => (WorkerState::Ready, Vec::new()),
    }
}

/// This worker's drain record and where it lives.
pub struct Drain {
    pub bus: Bus,
    pub names: Names,
    pub hostname: String,
}

impl Drain {
    fn key(&self) -> String {
        keys::drain(&self.hostname)
    }

    /// Reads the record now and applies it; the revision is for a compare-and-set.
    pub fn load(&self) -> Result<Option<u64>, BusError> {
        let entry = self.bus.kv_get(&self.names.drain_bucket, &self.key())?;
        let revision = entry.as_ref().map(|e| e.revision);
        let record: Option<DrainRecord> = entry.and_then(|e| serde_json::from_slice(&e.value).ok());
        let drained = record.as_ref().is_some_and(|r| r.drain);
        if PAUSED.swap(drained, Ordering::SeqCst) != drained {
            log::info!(
                "{}: {}",
                self.hostname,
                if drained {
                    "drained: taking no new jobs"
                } else {
                    "undrained: taking jobs again"
                }
            );
        }
        *RECORD.lock().unwrap_or_else(|p| p.into_inner()) = record;
        Ok(revision)
    }

    /// Records `cordoned` once per drain, when nothing runs any more.
    fn record_cordoned(&self, revision: Option<u64>) -> Result<(), BusError> {
        let Some(rev) = revision else {
            return Ok(());
        };
        let mut record = match RECORD.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            Some(r) if r.drain && !r.cordoned_recorded() => r,
            _ => return Ok(()),
        };
        record.push(DrainEvent {
            event: CORDONED.into(),
            by: self.hostname.clone(),
            timestamp: format_micros(now_us()),
        });
        let value = serde_json::to_vec(&record).map_err(|e| BusError::Protocol(e.to_string()))?;
        match self
            .bus
            .kv_update(&self.names.drain_bucket, &self.key(), &value, rev)
        {
            Ok(_) => {
                log::info!("{}: cordoned (drained, nothing running)", self.hostname);
                *RECORD.lock().unwrap_or_else(|p| p.into_inner()) = Some(record);
                Ok(())
            }
            // Someone changed the record meanwhile (an undrain): the next round reads it again.
            Err(BusError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Follows the record on its own thread for the life of the process.
    pub fn start(
        self,
        pool: Arc<PoolState>,
        heartbeat: Arc<Heartbeat>,
        every: Duration,
    ) -> std::io::Result<()> {
        let subject = format!("$KV.{}.{}", self.names.drain_bucket, self.key());
        std::thread::Builder::new()
            .name("drain".into())
            .spawn(move || {
                let mut sub = None;
                let mut shown = snapshot(pool.running()).0;
                // When the record was last read, and the connection's reconnect count then; none yet
                // here (a change between the start-up read and the subscription must not wait a minute).
                let mut read_at = (Instant::now(), u64::MAX);
                loop {
                    if sub.is_none() {
                        sub = self.bus.subscribe(&subject).ok();
                    }
                    let wait = if paused() { DRAINING_POLL } else { every };
                    let noticed = match &sub {
                        Some(s) => s.next_subject(wait).is_some(),
                        None => {
                            std::thread::sleep(wait);
                            true // no subscription: read every heartbeat as before
                        }
                    };
                    let reconnects = self.bus.reconnects();
                    let due = noticed
                        || paused()
                        || reconnects != read_at.1
                        || read_at.0.elapsed() >= RECHECK_MAX;
                    if !due {
                        continue;
                    }
                    read_at = (Instant::now(), reconnects);
                    let revision = match self.load() {
                        Ok(rev) => rev,
                        Err(e) => {
                            log::debug!("reading the drain record: {e}");
                            continue;
                        }
                    };
                    if paused() && pool.running() == 0 {
                        if let Err(e) = self.record_cordoned(revision) {
                            log::warn!("recording cordoned: {e}");
                        }
                    }
                    let now = snapshot(pool.running()).0;
                    if now != shown {
                        // Show the change now rather than at the next beat.
                        if let Err(e) = heartbeat.beat(pool.running()) {
                            log::debug!("heartbeat after a drain change: {e}");
                        }
                        shown = now;
                    }
                }
            })
            .map(|_| ())
    }
}
