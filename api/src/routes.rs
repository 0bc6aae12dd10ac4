//! The routing table: one `match` from (method, path segments) to a handler, plus the query string and
//! the request context the handlers share.

use crate::error::ApiError;
use crate::handlers::{health, job, Reply};
use crate::store::Store;
use std::sync::atomic::AtomicUsize;

/// What every handler may use.
pub struct Ctx {
    pub store: Store,
    /// Requests currently held by `?wait=`, and how many may be.
    pub waiters: AtomicUsize,
    pub waiters_max: usize,
}

impl Ctx {
    /// Fails fast with 503 while NATS is unreachable, before any work.
    pub fn require_nats(&self) -> Result<(), ApiError> {
        if self.store.bus.is_connected() {
            Ok(())
        } else {
            Err(ApiError::unavailable("NATS is unreachable"))
        }
    }
}

/// A decoded query string.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: &str) -> Query {
        Query(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// 400 for a parameter the endpoint does not take (a typo should not be silently ignored).
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => Err(ApiError::bad_request(format!(
                "unknown query parameter '{k}' (allowed: {})",
                allowed.join(", ")
            ))),
            None => Ok(()),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Dispatches one request. `path` has no query string.
pub fn route(
    ctx: &Ctx,
    method: &str,
    path: &str,
    query: &Query,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match (method, segments.as_slice()) {
        ("GET", ["health"]) => Ok(health::live()),
        ("GET", ["health", "ready"]) => Ok(health::ready(ctx)),
        ("POST", ["job"]) => job::create(ctx, body),
        ("GET", ["job"]) => job::list(ctx, query),
        ("GET", ["job", "status"]) => job::stats(ctx),
        ("GET", ["job", "workers"]) => job::workers(ctx),
        // Fixed names before `{id}`, so `DELETE /job/status` is a 405, not a bad id.
        (_, ["health"])
        | (_, ["health", "ready"])
        | (_, ["job", "status"])
        | (_, ["job", "workers"]) => Err(ApiError::method_not_allowed(method, path, "GET")),
        ("GET", ["job", id]) => job::get(ctx, id, query),
        ("DELETE", ["job", id]) => job::delete(ctx, id),
        ("POST", ["job", id, "retry"]) => job::retry(ctx, id, body),
        (_, ["job"]) => Err(ApiError::method_not_allowed(method, path, "GET, POST")),
        (_, ["job", _]) => Err(ApiError::method_not_allowed(method, path, "GET, DELETE")),
        (_, ["job", _, "retry"]) => Err(ApiError::method_not_allowed(method, path, "POST")),
        _ => Err(ApiError::not_found(format!("no route for {path}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse("status=partial_failure&wait=30s&x=a%20b+c&bad=%zz&end=%4");
        assert_eq!(q.get("status"), Some("partial_failure"));
        assert_eq!(q.get("x"), Some("a b c"));
        assert_eq!(q.get("bad"), Some("%zz"));
        assert_eq!(q.get("end"), Some("%4"));
        assert!(q.only(&["status"]).is_err());
    }
}
