//! `Idempotency-Key` on `POST /job` and `POST /job/{id}/retry`: the same user sending the same key with
//! the same request within 24 h gets the first answer again and creates nothing; the same key with
//! another request is 422; two at once create one job (the key is claimed with KV create, a
//! compare-and-set, before the handler runs; the loser waits for the winner's answer). The rule is
//! `osapi_common::idempotency::decide`; the records live in their own bucket (`store/idempotency.rs`).

use crate::ctx::{now_us, Ctx};
use crate::error::ApiError;
use crate::handlers::{Body, Reply};
use osapi_common::idempotency::{self, Answer, Decision, Record};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// How often a request whose twin holds the key looks for the twin's answer (bounded by the deadline).
const TWIN_POLL: Duration = Duration::from_millis(20);

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefixed, so ("ab","c") and ("a","bc") differ.
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The KV key of one user's `Idempotency-Key` (hashed: a header may hold characters KV keys may not).
fn record_key(user: &str, key: &str) -> String {
    format!("idem.{}", sha256_hex(&[user.as_bytes(), key.as_bytes()]))
}

/// What "the same request" means: the same path and the same JSON body, whatever its key order and
/// spacing (a body that is not JSON is compared byte for byte; the handler will refuse it anyway).
fn fingerprint(path: &str, body: &[u8]) -> String {
    let canonical = if body.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v) => osapi_common::canonical::to_string(&v).into_bytes(),
            Err(_) => body.to_vec(),
        }
    };
    sha256_hex(&[path.as_bytes(), &canonical])
}

fn error(status: u16, what: impl Into<String>, details: &str) -> ApiError {
    ApiError {
        status,
        error: what.into(),
        details: details.into(),
        header: None,
    }
}

/// Runs `handler` at most once per (user, key, request): see the module doc. Without a key, just runs it.
pub fn guard(
    ctx: &Ctx,
    key: Option<&str>,
    user: &str,
    path: &str,
    body: &[u8],
    handler: impl FnOnce() -> Result<Reply, ApiError>,
) -> Result<Reply, ApiError> {
    let Some(key) = key else {
        return handler();
    };
    idempotency::validate_key(key).map_err(ApiError::bad_request)?;
    ctx.require_nats()?;
    let rkey = record_key(user, key);
    let fp = fingerprint(path, body);
    let deadline = Instant::now() + ctx.store.request_timeout();
    let mut seen: Option<u64> = None;
    loop {
        let claim = Record {
            fingerprint: fp.clone(),
            claimed_us: now_us(),
            answer: None,
        };
        if let Some(rev) = ctx.store.idempotency_write(&rkey, &claim, seen)? {
            return answer_and_record(ctx, &rkey, claim, rev, handler);
        }
        seen = None;
        if let Some((record, rev)) = ctx.store.idempotency_read(&rkey)? {
            match idempotency::decide(&record, &fp, now_us()) {
                Decision::Replay(a) => return Ok(Reply::json(a.status, a.body)),
                Decision::Mismatch => {
                    return Err(error(
                        422,
                        "Idempotency-Key was already used with a different request",
                        "send a new key for a new request; a key is remembered for 24h",
                    ))
                }
                Decision::TakeOver => seen = Some(rev),
                Decision::InProgress => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(error(
                409,
                "a request with this Idempotency-Key is still in progress",
                "retry it with the same key shortly to get its answer",
            ));
        }
        if seen.is_none() {
            std::thread::sleep(TWIN_POLL);
        }
    }
}

/// Runs the handler under our claim; records a success as the key's answer, gives the key back on an
/// error (so the same request may be tried again).
fn answer_and_record(
    ctx: &Ctx,
    rkey: &str,
    mut claim: Record,
    rev: u64,
    handler: impl FnOnce() -> Result<Reply, ApiError>,
) -> Result<Reply, ApiError> {
    let outcome = handler();
    match &outcome {
        Ok(Reply {
            status,
            body: Body::Json(body),
            ..
        }) => {
            claim.answer = Some(Answer {
                status: *status,
                body: body.clone(),
            })
        }
        _ => claim.claimed_us = 0,
    }
    match ctx.store.idempotency_write(rkey, &claim, Some(rev)) {
        Ok(Some(_)) => {}
        // The answer stands (the job exists); only a later replay is at risk, so say it and go on.
        Ok(None) => log::warn!("idempotency record {rkey}: taken over before it was answered"),
        Err(e) => log::warn!("idempotency record {rkey}: answer not recorded: {e}"),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_request_whatever_its_spelling() {
        let a = fingerprint(
            "/job",
            br#"{"operation":{"type":"t","data":{"x":1,"y":[1,2]}},"target_hostname":"_any"}"#,
        );
        let b = fingerprint("/job", br#" { "target_hostname" : "_any", "operation": {"data":{"y":[1,2],"x":1},"type":"t"}} "#);
        assert_eq!(a, b);
        assert_ne!(
            a,
            fingerprint(
                "/job",
                br#"{"operation":{"type":"t","data":{"x":2,"y":[1,2]}},"target_hostname":"_any"}"#
            )
        );
        assert_ne!(
            a,
            fingerprint(
                "/job/x/retry",
                br#"{"operation":{"type":"t","data":{"x":1,"y":[1,2]}},"target_hostname":"_any"}"#
            )
        );
        assert_eq!(
            fingerprint("/job/x/retry", b""),
            fingerprint("/job/x/retry", b"  \n")
        );
    }

    #[test]
    fn keys_are_per_user_and_valid_kv_keys() {
        let k = record_key("alice", "k1");
        assert_ne!(k, record_key("bob", "k1"));
        assert_ne!(record_key("ab", "c"), record_key("a", "bc"));
        assert!(
            k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'),
            "{k}"
        );
    }
}
