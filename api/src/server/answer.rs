//! The one path that answers a request: [`record`] counts it in the metrics, answers it, then puts it
//! on the audit trail when it is one the trail keeps; refusals included, so no request is dropped
//! unanswered or unrecorded. Split from `server.rs`, which decides what the answer is.

use super::Pending;
use crate::audit;
use crate::auth::Verdict;
use crate::error::ApiError;
use crate::handlers::{Body, Reply};
use crate::routes::{self, Ctx};
use tiny_http::{Header, Request, Response};

/// The one way every request is answered: counted in the metrics, answered, then put on the audit
/// trail when it is one the trail keeps (`audit.rs`): after the answer, so the trail never slows a
/// client down.
pub(super) fn record(ctx: &Ctx, pending: Pending, outcome: Result<Reply, ApiError>) {
    // Metrics and the trail's entry first, borrowing the request, which answering consumes.
    let entry = {
        let method = pending.req.method().as_str();
        let url = pending.req.url();
        let path = url.split_once('?').map_or(url, |(p, _)| p);
        let code = match &outcome {
            Ok(reply) => reply.status,
            Err(e) => e.status,
        };
        let (method_label, route) = routes::template(method, path);
        crate::metrics::observe_http(method_label, route, code, pending.started.elapsed());
        let seen = audit::Seen {
            method,
            path,
            caller: pending.verdict.as_ref().and_then(Verdict::caller),
            source: pending.req.remote_addr().copied(),
            started: pending.started,
        };
        audit::entry(ctx, &seen, &outcome)
    };
    respond(pending.req, outcome);
    if let Some(entry) = entry {
        ctx.audit.append(entry);
    }
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

/// The one place that answers a request.
fn respond(req: Request, outcome: Result<Reply, ApiError>) {
    let (status, body, extra) = match outcome {
        Ok(reply) => (reply.status, reply.body, None),
        Err(e) => (e.status, Body::Json(e.body()), e.header),
    };
    let (bytes, content_type) = match body {
        Body::None => (Vec::new(), None),
        Body::Json(v) => (v.to_string().into_bytes(), Some("application/json")),
        Body::JsonBytes(bytes) => (bytes, Some("application/json")),
        Body::Text(text, ct) => (text.as_bytes().to_vec(), Some(ct)),
    };
    let mut response = Response::from_data(bytes).with_status_code(status);
    if let Some(h) = content_type.and_then(|ct| header("Content-Type", ct)) {
        response.add_header(h);
    }
    if let Some(h) = extra.and_then(|(name, value)| header(name, value)) {
        response.add_header(h);
    }
    if let Err(e) = req.respond(response) {
        log::debug!("client went away before the answer: {e}");
    }
}
