//! The open endpoints: `/health` (liveness: the process answers), `/health/ready` (NATS reachable, layout
//! present, the index replayed) and `/openapi.yaml` (the spec).

use super::{Body, Reply};
use crate::routes::Ctx;
use serde_json::json;

/// `GET /health`.
pub fn live() -> Reply {
    Reply::json(200, json!({ "status": "ok" }))
}

/// `GET /health/ready`: 503 naming what is missing.
pub fn ready(ctx: &Ctx) -> Reply {
    let problem = if !ctx.store.bus.is_connected() {
        Some("NATS is unreachable".to_string())
    } else if !ctx.store.index.is_ready() {
        Some("job index is still loading".to_string())
    } else {
        match ctx.store.bus.stream_messages(&ctx.store.names.stream) {
            Ok(_) => None,
            Err(e) => Some(format!("job stream {}: {e}", ctx.store.names.stream)),
        }
    };
    match problem {
        None => Reply::json(200, json!({ "status": "ready" })),
        Some(p) => Reply::json(
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
    }
}
