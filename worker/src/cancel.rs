//! Cancellation on this worker. A job is cancelled by a `cancel.{id}` record in the job bucket
//! (`POST /job/{id}/cancel`). The worker learns of it three ways, so none is missed:
//! - **before starting**: `run.rs` reads `cancel.{id}` in the same batch as the job; a cancelled job is
//!   never started (its host state becomes `cancelled`);
//! - **while running**: a core NATS subscription to the bucket's `cancel.*` subjects (a KV put is a
//!   publish on `$KV.{bucket}.cancel.{id}`) flags the running job at once; ids seen recently are
//!   remembered, so a cancel that lands between the read and the start is not lost either;
//! - **after a disconnect**, when a core subscription misses what was published meanwhile: every
//!   [`RECHECK`] the listener re-reads `cancel.{id}` of the jobs running here (at most `max_jobs` keys).
//!
//! Operations see the flag through the thread they run on ([`sleep`], [`requested`]): `test.sleep.do`
//! returns at once, a program run by `ops/command.rs` gets SIGTERM, then SIGKILL after a grace.

use osapi_bus::Bus;
use osapi_common::names::{keys, Names};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often the listener re-reads the cancel records of running jobs.
pub const RECHECK: Duration = Duration::from_secs(5);
/// How many cancelled ids are remembered for jobs not (yet) running here.
const RECENT_MAX: usize = 4096;

/// One running job's cancel flag.
#[derive(Default)]
pub struct Token {
    cancelled: Mutex<bool>,
    changed: Condvar,
}

impl Token {
    fn lock(&self) -> MutexGuard<'_, bool> {
        self.cancelled.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cancel(&self) {
        *self.lock() = true;
        self.changed.notify_all();
    }

    pub fn is_cancelled(&self) -> bool {
        *self.lock()
    }

    /// Sleeps `wait`, or less when the job is cancelled meanwhile; true when it was.
    fn sleep(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut cancelled = self.lock();
        while !*cancelled {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            cancelled = match self.changed.wait_timeout(cancelled, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }
}

thread_local! {
    /// The token of the job this pool thread runs (set by [`Registry::enter`]).
    static CURRENT: RefCell<Option<Arc<Token>>> = const { RefCell::new(None) };
}

fn current() -> Option<Arc<Token>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Sleeps `wait`, returning early with `true` when the job this thread runs is cancelled.
pub fn sleep(wait: Duration) -> bool {
    match current() {
        Some(token) => token.sleep(wait),
        None => {
            std::thread::sleep(wait);
            false
        }
    }
}

/// Whether the job this thread runs has been cancelled.
pub fn requested() -> bool {
    current().is_some_and(|t| t.is_cancelled())
}

#[derive(Default)]
struct Inner {
    running: HashMap<String, Arc<Token>>,
    recent: VecDeque<String>,
    recent_set: HashSet<String>,
}

/// The jobs running here and the ids cancelled lately.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This thread starts job `id`: its token is registered (already cancelled if the id was) and
    /// made the thread's current one until the guard drops.
    pub fn enter(self: &Arc<Self>, id: &str) -> Running {
        let token = Arc::new(Token::default());
        {
            let mut inner = self.lock();
            if inner.recent_set.contains(id) {
                token.cancel();
            }
            inner.running.insert(id.to_string(), token.clone());
        }
        CURRENT.with(|c| *c.borrow_mut() = Some(token.clone()));
        Running {
            registry: self.clone(),
            id: id.to_string(),
            token,
        }
    }

    /// Job `id` is cancelled: stop it if it runs here, and never start it later.
    pub fn cancel(&self, id: &str) {
        let mut inner = self.lock();
        if let Some(token) = inner.running.get(id) {
            token.cancel();
        }
        if inner.recent_set.insert(id.to_string()) {
            inner.recent.push_back(id.to_string());
            while inner.recent.len() > RECENT_MAX {
                if let Some(old) = inner.recent.pop_front() {
                    inner.recent_set.remove(&old);
                }
            }
        }
    }

    fn running_ids(&self) -> Vec<String> {
        self.lock().running.keys().cloned().collect()
    }
}

/// A job running on this thread; deregisters it when dropped.
pub struct Running {
    registry: Arc<Registry>,
    id: String,
    token: Arc<Token>,
}

impl Running {
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.registry.lock().running.remove(&self.id);
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

/// Starts the listener thread (see the module doc). It runs until the process exits.
pub fn start_listener(bus: Bus, names: &Names, registry: Arc<Registry>) -> std::io::Result<()> {
    let subject = format!("$KV.{}.{}", names.bucket, keys::cancel("*"));
    let prefix = format!("$KV.{}.{}", names.bucket, keys::cancel(""));
    let bucket = names.bucket.clone();
    std::thread::Builder::new()
        .name("job-cancel".into())
        .spawn(move || {
            let mut sub = None;
            let mut last_check = Instant::now();
            loop {
                if sub.is_none() {
                    match bus.subscribe(&subject) {
                        Ok(s) => sub = Some(s),
                        Err(e) => log::warn!("cancel notices: {e}; trying again"),
                    }
                }
                let wait = RECHECK.saturating_sub(last_check.elapsed());
                match &sub {
                    Some(s) => {
                        if let Some(id) = s
                            .next_subject(wait)
                            .and_then(|subj| subj.strip_prefix(&prefix).map(String::from))
                        {
                            log::info!("job {id}: cancel notice received");
                            registry.cancel(&id);
                        }
                    }
                    None => std::thread::sleep(wait.max(Duration::from_millis(100))),
                }
                if last_check.elapsed() >= RECHECK {
                    last_check = Instant::now();
                    recheck(&bus, &bucket, &registry);
                }
            }
        })
        .map(|_| ())
}

/// Re-reads the cancel records of the jobs running here (one batch of at most `max_jobs` gets).
fn recheck(bus: &Bus, bucket: &str, registry: &Registry) {
    let ids = registry.running_ids();
    if ids.is_empty() {
        return;
    }
    let keys: Vec<String> = ids.iter().map(|id| keys::cancel(id)).collect();
    let wanted: Vec<(&str, &str)> = keys.iter().map(|k| (bucket, k.as_str())).collect();
    for (id, answer) in ids.iter().zip(bus.kv_get_many(&wanted)) {
        if let Ok(Some(_)) = answer {
            registry.cancel(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_reaches_the_running_job_and_one_not_yet_started() {
        let registry = Arc::new(Registry::default());
        {
            let running = registry.enter("a");
            assert!(!requested());
            assert!(!sleep(Duration::from_millis(1)));
            registry.cancel("a");
            assert!(running.is_cancelled());
            assert!(requested());
            let started = Instant::now();
            assert!(
                sleep(Duration::from_secs(60)),
                "a cancelled sleep returns at once"
            );
            assert!(started.elapsed() < Duration::from_secs(1));
        }
        assert!(!requested(), "the flag goes with the job");
        registry.cancel("b");
        assert!(
            registry.enter("b").is_cancelled(),
            "cancelled before it started"
        );
        assert!(!registry.enter("c").is_cancelled());
    }

    #[test]
    fn a_sleep_is_woken_from_another_thread() {
        let registry = Arc::new(Registry::default());
        let r = registry.clone();
        let sleeper = std::thread::spawn(move || {
            let _job = r.enter("x");
            sleep(Duration::from_secs(60))
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while registry.running_ids().is_empty() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        registry.cancel("x");
        assert_eq!(sleeper.join().ok(), Some(true));
    }
}
