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
mod request;
mod seqlog;
pub mod setup;
mod stream;
mod subscribe;
pub mod sync;
mod write;

pub use error::BusError;
pub use identity::Identity;
pub use kv::{KvEntry, KvOp, KvWatch, WatchApply};
pub(crate) use request::parse_api_answer;
pub use request::{headers, observe_requests, BATCH_MAX};
pub use seqlog::StreamBounds;
pub use stream::{ConsumerConfig, ConsumerRoom, JsMessage, Puller, StreamConfig, Taker, Took};
pub use subscribe::Subscription;
pub use write::{PendingWrites, Write};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A raw NATS message as received (re-exported so callers need not name the deprecated crate).
pub type Message = nats::Message;

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
    waiting: Arc<request::Waiting>,
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
    /// unlimited reconnects and the reply table.
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
        let waiting = Arc::new(request::Waiting::default());
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
