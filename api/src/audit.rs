//! The audit trail: one entry in the JetStream stream `AUDIT` for every request that changes something
//! (any method but GET and HEAD) and for every 401 and 403, whoever sent it; `GET /audit` pages through it
//! newest first (`audit:read`, which only `admin` holds). Entries are written after the answer went out,
//! so the trail never slows a client down; a failed write is logged, never turned into an error for a
//! request that already succeeded. Entries expire after `audit.max_age`.

use crate::ctx::{now_us, Ctx, Query};
use crate::error::ApiError;
use crate::handlers::{Body, Reply};
use osapi_bus::{Bus, BusError, StreamConfig};
use osapi_common::config::Config;
use osapi_common::names::Names;
use osapi_common::timefmt::format_micros;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Instant;

/// Entries a page holds unless `limit` says otherwise, and at most.
const LIMIT_DEFAULT: u64 = 100;
const LIMIT_MAX: u64 = 1000;

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
        method: seen.method.to_string(),
        path: seen.path.to_string(),
        code,
        duration_ms: u64::try_from(seen.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        source: seen.source.map(|a| a.to_string()).unwrap_or_default(),
        job_id: job_id_of(seen.path, outcome.as_ref().ok()),
    })
}

/// The `AUDIT` stream of one deployment.
pub struct Audit {
    bus: Bus,
    stream: String,
    subject: String,
}

impl Audit {
    pub fn new(bus: Bus, names: &Names) -> Audit {
        Audit {
            bus,
            stream: names.audit_stream(),
            subject: names.audit_subject(),
        }
    }

    /// Creates (or updates) the stream: one subject, entries kept `audit.max_age`.
    pub fn ensure(&self, cfg: &Config) -> Result<(), BusError> {
        self.bus.stream_ensure(
            &self.stream,
            std::slice::from_ref(&self.subject),
            &StreamConfig {
                max_age: cfg.audit.max_age,
                max_msgs: -1,
                max_bytes: -1,
                storage: "file".into(),
                replicas: cfg.nats.stream.replicas,
                discard: "old".into(),
                max_consumers: -1,
            },
        )
    }

    /// Writes one entry (bounded by the request timeout); a failure is logged with the entry itself, so
    /// the record survives in the API's log when NATS did not take it.
    pub fn append(&self, entry: &Entry) {
        let bytes = match serde_json::to_vec(entry) {
            Ok(b) => b,
            Err(e) => return log::warn!("audit entry not encoded: {e}"),
        };
        if let Err(e) = self.bus.js_publish(&self.subject, &entry.id, &bytes) {
            log::warn!(
                "audit entry not written ({e}): {}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    /// `(total, entries)`: `limit` entries from the `offset`-th newest on, newest first.
    fn page(&self, offset: u64, limit: u64) -> Result<(u64, Vec<Value>), BusError> {
        let b = self.bus.stream_bounds(&self.stream)?;
        let newest = b.last_seq.saturating_sub(offset);
        let seqs: Vec<u64> = (0..limit)
            .map_while(|k| newest.checked_sub(k))
            .filter(|seq| *seq >= b.first_seq.max(1))
            .collect();
        let mut items = Vec::with_capacity(seqs.len());
        for got in self.bus.stream_get_many(&self.stream, &seqs) {
            if let Some(bytes) = got? {
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v) => items.push(v),
                    Err(e) => log::warn!("unreadable audit entry skipped: {e}"),
                }
            }
        }
        Ok((b.messages, items))
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
