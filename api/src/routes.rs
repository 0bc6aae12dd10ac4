//! The routing table: one `match` from (method, path segments) to a handler. The context and query string
//! the handlers share live in `ctx.rs`, so handlers never import the router that imports them.

use crate::auth::{Caller, Verdict};
pub use crate::ctx::{Ctx, Query};
use crate::error::ApiError;
use crate::handlers::{cancel, drain, health, job, Reply};
use osapi_common::permission;
use std::time::Instant;

/// One request as the router sees it.
pub struct Incoming<'a> {
    pub method: &'a str,
    /// Without the query string.
    pub path: &'a str,
    pub query: &'a Query,
    pub body: &'a [u8],
    /// What `authorize` allowed, from the head.
    pub access: &'a Authorized,
    /// The `Idempotency-Key` header (`idempotency.rs`).
    pub idempotency_key: Option<&'a str>,
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
    ("POST", "/job/{id}/cancel"),
    ("POST", "/job/workers/{hostname}/drain"),
    ("POST", "/job/workers/{hostname}/undrain"),
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
    Cancel(&'a str),
    /// `drain` true: drain; false: undrain.
    Drain(&'a str, bool),
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
        ("POST", ["job", "workers", host, "drain"]) => Route::Drain(host, true),
        ("POST", ["job", "workers", host, "undrain"]) => Route::Drain(host, false),
        (_, ["job", "workers", _, "drain" | "undrain"]) => Route::NotAllowed("POST"),
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
        ("POST", ["job", id, "cancel"]) => Route::Cancel(id),
        (_, ["job"]) => Route::NotAllowed("GET, POST"),
        (_, ["job", _]) => Route::NotAllowed("GET, DELETE"),
        (_, ["job", _, "retry"]) | (_, ["job", _, "cancel"]) => Route::NotAllowed("POST"),
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
            Route::Create | Route::Delete(_) | Route::Retry(_) | Route::Cancel(_) => {
                Some(permission::JOB_WRITE)
            }
            Route::Drain(..) => Some(permission::JOB_ADMIN),
            Route::Audit => Some(permission::AUDIT_READ),
            _ => None,
        }
    }
}

/// The method and route a request matches as metrics labels (`POST`, `/job/:id/cancel`: the
/// template in [`label`]'s form), or `other` for both: static text that cannot grow with what clients
/// send.
pub fn template<'a>(method: &str, path: &'a str) -> (&'static str, &'static str) {
    let segments = segments(path);
    let (Route::NotAllowed(_) | Route::NotFound) = classify(method, &segments) else {
        // Each segment as the templates write it, compared in place (this runs for every request).
        let shaped = |i: usize, s: &'a str| match (i, s.len()) {
            (2, _) if segments.len() == 4 && segments[1] == "workers" => "{hostname}",
            (_, 36) => "{id}",
            _ => s,
        };
        let fits = |template: &str| {
            let mut parts = template.split('/').skip(1);
            segments
                .iter()
                .enumerate()
                .all(|(i, s)| parts.next() == Some(shaped(i, s)))
                && parts.next().is_none()
        };
        return ROUTES
            .iter()
            .find(|(m, p)| *m == method && fits(p))
            .map_or(OTHER, |(m, p)| (*m, label(p)));
    };
    OTHER
}

/// What [`template`] gives a request no route takes.
const OTHER: (&str, &str) = ("other", "other");

/// A route template as a label value: `/job/:id`, since braces inside a label value trip some
/// text-format parsers.
fn label(template: &'static str) -> &'static str {
    match template {
        "/job/{id}" => "/job/:id",
        "/job/{id}/retry" => "/job/:id/retry",
        "/job/{id}/cancel" => "/job/:id/cancel",
        "/job/workers/{hostname}/drain" => "/job/workers/:hostname/drain",
        "/job/workers/{hostname}/undrain" => "/job/workers/:hostname/undrain",
        plain => plain,
    }
}

/// A submission under its `Idempotency-Key`, if the request has one.
fn keyed(
    ctx: &Ctx,
    req: &Incoming<'_>,
    user: &str,
    handler: impl FnOnce() -> Result<Reply, ApiError>,
) -> Result<Reply, ApiError> {
    crate::idempotency::guard(ctx, req.idempotency_key, user, req.path, req.body, handler)
}

/// A request that creates a job (`POST /job`, `.../retry`): under its `Idempotency-Key`, then, with
/// `?wait=`, held until the new job ends or the wait is over (a bad `wait` is refused before anything
/// is created). Without a key (whose record is written once the handler answers, and which a replay
/// may be waiting on) the handler is given the wait's end to hold within the creation, and what it
/// held counts against the wait.
fn submission(
    ctx: &Ctx,
    req: &Incoming<'_>,
    user: &str,
    handler: impl FnOnce(Option<Instant>) -> Result<Reply, ApiError>,
) -> Result<Reply, ApiError> {
    req.query.only(&["wait"])?;
    let wait = job::parse_wait(req.query)?;
    let until = Instant::now() + wait;
    let hold = (!wait.is_zero() && req.idempotency_key.is_none()).then_some(until);
    let created = keyed(ctx, req, user, || handler(hold))?;
    job::created_waited(ctx, created, wait, until)
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_end_matches('/').split('/').skip(1).collect()
}

/// A request whose token allows its route. Only `authorize` makes one, and `route` takes nothing else,
/// so no handler runs unauthorized.
pub struct Authorized {
    caller: Caller,
}

/// The token check, from the request head alone (the token was verified once, into `verdict`), so the
/// server refuses (401/403) before it reads any body.
pub fn authorize(method: &str, path: &str, verdict: &Verdict) -> Result<Authorized, ApiError> {
    let caller = match classify(method, &segments(path)).permission() {
        Some(needed) => verdict.allow(needed)?,
        None => Caller::default(),
    };
    Ok(Authorized { caller })
}

/// Dispatches one authorized request: classify, call the handler.
pub fn route(ctx: &Ctx, req: &Incoming<'_>) -> Result<Reply, ApiError> {
    let segments = segments(req.path);
    let route = classify(req.method, &segments);
    let caller = &req.access.caller;
    match route {
        Route::Health => Ok(health::live()),
        Route::Ready => Ok(health::ready(ctx)),
        Route::Spec => Ok(health::spec()),
        Route::Create => submission(ctx, req, &caller.sub, |hold| {
            job::create(ctx, req.body, &caller.sub, hold)
        }),
        Route::List => job::list(ctx, req.query),
        Route::Stats => job::stats(ctx),
        Route::Workers => job::workers(ctx),
        Route::Get(id) => job::get(ctx, id, req.query),
        Route::Delete(id) => job::delete(ctx, id),
        Route::Retry(id) => submission(ctx, req, &caller.sub, |hold| {
            job::retry(ctx, id, req.body, &caller.sub, hold)
        }),
        Route::Cancel(id) => cancel::cancel(ctx, id, req.body, &caller.sub),
        Route::Drain(host, on) => drain::set(ctx, host, on, req.body, &caller.sub),
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
    fn metric_labels_are_route_templates() {
        let id = "550e8400-e29b-41d4-a716-446655440000";
        assert_eq!(template("GET", &format!("/job/{id}")), ("GET", "/job/:id"));
        assert_eq!(
            template("POST", &format!("/job/{id}/cancel/")).1,
            "/job/:id/cancel"
        );
        assert_eq!(template("POST", "/job"), ("POST", "/job"));
        assert_eq!(
            template("POST", "/job/workers/web1/drain").1,
            "/job/workers/:hostname/drain"
        );
        assert_eq!(template("DELETE", "/job/status"), ("other", "other"));
        assert_eq!(template("GET", "/nope/../../etc").1, "other");
        for (_, template) in ROUTES {
            let label = label(template);
            assert!(!label.contains(['{', '}']), "{template} -> {label}");
            assert_eq!(label.matches('/').count(), template.matches('/').count());
        }
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
