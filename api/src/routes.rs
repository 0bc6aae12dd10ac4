//! The routing table: one `match` from (method, path segments) to a handler, plus the query string and
//! the request context the handlers share.

use crate::auth::Auth;
use crate::error::ApiError;
use crate::handlers::{health, job, Reply};
use crate::store::Store;
use osapi_common::permission;
use std::sync::atomic::AtomicUsize;

/// What every handler may use.
pub struct Ctx {
    pub store: Store,
    pub auth: Auth,
    /// The audit trail (stream `AUDIT`).
    pub audit: crate::audit::Audit,
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

/// One request as the router sees it.
pub struct Incoming<'a> {
    pub method: &'a str,
    /// Without the query string.
    pub path: &'a str,
    pub query: &'a Query,
    pub body: &'a [u8],
    pub authorization: Option<&'a str>,
}

/// Every route the API serves, as `(method, path template)`; the served OpenAPI spec documents exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/health/ready"),
    ("GET", "/openapi.yaml"),
    ("POST", "/job"),
    ("GET", "/job"),
    ("GET", "/job/status"),
    ("GET", "/job/workers"),
    ("GET", "/job/{id}"),
    ("DELETE", "/job/{id}"),
    ("POST", "/job/{id}/retry"),
    ("GET", "/audit"),
];

/// What a request asks for, decided from method and path alone.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Health,
    Ready,
    Spec,
    Create,
    List,
    Stats,
    Workers,
    Get(&'a str),
    Delete(&'a str),
    Retry(&'a str),
    Audit,
    /// A known path with another method; the value lists the allowed ones.
    NotAllowed(&'static str),
    NotFound,
}

fn classify<'a>(method: &str, segments: &[&'a str]) -> Route<'a> {
    match (method, segments) {
        ("GET", ["health"]) => Route::Health,
        ("GET", ["health", "ready"]) => Route::Ready,
        ("GET", ["openapi.yaml"]) => Route::Spec,
        ("POST", ["job"]) => Route::Create,
        ("GET", ["job"]) => Route::List,
        ("GET", ["job", "status"]) => Route::Stats,
        ("GET", ["job", "workers"]) => Route::Workers,
        ("GET", ["audit"]) => Route::Audit,
        // Fixed names before `{id}`, so `DELETE /job/status` is a 405, not a bad id.
        (_, ["health"])
        | (_, ["health", "ready"])
        | (_, ["openapi.yaml"])
        | (_, ["job", "status"])
        | (_, ["job", "workers"])
        | (_, ["audit"]) => Route::NotAllowed("GET"),
        ("GET", ["job", id]) => Route::Get(id),
        ("DELETE", ["job", id]) => Route::Delete(id),
        ("POST", ["job", id, "retry"]) => Route::Retry(id),
        (_, ["job"]) => Route::NotAllowed("GET, POST"),
        (_, ["job", _]) => Route::NotAllowed("GET, DELETE"),
        (_, ["job", _, "retry"]) => Route::NotAllowed("POST"),
        _ => Route::NotFound,
    }
}

impl Route<'_> {
    /// The permission a route needs; health, readiness and the spec are open.
    fn permission(&self) -> Option<&'static str> {
        match self {
            Route::List | Route::Stats | Route::Workers | Route::Get(_) => {
                Some(permission::JOB_READ)
            }
            Route::Create | Route::Delete(_) | Route::Retry(_) => Some(permission::JOB_WRITE),
            Route::Audit => Some(permission::AUDIT_READ),
            _ => None,
        }
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_end_matches('/').split('/').skip(1).collect()
}

/// Dispatches one request: classify, check the token, call the handler.
pub fn route(ctx: &Ctx, req: &Incoming<'_>) -> Result<Reply, ApiError> {
    let segments = segments(req.path);
    let route = classify(req.method, &segments);
    let caller = match route.permission() {
        Some(needed) => ctx.auth.check(req.authorization, needed)?,
        None => crate::auth::Caller::default(),
    };
    match route {
        Route::Health => Ok(health::live()),
        Route::Ready => Ok(health::ready(ctx)),
        Route::Spec => Ok(health::spec()),
        Route::Create => job::create(ctx, req.body, &caller.sub),
        Route::List => job::list(ctx, req.query),
        Route::Stats => job::stats(ctx),
        Route::Workers => job::workers(ctx),
        Route::Get(id) => job::get(ctx, id, req.query),
        Route::Delete(id) => job::delete(ctx, id),
        Route::Retry(id) => job::retry(ctx, id, req.body, &caller.sub),
        Route::Audit => crate::audit::list(ctx, req.query),
        Route::NotAllowed(allow) => Err(ApiError::method_not_allowed(req.method, req.path, allow)),
        Route::NotFound => {
            let known: Vec<String> = ROUTES.iter().map(|(m, p)| format!("{m} {p}")).collect();
            let mut e = ApiError::not_found(format!("no route for {}", req.path));
            e.details = format!("routes: {}", known.join(", "));
            Err(e)
        }
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

    #[test]
    fn every_listed_route_is_served_and_protected_as_documented() {
        for (method, template) in ROUTES {
            let path = template.replace("{id}", "550e8400-e29b-41d4-a716-446655440000");
            let route = classify(method, &segments(&path));
            assert!(
                !matches!(route, Route::NotFound | Route::NotAllowed(_)),
                "{method} {template} is listed but not served"
            );
            let open = template.starts_with("/health") || *template == "/openapi.yaml";
            assert_eq!(route.permission().is_none(), open, "{method} {template}");
        }
        assert_eq!(
            classify("DELETE", &segments("/job/status")),
            Route::NotAllowed("GET")
        );
        assert_eq!(classify("GET", &segments("/nope")), Route::NotFound);
    }

    #[test]
    fn the_served_spec_documents_exactly_the_routes() {
        let spec: serde_json::Value = match serde_yaml::from_str(crate::handlers::health::SPEC) {
            Ok(v) => v,
            Err(e) => panic!("openapi.yaml does not parse: {e}"),
        };
        let mut documented = Vec::new();
        for (path, item) in spec["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        documented.sort();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
    }
}
