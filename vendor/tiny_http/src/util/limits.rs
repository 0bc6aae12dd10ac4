//! osapi patch: the bounds tiny_http 0.12 lacks on what a client can make the server hold: the size and
//! time of a request head, and the number of open connections (each holds a thread and three descriptors).
//! At the cap, the connection that has waited longest for a request head with no request of its own in
//! progress (an idle or trickling client) is closed to make room; when every connection is busy with a
//! request, the newcomer gets a 503 at once.

use crate::connection::Connection;
use std::collections::HashMap;
use std::convert::TryFrom;
use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest request line or header line; past it the answer is 431.
pub const LINE_BYTES_MAX: usize = 8 * 1024;
/// Largest whole head (request line and headers); past it the answer is 431.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Most header lines in one head; past it the answer is 431.
pub const HEADER_LINES_MAX: usize = 100;
/// Longest time a head may take once the connection waits for it; past it the answer is 408 (noticed at
/// the next byte, or when a read times out after `CONNECTION_TIMEOUT`).
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// Default cap on open connections.
pub const CONNECTIONS_MAX: usize = 1024;

/// Since when a connection has waited for its latest request head (ms after the registry's epoch, plus
/// one; 0 = not yet), and how many of its requests the application holds (`InFlight::engage`) and has
/// not answered yet. Only a connection with no request held may be evicted: one that is idle, trickling
/// a head, or whose request has not passed the application's checks (osapi: the token).
pub struct HeadMark {
    epoch: Instant,
    waiting_since: AtomicU64,
    in_flight: AtomicUsize,
}

impl HeadMark {
    pub fn waiting(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.waiting_since.store(ms + 1, Ordering::Release);
    }

    /// Since when the connection has been idle (waiting for a head, nothing in progress), if it is.
    fn idle_since(&self) -> Option<u64> {
        let since = self.waiting_since.load(Ordering::Acquire);
        (since != 0 && self.in_flight.load(Ordering::Acquire) == 0).then_some(since)
    }
}

/// A request's claim on its connection: once the API has authorized the request (`engage`), the
/// connection counts as in progress, and is not evicted, until the request is dropped (answered). Before
/// that, a request whose head has arrived leaves its connection evictable: a client with no token cannot
/// hold a place by announcing a body it trickles.
pub struct InFlight {
    mark: Option<Arc<HeadMark>>,
    counted: bool,
}

impl InFlight {
    pub fn new(mark: Option<Arc<HeadMark>>) -> InFlight {
        InFlight {
            mark,
            counted: false,
        }
    }

    /// Counts the request as in progress (once).
    pub fn engage(&mut self) {
        if let (Some(m), false) = (&self.mark, self.counted) {
            m.in_flight.fetch_add(1, Ordering::AcqRel);
            self.counted = true;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let (Some(m), true) = (&self.mark, self.counted) {
            m.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// When the body being read from a connection must have arrived. While set, each read of the socket
/// waits at most the time left (then fails with `TimedOut`), so a body's deadline is a real bound rather
/// than one noticed only after a read returns. Cleared before the connection reads its next head.
#[derive(Clone, Default)]
pub struct ReadDeadline(Arc<Mutex<Option<Instant>>>);

impl ReadDeadline {
    pub fn set(&self, at: Option<Instant>) {
        if let Ok(mut d) = self.0.lock() {
            *d = at;
        }
    }

    pub fn get(&self) -> Option<Instant> {
        self.0.lock().map(|d| *d).unwrap_or(None)
    }
}

struct Slot {
    /// A clone of the socket, only to shut it down when the connection is evicted.
    conn: Connection,
    mark: Arc<HeadMark>,
}

/// The open connections.
pub struct Registry {
    epoch: Instant,
    max: usize,
    slots: Mutex<(u64, HashMap<u64, Slot>)>,
}

/// A connection's place in the registry; dropping it frees the place.
pub struct Ticket {
    id: u64,
    registry: Arc<Registry>,
    pub mark: Arc<HeadMark>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut slots) = self.registry.slots.lock() {
            slots.1.remove(&self.id);
        }
    }
}

impl Registry {
    pub fn new(max: usize) -> Arc<Registry> {
        Arc::new(Registry {
            epoch: Instant::now(),
            max: max.max(1),
            slots: Mutex::new((0, HashMap::new())),
        })
    }

    /// Admits a new connection, evicting the one waiting longest for a head when at the cap. `None`:
    /// refused (every connection busy, or no descriptor left); the caller drops the connection.
    pub fn admit(self: &Arc<Self>, conn: &mut Connection) -> Option<Ticket> {
        let mut guard = self.slots.lock().ok()?;
        let (next_id, slots) = &mut *guard;
        if slots.len() >= self.max {
            let oldest = slots
                .iter()
                .filter_map(|(id, s)| Some((*id, s.mark.idle_since()?)))
                .min_by_key(|(_, since)| *since)
                .map(|(id, _)| id);
            match oldest.and_then(|id| slots.remove(&id)) {
                Some(victim) => {
                    log::debug!(
                        "{} connections (the cap): closing the one idle longest",
                        self.max
                    );
                    let _ = victim.conn.shutdown(Shutdown::Both);
                }
                None => {
                    log::debug!("{} connections (the cap), all busy: 503", self.max);
                    refuse(conn);
                    return None;
                }
            }
        }
        let clone = match conn.try_clone() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("refusing a connection: {}", e);
                return None;
            }
        };
        let mark = Arc::new(HeadMark {
            epoch: self.epoch,
            waiting_since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        });
        mark.waiting();
        *next_id += 1;
        slots.insert(
            *next_id,
            Slot {
                conn: clone,
                mark: mark.clone(),
            },
        );
        Some(Ticket {
            id: *next_id,
            registry: self.clone(),
            mark,
        })
    }
}

/// The answer to a connection over the cap: a 503 written straight into the fresh socket's (empty) send
/// buffer, so it never blocks the accept thread.
fn refuse(conn: &mut Connection) {
    let body = br#"{"error":"too many connections","details":"the server holds its maximum of open connections (api.server.max_connections); try again","code":503}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
}
