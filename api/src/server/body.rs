//! Reading a request body within its deadline, each socket read
//! bounded by the time left (the vendored tiny_http shortens the read timeout), refused past the cap.
//! Split from `server.rs`, which decides who reads a body and when.

use super::BODY_DEADLINE;
use crate::error::ApiError;
use std::io::ErrorKind;
use std::time::Instant;
use tiny_http::Request;

/// Why a body was not read whole.
pub(super) enum BodyError {
    /// `until` passed first.
    Late,
    /// Over the cap, or the connection failed.
    Refused(ApiError),
}

impl BodyError {
    /// The answer, once the body's whole deadline ([`BODY_DEADLINE`]) has passed.
    pub(super) fn into_error(self) -> ApiError {
        match self {
            BodyError::Late => ApiError {
                status: 408,
                error: format!(
                    "request body did not arrive within {} s",
                    BODY_DEADLINE.as_secs()
                ),
                details: "send the whole body at once, after the head".to_string(),
                header: None,
            },
            BodyError::Refused(e) => e,
        }
    }
}

/// Reads the rest of the body into `body`, refused past the cap, and late past `until`: every socket
/// read of the body waits at most until then (the vendored tiny_http shortens the read timeout to the
/// time left), so `until` is a real bound. A late read consumes nothing, so reading can go on later.
pub(super) fn read_body(
    req: &mut Request,
    body: &mut Vec<u8>,
    max: usize,
    until: Instant,
) -> Result<(), BodyError> {
    if req.body_length().is_some_and(|n| n > max) {
        return Err(BodyError::Refused(ApiError::too_large(max)));
    }
    req.set_body_deadline(until);
    let mut chunk = [0_u8; 16 * 1024];
    let reader = req.as_reader();
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                return Err(BodyError::Late)
            }
            Err(e) => {
                return Err(BodyError::Refused(ApiError::bad_request(format!(
                    "cannot read request body: {e}"
                ))))
            }
        };
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
        if body.len() > max {
            return Err(BodyError::Refused(ApiError::too_large(max)));
        }
    }
}
