//! The open endpoints: `/health` (liveness: the process answers), `/health/ready` (NATS reachable, layout
//! present, the index replayed) and `/openapi.yaml` (the spec).

use super::{Body, Reply};
use crate::ctx::Ctx;
use serde_json::json;

/// `GET /health`.
pub fn live() -> Reply {
    Reply::json(200, json!({ "status": "ok" }))
}

/// `GET /health/ready`: 503 naming what is missing.
pub fn ready(ctx: &Ctx) -> Reply {
    match ctx.store.readiness() {
        Ok(()) => Reply::json(200, json!({ "status": "ready" })),
        Err(p) => Reply::json(
            503,
            json!({ "status": "not ready", "error": p, "code": 503 }),
        ),
    }
}

/// The API's own OpenAPI spec (compatible with OSAPI's job API in paths and fields).
pub const SPEC: &str = include_str!("../../openapi.yaml");

/// `GET /openapi.yaml`.
pub fn spec() -> Reply {
    Reply {
        status: 200,
        body: Body::Text(SPEC, "application/yaml"),
        job_id: None,
    }
}
