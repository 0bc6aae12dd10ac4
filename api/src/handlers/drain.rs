//! `POST /job/workers/{hostname}/drain` and `.../undrain` (permission `job:admin`): a draining worker
//! finishes what it runs and takes nothing new (its own jobs wait in NATS, `_any` jobs go to others),
//! then shows `cordoned`; undrain resumes it. The answer: `{hostname, state, timeline}`.

use super::Reply;
use crate::ctx::Ctx;
use crate::error::ApiError;
use osapi_common::drain::WorkerState;
use serde_json::json;

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

/// Drain (`drain` true) or undrain `host` for `user`.
pub fn set(ctx: &Ctx, host: &str, drain: bool, body: &[u8], user: &str) -> Result<Reply, ApiError> {
    if !valid_hostname(host) {
        return Err(ApiError::bad_request(format!(
            "hostname '{host}' must match [A-Za-z0-9_.-]+"
        )));
    }
    if !body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("drain and undrain take no body"));
    }
    ctx.require_nats()?;
    let Some(record) = ctx.store.set_drain(host, drain, user)? else {
        return Err(ApiError::not_found(format!("no live worker {host}")));
    };
    // The worker turns `cordoned` itself once it runs nothing; until its next heartbeat it is draining.
    let state = match record.drain {
        true => WorkerState::Draining,
        false => WorkerState::Ready,
    };
    Ok(Reply::json(
        200,
        json!({ "hostname": host, "state": state, "timeline": record.events }),
    ))
}
