//! The worker's heartbeat: `workers.{host}` in the heartbeat bucket (`nats.kv.workers_bucket`, apart from
//! the jobs so a full job bucket cannot hide the fleet), rewritten every `heartbeat`, which the API reads
//! to list live workers and to decide which hosts a broadcast job expects.

use crate::clock::now_us;
use crate::pool::PoolState;
use crate::shutdown::Shutdown;
use osapi_bus::Bus;
use osapi_common::job::WorkerInfo;
use osapi_common::names::{keys, Names};
use osapi_common::timefmt::format_micros;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What the heartbeat says besides the clock and the running count.
pub struct Heartbeat {
    pub bus: Bus,
    pub names: Names,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub started_us: i64,
    pub every: Duration,
    pub max_jobs: usize,
    pub operations: Vec<String>,
    /// Whether every consumer exists, and if not, why (`subscribed`, `problem`).
    pub subscription: Arc<crate::consumers::Subscription>,
}

impl Heartbeat {
    fn info(&self, running: usize) -> WorkerInfo {
        let now = now_us();
        let (subscribed, problem) = self.subscription.state();
        WorkerInfo {
            hostname: self.hostname.clone(),
            labels: self.labels.clone(),
            started_at: format_micros(self.started_us),
            last_seen: format_micros(now),
            last_seen_us: now,
            heartbeat_ms: u64::try_from(self.every.as_millis()).unwrap_or(u64::MAX),
            max_jobs: self.max_jobs,
            running,
            operations: self.operations.clone(),
            subscribed,
            problem,
        }
    }

    /// Writes one heartbeat now.
    pub fn beat(&self, running: usize) -> Result<(), String> {
        let bytes = serde_json::to_vec(&self.info(running)).map_err(|e| e.to_string())?;
        let key = keys::worker(&self.hostname);
        self.bus
            .kv_put(&self.names.workers_bucket, &key, &bytes)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Removes this worker from the list (clean shutdown).
    pub fn remove(&self) -> Result<(), String> {
        let key = keys::worker(&self.hostname);
        self.bus
            .kv_purge(&self.names.workers_bucket, &key)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Beats every `every` until shutdown; logs the first failure of a streak and the recovery.
    pub fn start(
        self: Arc<Self>,
        pool: Arc<PoolState>,
        shutdown: Arc<Shutdown>,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                let mut failing = false;
                while !shutdown.sleep(self.every) {
                    match self.beat(pool.running()) {
                        Ok(()) if failing => {
                            log::info!("heartbeat of {} written again", self.hostname);
                            failing = false;
                        }
                        Ok(()) => {}
                        Err(e) if !failing => {
                            log::warn!("heartbeat of {} not written: {e}", self.hostname);
                            failing = true;
                        }
                        Err(_) => {}
                    }
                }
            })
    }
}
