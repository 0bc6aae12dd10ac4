//! The audit trail: one entry in the JetStream stream `AUDIT` for every request that changes something
//! (any method but GET and HEAD) and for every 401 and 403, whoever sent it; `GET /audit` pages through it
//! newest first (`audit:read`, which only `admin` holds). Anyone can make entries (a request without a
//! token is a 401 on record), so everything about them is bounded: a handler hands its entry to one
//! publisher thread through a queue of [`QUEUE_DEPTH`] and never waits (a full queue drops the entry,
//! counted and logged), a stored path is cut at [`PATH_MAX`] bytes, and the stream keeps at most
//! `audit.max_bytes` (the oldest entries go first) and nothing older than `audit.max_age`. A failed write
//! is logged with the entry, never turned into an error for a request that was already answered.

use crate::ctx::{now_us, Ctx, Query};
use crate::error::ApiError;
use crate::handlers::{Body, Reply};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use osapi_bus::{Bus, BusError, StreamConfig};
use osapi_common::config::Config;
use osapi_common::names::Names;
use osapi_common::timefmt::format_micros;
use queue::{Publisher, Queue};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod batch;
mod queue;

/// Entries a page holds unless `limit` says otherwise, and at most.
const LIMIT_DEFAULT: u64 = 100;
const LIMIT_MAX: u64 = 1000;
/// Entries waiting for the publisher thread; when it is full (NATS slow or down under a flood), new
/// entries are dropped and counted rather than waited for, so no handler thread is ever held.
pub const QUEUE_DEPTH: usize = 1024;
/// A longer path is stored cut to this many bytes and marked, so an entry stays under about 1 KiB
/// (a request line may carry 8 KiB).
pub const PATH_MAX: usize = 512;
/// The same for the method, which tiny_http takes as any token of the request line.
const METHOD_MAX: usize = 32;
/// At most one log line about dropped entries per this interval.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);
/// How often the idle publisher looks whether the API is shutting down.
const POLL: Duration = Duration::from_millis(200);
/// How long [`Audit::close`] lets the publisher write what it still holds (plus one NATS timeout).
const DRAIN_WITHIN: Duration = Duration::from_secs(5);

/// One audited request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    /// RFC 3339, when the answer was known.
    pub timestamp: String,
    /// The token's `sub`; empty when there was no valid token (a 401).
    pub user: String,
    pub roles: Vec<String>,
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub code: u16,
    pub duration_ms: u64,
    /// The client's address as the API saw it.
    pub source: String,
    /// The job created, deleted or retried, when there is one.
    pub job_id: Option<String>,
}

/// Whether a request goes on record: it may have changed something, or it was refused for who sent it.
pub fn is_audited(method: &str, code: u16) -> bool {
    !matches!(method, "GET" | "HEAD") || code == 401 || code == 403
}

/// The job a request concerns: the one its answer created (`job_id`), else the `{id}` in `/job/{id}...`.
fn job_id_of(path: &str, reply: Option<&Reply>) -> Option<String> {
    if let Some(id) = reply.and_then(|r| r.job_id.clone()) {
        return Some(id);
    }
    if let Some(Reply {
        body: Body::Json(body),
        ..
    }) = reply
    {
        if let Some(id) = body.get("job_id").and_then(Value::as_str) {
            return Some(id.to_string());
        }
    }
    let mut segments = path.trim_matches('/').split('/');
    match (segments.next(), segments.next()) {
        (Some("job"), Some(id)) if uuid::Uuid::parse_str(id).is_ok() => Some(id.to_string()),
        _ => None,
    }
}

/// `text` cut to at most `max` bytes (on a character boundary) and marked with its full length.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...[truncated, {} bytes]", &text[..end], text.len())
}

/// What the server knew of a request once it was answered.
pub struct Seen<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Who the request's token named, when it was validly signed (verified once, by the server).
    pub caller: Option<&'a crate::auth::Caller>,
    pub source: Option<std::net::SocketAddr>,
    pub started: Instant,
}

/// The entry for a request, or `None` when it is not one the trail records.
pub fn entry(_ctx: &Ctx, seen: &Seen<'_>, outcome: &Result<Reply, ApiError>) -> Option<Entry> {
    let code = match outcome {
        Ok(reply) => reply.status,
        Err(e) => e.status,
    };
    if !is_audited(seen.method, code) {
        return None;
    }
    let caller = seen.caller.cloned().unwrap_or_default();
    Some(Entry {
        id: uuid::Uuid::new_v4().to_string(),
        timestamp: format_micros(now_us()),
        user: caller.sub,
        roles: caller.roles,
        method: clip(seen.method, METHOD_MAX),
        path: clip(seen.path, PATH_MAX),
        code,
        duration_ms: u64::try_from(seen.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        source: seen.source.map(|a| a.to_string()).unwrap_or_default(),
        job_id: job_id_of(seen.path, outcome.as_ref().ok()),
    })
}

/// The `AUDIT` stream of one deployment, and the thread that writes to it.
pub struct Audit {
    bus: Bus,
    stream: String,
    subject: String,
    queue: Queue,
    closing: Arc<AtomicBool>,
    /// Closed by the publisher thread when it has finished.
    finished: Receiver<()>,
}

impl Audit {
    /// Starts the publisher thread, which writes queued entries, what waits as one message (each write bounded by
    /// `nats.request_timeout`) until [`Audit::close`].
    pub fn new(bus: Bus, names: &Names) -> Audit {
        let (queue, rx) = Queue::new(QUEUE_DEPTH);
        let closing = Arc::new(AtomicBool::new(false));
        let (done, finished) = bounded::<()>(1);
        let publisher = Publisher {
            bus: bus.clone(),
            stream: names.audit_stream(),
            subject: names.audit_subject(),
            rx,
            closing: closing.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                publisher.run();
                drop(done);
            });
        if let Err(e) = spawned {
            // The queue's receiver is gone with the closure: every entry is then dropped and counted.
            log::error!(
                "cannot start the audit publisher thread: {e}; audit entries will be dropped"
            );
        }
        Audit {
            bus,
            stream: names.audit_stream(),
            subject: names.audit_subject(),
            queue,
            closing,
            finished,
        }
    }

    /// Creates (or updates) the stream: one subject, entries kept `audit.max_age` and at most
    /// `audit.max_bytes`, the oldest going first.
    pub fn ensure(&self, cfg: &Config) -> Result<(), BusError> {
        self.bus.stream_ensure(
            &self.stream,
            std::slice::from_ref(&self.subject),
            &StreamConfig {
                max_age: cfg.audit.max_age,
                max_msgs: -1,
                max_bytes: cfg.audit.max_bytes,
                storage: "file".into(),
                replicas: cfg.nats.stream.replicas,
                discard: "old".into(),
                max_consumers: -1,
            },
        )
    }

    /// Queues one entry for the publisher thread and returns at once; when the queue is full the entry
    /// is dropped, counted (`osapi_audit_dropped_total`) and logged at most every [`DROP_LOG_EVERY`].
    pub fn append(&self, entry: Entry) {
        self.queue.offer(entry);
    }

    /// Stops the publisher once it has written what it holds, waiting at most [`DRAIN_WITHIN`] plus one
    /// NATS timeout; entries still queued then are logged, not lost silently. Call after the handlers
    /// have stopped. Idempotent.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let within = DRAIN_WITHIN + self.bus.request_timeout();
        if let Err(RecvTimeoutError::Timeout) = self.finished.recv_timeout(within) {
            log::warn!("the audit publisher did not finish within {within:?}");
        }
    }

    /// `(total, entries)`: `limit` entries from the `offset`-th newest on, newest first, whether they
    /// were written one a message or in batches (`audit/batch.rs`).
    fn page(&self, offset: u64, limit: u64) -> Result<(u64, Vec<Value>), BusError> {
        let b = self.bus.stream_bounds(&self.stream)?;
        if b.messages == 0 {
            return Ok((0, Vec::new()));
        }
        let mut fetch = |seqs: &[u64]| -> Result<Vec<Option<batch::Stored>>, BusError> {
            let got = self.bus.stream_get_many(&self.stream, seqs);
            seqs.iter()
                .zip(got)
                .map(|(seq, r)| r.map(|b| b.map(|bytes| batch::decode(*seq, &bytes))))
                .collect()
        };
        batch::page(b.first_seq, b.last_seq, offset, limit, &mut fetch)
    }
}

fn count(q: &Query, name: &str, default: u64, max: u64) -> Result<u64, ApiError> {
    let Some(raw) = q.get(name) else {
        return Ok(default);
    };
    match raw.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be an integer between 0 and {max}, got '{raw}'"
        ))),
    }
}

/// `GET /audit?limit=&offset=`: `{total_items, items}`, newest first.
pub fn list(ctx: &Ctx, q: &Query) -> Result<Reply, ApiError> {
    q.only(&["limit", "offset"])?;
    let limit = count(q, "limit", LIMIT_DEFAULT, LIMIT_MAX)?;
    let offset = count(q, "offset", 0, u64::MAX)?;
    ctx.require_nats()?;
    let (total, items) = ctx.audit.page(offset, limit)?;
    Ok(Reply::json(
        200,
        json!({ "total_items": total, "items": items }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_goes_on_record() {
        let cases = [
            ("POST", 201, true),
            ("DELETE", 204, true),
            ("POST", 400, true),
            ("GET", 200, false),
            ("GET", 404, false),
            ("GET", 401, true),
            ("GET", 403, true),
            ("HEAD", 200, false),
        ];
        for (method, code, want) in cases {
            assert_eq!(is_audited(method, code), want, "{method} {code}");
        }
    }

    #[test]
    fn long_paths_are_cut_and_marked() {
        assert_eq!(clip("/job", PATH_MAX), "/job");
        let exact = "a".repeat(PATH_MAX);
        assert_eq!(clip(&exact, PATH_MAX), exact);
        let long = format!("/{}", "x".repeat(8 * 1024));
        let cut = clip(&long, PATH_MAX);
        assert_eq!(
            cut,
            format!("{}...[truncated, 8193 bytes]", &long[..PATH_MAX])
        );
        // Never inside a character: 'é' is two bytes, so 3 bytes hold one of them.
        assert_eq!(clip("éé", 3), "é...[truncated, 4 bytes]");
    }

    #[test]
    fn the_job_a_request_concerns() {
        let id = "550e8400-e29b-41d4-a716-446655440000";
        let created = Reply::json(201, json!({"job_id": "new"}));
        assert_eq!(job_id_of("/job", Some(&created)), Some("new".into()));
        assert_eq!(job_id_of(&format!("/job/{id}"), None), Some(id.into()));
        assert_eq!(
            job_id_of(&format!("/job/{id}/retry"), Some(&Reply::empty(204))),
            Some(id.into())
        );
        assert_eq!(job_id_of("/job/status", None), None);
        assert_eq!(job_id_of("/audit", None), None);
    }
}
