//! `POST /job/{id}/cancel`: hosts that have not started the job never will, hosts running it stop it;
//! the answer is the job's detail as of the request (its status turns `cancelled` once no host runs
//! it). 409 when the job is already finished or cancelled.

use super::job::parse_id;
use super::Reply;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::store::CancelOutcome;

/// `POST /job/{id}/cancel` by `user` (the token's subject).
pub fn cancel(ctx: &Ctx, raw_id: &str, body: &[u8], user: &str) -> Result<Reply, ApiError> {
    let id = parse_id(raw_id)?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("POST /job/{id}/cancel takes no body"));
    }
    ctx.require_nats()?;
    match ctx.store.cancel(&id, user)? {
        CancelOutcome::NotFound => Err(ApiError::not_found(format!("job {id} not found"))),
        CancelOutcome::Finished(status) => Err(ApiError {
            status: 409,
            error: format!("job {id} is already {status}: nothing to cancel"),
            details: "only pending and running jobs can be cancelled".into(),
            header: None,
        }),
        CancelOutcome::Cancelled => match ctx.store.details(&[id])?.pop() {
            Some(records) => Ok(Reply::json(200, super::to_json(&records.detail())?)),
            None => Err(ApiError::not_found(format!("job {id} not found"))),
        },
    }
}
