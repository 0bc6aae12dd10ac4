//! The one place osapi talks to NATS.
//!
//! The blocking `nats` crate (0.26) is deprecated as a whole and has traps (see docs/nats.md): its
//! writer flushes at most every 5 ms and every request waits for that flush, some calls never return
//! while the server is down, and its JetStream helpers hide settings we need. So this crate speaks the
//! JetStream API (JSON over core NATS requests) itself, on top of three primitives:
//! - one wildcard reply subscription and a table of waiting callers ([`Bus::request`]), so a request
//!   costs one publish and no SUB/UNSUB; the connection's reading thread hands each reply to its
//!   caller itself (vendor/nats, osapi patch 2: no router thread in between);
//! - every publish written out at once by the publishing thread (vendor/nats, osapi patch 1: no
//!   PING/PONG, no flusher thread), instead of after the crate's 5 ms;
//! - a connection-state flag fed by the crate's callbacks, so every call fails fast with
//!   [`BusError::Unavailable`] while NATS is unreachable, and every wait has a deadline.
//!
//! `#[allow(deprecated)]` lives here and nowhere else.
#![allow(deprecated)]

mod direct;
mod error;
mod identity;
mod inbox;
mod info;
mod kv;
mod seqlog;
pub mod setup;
mod stream;
mod subscribe;

pub use error::BusError;
pub use identity::Identity;
pub use kv::{KvEntry, KvOp, KvWatch};
pub use seqlog::StreamBounds;
pub use stream::{ConsumerConfig, ConsumerRoom, JsMessage, Puller, StreamConfig};
pub use subscribe::Subscription;

// std's channels, not crossbeam's: a crossbeam receiver about to block first calls `sched_yield` a few
// times, and on a busy host each of those is a context switch (a quarter of the API's CPU under load
// went there); std's spins briefly and then sleeps on a futex.
use nats::header::HeaderMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel as bounded, Receiver, SyncSender as Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A raw NATS message as received (re-exported so callers need not name the deprecated crate).
pub type Message = nats::Message;

/// Most requests one [`Bus::request_many`] call sends at once.
pub const BATCH_MAX: usize = 256;

/// How to reach NATS.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// One URL, or several comma-separated (a cluster).
    pub url: String,
    pub user_pass: Option<(String, String)>,
    pub token: Option<String>,
    /// NKey or creds file, and TLS files (`nats.auth`, `nats.tls`).
    pub identity: Identity,
    /// Bound on every request.
    pub request_timeout: Duration,
    /// Shown in the server's connection list.
    pub name: String,
    /// First token of every reply and delivery subject this connection makes (`{prefix}.{random}...`):
    /// `_INBOX` as the crate does, or one per identity so each may subscribe to its own replies only
    /// (`osapi_common::nats_permissions::inbox_prefix`, docs/security.md).
    pub inbox_prefix: String,
}

struct Inner {
    nc: nats::Connection,
    connected: Arc<AtomicBool>,
    /// Reconnections so far: a watch made before the last one must be checked (its consumer may be gone).
    reconnects: Arc<AtomicU64>,
    reply_prefix: String,
    /// `ConnectOptions::inbox_prefix`, for [`Bus::new_inbox`].
    inbox_prefix: String,
    next_token: AtomicU64,
    waiting: Arc<Waiting>,
    /// The reply subscription: dropping it would end the replies.
    _replies: nats::Subscription,
    /// A thread is writing buffered publishes out ([`Bus::kick_flush`]).
    flushing: AtomicBool,
    /// Publishes were buffered since that write began.
    flush_again: AtomicBool,
    request_timeout: Duration,
    /// `nats.url`, for [`Bus::server_version`].
    url: String,
    /// Buckets read with direct gets ([`Bus::kv_enable_direct`]).
    direct: std::sync::RwLock<std::collections::HashSet<String>>,
}

/// `{prefix}.{unique}`: the crate's unique token under our prefix.
fn inbox_in(prefix: &str, nc: &nats::Connection) -> String {
    let crate_inbox = nc.new_inbox();
    let unique = crate_inbox
        .strip_prefix("_INBOX.")
        .unwrap_or(crate_inbox.as_str());
    format!("{prefix}.{unique}")
}

/// An inbox prefix is one plain subject token: a permission `{prefix}.>` must cover every inbox.
fn check_inbox_prefix(prefix: &str) -> Result<(), BusError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if prefix.is_empty() || !prefix.chars().all(plain) {
        return Err(BusError::Protocol(format!(
            "inbox prefix {prefix:?} must be one subject token of letters, digits, '_' and '-'"
        )));
    }
    Ok(())
}

/// A cheap-to-clone handle on one NATS connection.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl Bus {
    /// Connects once (failing after the crate's own connect attempt, ~1 s on a closed port) and sets up
    /// unlimited reconnects, the reply table and the flusher.
    pub fn connect(opts: &ConnectOptions) -> Result<Bus, BusError> {
        check_inbox_prefix(&opts.inbox_prefix)?;
        let connected = Arc::new(AtomicBool::new(false));
        let base = match (&opts.user_pass, &opts.token) {
            (Some((u, p)), _) => nats::Options::with_user_pass(u, p),
            (None, Some(t)) => nats::Options::with_token(t),
            (None, None) => nats::Options::new(),
        };
        let base = opts.identity.options(base)?;
        let (on_down, on_up) = (connected.clone(), connected.clone());
        let reconnects = Arc::new(AtomicU64::new(0));
        let counted = reconnects.clone();
        let nc = base
            .with_name(&opts.name)
            .max_reconnects(None)
            .reconnect_delay_callback(connect_delay)
            .reconnect_buffer_size(1024 * 1024)
            .disconnect_callback(move || {
                on_down.store(false, Ordering::SeqCst);
                log::warn!("disconnected from NATS");
            })
            .reconnect_callback(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                on_up.store(true, Ordering::SeqCst);
                log::info!("reconnected to NATS");
            })
            .connect(opts.url.as_str())
            .map_err(|e| BusError::Unavailable(format!("connect to {}: {e}", opts.url)))?;
        connected.store(true, Ordering::SeqCst);

        let reply_prefix = inbox_in(&opts.inbox_prefix, &nc);
        let waiting = Arc::new(Waiting::default());
        let replies = nc
            .subscribe_inline(&format!("{reply_prefix}.*"), {
                let waiting = waiting.clone();
                move |msg| waiting.deliver(msg)
            })
            .map_err(|e| BusError::Unavailable(format!("subscribe: {e}")))?;
        let inner = Arc::new(Inner {
            nc,
            connected,
            reconnects,
            reply_prefix,
            inbox_prefix: opts.inbox_prefix.clone(),
            next_token: AtomicU64::new(1),
            waiting,
            _replies: replies,
            flushing: AtomicBool::new(false),
            flush_again: AtomicBool::new(false),
            request_timeout: opts.request_timeout,
            url: opts.url.clone(),
            direct: Default::default(),
        });
        Ok(Bus { inner })
    }

    /// Whether the connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::SeqCst)
    }

    /// Whether `bucket` is read with direct gets.
    pub(crate) fn is_direct(&self, bucket: &str) -> bool {
        let set = self.inner.direct.read().unwrap_or_else(|p| p.into_inner());
        !set.is_empty() && set.contains(bucket)
    }

    pub(crate) fn set_direct(&self, bucket: &str, on: bool) {
        let mut set = self.inner.direct.write().unwrap_or_else(|p| p.into_inner());
        if on {
            set.insert(bucket.to_string());
        } else {
            set.remove(bucket);
        }
    }

    /// How many times the connection has come back since it was made.
    pub fn reconnects(&self) -> u64 {
        self.inner.reconnects.load(Ordering::SeqCst)
    }

    /// The configured bound on one request.
    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// The version a server of `nats.url` announces in its INFO line (`2.9.10`).
    pub fn server_version(&self) -> Result<String, BusError> {
        info::server_version(&self.inner.url, self.inner.request_timeout)
    }

    /// A fresh unique subject under this connection's inbox prefix, for a delivery subscription (a
    /// watch, a puller). Never the crate's own `new_inbox`, which is always `_INBOX.`.
    pub(crate) fn new_inbox(&self) -> String {
        inbox_in(&self.inner.inbox_prefix, &self.inner.nc)
    }

    /// The underlying connection, for subscriptions this crate's modules own.
    fn nc(&self) -> &nats::Connection {
        &self.inner.nc
    }

    fn check_connected(&self) -> Result<(), BusError> {
        if self.is_connected() {
            Ok(())
        } else {
            Err(BusError::Unavailable("not connected".into()))
        }
    }

    /// Sends buffered publishes now rather than after the crate's 5 ms delay: a socket write on this
    /// thread, bounded by the request timeout. A failed write drops the connection (the crate
    /// reconnects; the callbacks mark it down meanwhile), so the caller's wait for an answer ends in
    /// its timeout or the next call fails fast.
    ///
    /// Combined: while one thread writes, others only leave word (`flush_again`) and go on; the writer
    /// writes once more for them before it stops. Under load one write then carries many publishes,
    /// as the flusher thread's did, and the callers do not queue for the connection's lock.
    pub(crate) fn kick_flush(&self) {
        if !self.is_connected() {
            return;
        }
        let (flushing, again) = (&self.inner.flushing, &self.inner.flush_again);
        // Word first, then the claim: a writer that stops after our claim failed still sees the word.
        again.store(true, Ordering::SeqCst);
        while !flushing.swap(true, Ordering::SeqCst) {
            again.store(false, Ordering::SeqCst);
            if let Err(e) = self.nc().flush_buffered(self.inner.request_timeout) {
                log::debug!("flush: {e}");
            }
            flushing.store(false, Ordering::SeqCst);
            if !again.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Publishes without waiting for an answer (acks to JetStream), flushed at once.
    pub fn publish(&self, subject: &str, payload: &[u8]) -> Result<(), BusError> {
        self.check_connected()?;
        self.nc()
            .publish(subject, payload)
            .map_err(|e| BusError::Unavailable(format!("publish {subject}: {e}")))?;
        self.kick_flush();
        Ok(())
    }

    /// One request with the configured timeout.
    pub fn request(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> Result<Message, BusError> {
        let mut out = self.request_many(&[(subject, headers, payload)]);
        out.pop()
            .unwrap_or_else(|| Err(BusError::Protocol("no answer slot".into())))
    }

    /// Sends several requests at once (one flush) and collects every answer, each within the
    /// configured timeout from now. At most [`BATCH_MAX`] per call; answers come in request order.
    pub fn request_many(
        &self,
        requests: &[(&str, Option<&HeaderMap>, &[u8])],
    ) -> Vec<Result<Message, BusError>> {
        if requests.len() > BATCH_MAX {
            let mut out = Vec::with_capacity(requests.len());
            for chunk in requests.chunks(BATCH_MAX) {
                out.extend(self.request_many(chunk));
            }
            return out;
        }
        if let Err(e) = self.check_connected() {
            return requests.iter().map(|_| Err(e.clone())).collect();
        }
        let mut slots: Vec<Result<(u64, Receiver<Message>), BusError>> =
            Vec::with_capacity(requests.len());
        for (subject, headers, payload) in requests {
            let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = bounded(1);
            self.waiting().insert(token, tx);
            let reply = format!("{}.{token}", self.inner.reply_prefix);
            let sent =
                self.nc()
                    .publish_with_reply_or_headers(subject, Some(&reply), *headers, payload);
            slots.push(match sent {
                Ok(()) => Ok((token, rx)),
                Err(e) => {
                    self.waiting().remove(&token);
                    Err(BusError::Unavailable(format!("publish {subject}: {e}")))
                }
            });
        }
        self.kick_flush();
        let sent_at = std::time::Instant::now();
        let deadline = sent_at + self.inner.request_timeout;
        let answers = slots
            .into_iter()
            .zip(requests)
            .map(|(slot, (subject, _, _))| {
                let (token, rx) = slot?;
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let answer = rx.recv_timeout(left);
                self.waiting().remove(&token);
                let msg = answer.map_err(|_| {
                    BusError::Unavailable(format!("no answer from {subject} in time"))
                })?;
                if msg.is_no_responders() {
                    return Err(BusError::Unavailable(format!("no responders on {subject}")));
                }
                Ok(msg)
            })
            .collect();
        if let Some(observe) = REQUEST_OBSERVER.get() {
            observe(sent_at.elapsed());
        }
        answers
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Sender<Message>>> {
        self.inner.waiting.lock()
    }

    /// A JetStream API call: `$JS.API.{suffix}` with a JSON body; JetStream errors become [`BusError::Api`].
    pub fn js_api(
        &self,
        suffix: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, BusError> {
        let payload = serde_json::to_vec(body).map_err(|e| BusError::Protocol(e.to_string()))?;
        let msg = self.request(&format!("$JS.API.{suffix}"), None, &payload)?;
        parse_api_answer(&msg.data)
    }
}

/// Turns a JetStream API answer into its JSON, or its `error` object into [`BusError::Api`].
pub(crate) fn parse_api_answer(data: &[u8]) -> Result<serde_json::Value, BusError> {
    let v: serde_json::Value = serde_json::from_slice(data)
        .map_err(|e| BusError::Protocol(format!("bad JetStream JSON: {e}")))?;
    if let Some(err) = v.get("error") {
        return Err(BusError::classify(
            err.get("code").and_then(|c| c.as_u64()).unwrap_or(0) as u16,
            err.get("err_code").and_then(|c| c.as_u64()).unwrap_or(0) as u32,
            err.get("description")
                .and_then(|d| d.as_str())
                .unwrap_or("unknown")
                .to_string(),
        ));
    }
    Ok(v)
}

/// The callers waiting for a reply, by token.
#[derive(Default)]
struct Waiting(Mutex<HashMap<u64, Sender<Message>>>);

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Sender<Message>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands a reply to the caller waiting on its token, on the connection's reading thread (quick,
    /// never blocks: each slot holds one answer); replies nobody waits for (timed out) are dropped.
    fn deliver(&self, msg: Message) {
        let token = msg
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse::<u64>().ok());
        let Some(token) = token else { return };
        let waiter = self.lock().remove(&token);
        if let Some(tx) = waiter {
            let _ = tx.try_send(msg);
        }
    }
}

/// How long the crate sleeps before connection attempt number `attempts` (0 = the very first; the crate never
/// resets the count, so every later one is a reconnect). Its default sleeps a random 0-1 s before the first
/// attempt too (`backoff(0)` is jitter alone, and connector.rs sleeps unconditionally): every daemon start
/// waited ~0.5 s for nothing. The first attempt goes at once; reconnects keep the crate's exponential
/// back-off (1 ms doubling to 4 s) plus up to 1 s of jitter, so a fleet does not reconnect in lockstep.
fn connect_delay(attempts: usize) -> Duration {
    if attempts == 0 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts - 1).unwrap_or(u32::MAX).min(12);
    let base = Duration::from_millis(1_u64 << exp).min(Duration::from_secs(4));
    // The clock's nanoseconds spread a fleet as well as a random crate would.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base + Duration::from_millis(u64::from(nanos) % 1000)
}

/// Whether a server version string (`2.10.3`, `v2.11.0-beta.1`) is at least `major.minor`; an
/// unreadable one is not (the oldest behaviour is the safe guess). Several filters per consumer need
/// `(2, 10)`.
pub fn version_at_least(version: &str, (major, minor): (u64, u64)) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(ma), Some(mi)) => (ma, mi) >= (major, minor),
        _ => false,
    }
}

/// Builds a header map from pairs.
static REQUEST_OBSERVER: std::sync::OnceLock<fn(Duration)> = std::sync::OnceLock::new();

/// Sets the function told how long each NATS round trip (one request, or one batch sent at once) took,
/// for a daemon's metrics. Once per process; later calls are ignored.
pub fn observe_requests(observe: fn(Duration)) {
    let _ = REQUEST_OBSERVER.set(observe);
}

pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.to_string());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::version_at_least;

    #[test]
    fn server_versions() {
        for (v, want) in [
            ("2.9.10", false),
            ("2.10.0", true),
            ("2.15.1", true),
            ("v2.11.0-beta.1", true),
            ("3.0.0", true),
            ("1.99.0", false),
            ("", false),
            ("two.ten", false),
        ] {
            assert_eq!(version_at_least(v, (2, 10)), want, "{v}");
        }
    }
}
