//! What every handler shares: the request context ([`Ctx`]: the store, auth, the `?wait=` slots), the
//! decoded query string ([`Query`]) and the clock ([`now_us`]). Its own module, so the router and the
//! handlers both import it and neither imports the other.

use crate::auth::Auth;
use crate::error::ApiError;
use crate::store::Store;
use std::sync::atomic::AtomicUsize;

/// Now, in Unix microseconds: the API's one clock (the index and `common` read none; they are passed it).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What every handler may use.
pub struct Ctx {
    pub store: Store,
    pub auth: Auth,
    /// The audit trail (stream `AUDIT`).
    pub audit: crate::audit::Audit,
    /// Requests currently held by `?wait=`, and how many may be.
    pub waiters: AtomicUsize,
    pub waiters_max: usize,
    /// `api.server.max_job_data_bytes`.
    pub max_job_data_bytes: usize,
}

impl Ctx {
    /// Fails fast with 503 while NATS is unreachable, before any work.
    pub fn require_nats(&self) -> Result<(), ApiError> {
        if self.store.is_connected() {
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
