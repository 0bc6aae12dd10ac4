//! Idempotent submission (`Idempotency-Key`): the record kept per user and key, and the one rule that
//! decides what a request carrying a key that is already recorded gets. Pure: the API hashes, stores
//! and passes `now`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// How long a key is remembered (the idempotency bucket's TTL).
pub const KEY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest accepted `Idempotency-Key` value.
pub const KEY_BYTES_MAX: usize = 255;
/// A claim with no answer is another request's work in progress, until this long after it was made:
/// past it the claimant is taken to have died (an API killed mid-request) and a new request may take
/// the key over. Far longer than a submission takes (a few bounded NATS calls).
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);

/// The first answer given for a key: what a replay returns, byte for byte the same JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// What the idempotency bucket holds under one user's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Hash of the request (path and canonical body) the key was first used with.
    pub fingerprint: String,
    /// When the claim was made (Unix µs); `0` after a claimant gave the key back (its request failed).
    pub claimed_us: i64,
    /// The first successful answer; `None` while the first request is still running.
    #[serde(default)]
    pub answer: Option<Answer>,
}

/// What a request whose key is already recorded gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Same request, answered before: give that answer again, create nothing.
    Replay(Answer),
    /// The key was used with another request: 422.
    Mismatch,
    /// The same request is being answered right now: wait for its answer (then 409 if none comes).
    InProgress,
    /// The claim was given back or its claimant died: this request may take the key over.
    TakeOver,
}

/// Checks the header's value: 1 to [`KEY_BYTES_MAX`] printable ASCII characters (as the IETF
/// draft's sf-string allows).
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(format!(
            "Idempotency-Key must be 1 to {KEY_BYTES_MAX} characters, got {}",
            key.len()
        ));
    }
    if !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err("Idempotency-Key must be printable ASCII".into());
    }
    Ok(())
}

/// The rule: a given-back claim may be taken by any request; another request is never replayed; an
/// answer is replayed; a live claim is waited for; an expired one may be taken over.
pub fn decide(record: &Record, fingerprint: &str, now_us: i64) -> Decision {
    // A claim given back (its request was refused or failed) leaves nothing to protect: whatever comes next may
    // use the key, as if it had never been sent.
    if record.answer.is_none() && record.claimed_us == 0 {
        return Decision::TakeOver;
    }
    if record.fingerprint != fingerprint {
        return Decision::Mismatch;
    }
    if let Some(answer) = &record.answer {
        return Decision::Replay(answer.clone());
    }
    let lease_us = CLAIM_LEASE.as_micros() as i64;
    if record.claimed_us == 0 || now_us.saturating_sub(record.claimed_us) >= lease_us {
        Decision::TakeOver
    } else {
        Decision::InProgress
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_000_000_000_000;

    fn record(fingerprint: &str, claimed_us: i64, answer: Option<Answer>) -> Record {
        Record {
            fingerprint: fingerprint.into(),
            claimed_us,
            answer,
        }
    }

    #[test]
    fn decisions() {
        let answer = Answer {
            status: 201,
            body: json!({"job_id": "x"}),
        };
        let lease = CLAIM_LEASE.as_micros() as i64;
        let cases = [
            (
                record("a", NOW, Some(answer.clone())),
                "a",
                Decision::Replay(answer.clone()),
            ),
            (
                record("a", NOW, Some(answer.clone())),
                "b",
                Decision::Mismatch,
            ),
            (record("a", NOW - 1, None), "b", Decision::Mismatch),
            (record("a", NOW - 1, None), "a", Decision::InProgress),
            (
                record("a", NOW - lease + 1, None),
                "a",
                Decision::InProgress,
            ),
            (record("a", NOW - lease, None), "a", Decision::TakeOver),
            (record("a", 0, None), "a", Decision::TakeOver),
            (record("a", 0, None), "b", Decision::TakeOver),
            // An answer outlives the lease: a replay a day later is still the first answer.
            (
                record("a", NOW - 10 * lease, Some(answer.clone())),
                "a",
                Decision::Replay(answer),
            ),
        ];
        for (rec, fingerprint, want) in cases {
            assert_eq!(
                decide(&rec, fingerprint, NOW),
                want,
                "{rec:?} with {fingerprint}"
            );
        }
    }

    #[test]
    fn keys() {
        assert!(validate_key("3f1c-retry-1").is_ok());
        assert!(validate_key("with space ok").is_ok());
        assert!(validate_key(&"k".repeat(KEY_BYTES_MAX)).is_ok());
        for bad in ["", "tab\there", "ünï", "new\nline"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_key(&"k".repeat(KEY_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn a_record_without_an_answer_reads_back() {
        let rec: Record = serde_json::from_str(r#"{"fingerprint":"f","claimed_us":5}"#).unwrap();
        assert_eq!(rec, record("f", 5, None));
    }
}
