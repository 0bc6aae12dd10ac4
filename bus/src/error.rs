//! `BusError`: what went wrong talking to NATS, sorted by what a caller can do about it (docs/nats.md,
//! "Error classes"), and the sorting of JetStream's error answers into those classes.

use std::fmt;

/// What went wrong talking to NATS, by what the caller can do about it (docs/nats.md, "Error classes").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusError {
    /// Not connected, or no answer within the request timeout: try again later (HTTP 503).
    Unavailable(String),
    /// A bucket or stream is at its limit and refuses new records (discard new): nothing was written;
    /// it frees up as records expire (HTTP 503 with `Retry-After`).
    StoreFull(String),
    /// A value larger than a bucket or NATS takes: retrying cannot help (HTTP 413).
    TooLarge(String),
    /// A conditional write lost: the key already exists or changed meanwhile (HTTP 409).
    Conflict(String),
    /// JetStream answered with another error.
    Api {
        code: u16,
        err_code: u32,
        description: String,
    },
    /// An answer we could not understand, or a value we could not encode (HTTP 500, logged).
    Protocol(String),
}

impl BusError {
    /// JetStream's "not found" family (no such stream, consumer or message).
    pub fn is_not_found(&self) -> bool {
        matches!(self, BusError::Api { code: 404, .. })
    }

    /// Whether the same call may succeed later: NATS away, a store full, or a server-side 5xx. The
    /// others (too large, conflict, a 4xx, a garbled answer) fail the same way every time.
    pub fn is_transient(&self) -> bool {
        match self {
            BusError::Unavailable(_) | BusError::StoreFull(_) => true,
            BusError::Api { code, .. } => *code >= 500,
            BusError::TooLarge(_) | BusError::Conflict(_) | BusError::Protocol(_) => false,
        }
    }

    /// Sorts a JetStream error answer into its class. By description as well as by code: the codes
    /// moved between server versions, the wording did not (docs/nats.md).
    pub(crate) fn classify(code: u16, err_code: u32, description: String) -> BusError {
        let d = description.to_ascii_lowercase();
        if d.contains("maximum bytes")
            || d.contains("maximum messages")
            || d.contains("insufficient resources")
            || d.contains("resource limits exceeded")
        {
            BusError::StoreFull(description)
        } else if d.contains("message size exceeds") || d.contains("maximum payload") {
            BusError::TooLarge(description)
        } else if err_code == 10071 || d.contains("wrong last sequence") {
            BusError::Conflict(description)
        } else {
            BusError::Api {
                code,
                err_code,
                description,
            }
        }
    }
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::Unavailable(why) => write!(f, "NATS unavailable: {why}"),
            BusError::StoreFull(why) => write!(f, "store full: {why}"),
            BusError::TooLarge(why) => write!(f, "too large: {why}"),
            BusError::Conflict(why) => write!(f, "conflict: {why}"),
            BusError::Api {
                code,
                err_code,
                description,
            } => write!(f, "JetStream error {code}/{err_code}: {description}"),
            BusError::Protocol(why) => write!(f, "unexpected NATS answer: {why}"),
        }
    }
}

impl std::error::Error for BusError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_api_answer;

    fn answer(code: u16, err_code: u32, description: &str) -> BusError {
        let body = serde_json::json!({
            "error": { "code": code, "err_code": err_code, "description": description }
        });
        match parse_api_answer(body.to_string().as_bytes()) {
            Err(e) => e,
            Ok(v) => panic!("an error answer parsed as success: {v}"),
        }
    }

    #[test]
    fn jetstream_errors_are_sorted_by_what_a_caller_can_do() {
        // What nats-server 2.9/2.15 answer to a publish into a full bucket or stream (discard new).
        let full = answer(503, 10077, "maximum bytes exceeded");
        assert!(matches!(full, BusError::StoreFull(_)), "{full:?}");
        assert!(full.is_transient());
        let msgs = answer(503, 10077, "maximum messages exceeded");
        assert!(matches!(msgs, BusError::StoreFull(_)), "{msgs:?}");
        let resources = answer(503, 10047, "insufficient resources");
        assert!(matches!(resources, BusError::StoreFull(_)), "{resources:?}");
        let large = answer(400, 10054, "message size exceeds maximum allowed");
        assert!(matches!(large, BusError::TooLarge(_)), "{large:?}");
        assert!(!large.is_transient());
        let taken = answer(400, 10071, "wrong last sequence: 7");
        assert!(matches!(taken, BusError::Conflict(_)), "{taken:?}");
        assert!(!taken.is_transient());
        let missing = answer(404, 10014, "consumer not found");
        assert!(missing.is_not_found() && !missing.is_transient());
        assert!(answer(500, 10000, "server trouble").is_transient());
        assert!(BusError::Unavailable("down".into()).is_transient());
        assert!(!BusError::Protocol("garbled".into()).is_transient());
    }

    #[test]
    fn a_watch_reads_the_consumer_sequence_of_each_delivery() {
        let consumer_seq = |reply| crate::stream::AckMeta::parse(reply).map(|m| m.consumer_seq);
        assert_eq!(
            consumer_seq("$JS.ACK.KV_b.c.1.42.7.1700000000000000000.0"),
            Some(7)
        );
        assert_eq!(
            consumer_seq("$JS.ACK.dom.hash.KV_b.c.1.42.9.1700000000000000000.3.rnd"),
            Some(9)
        );
        assert_eq!(consumer_seq("_INBOX.x"), None);
    }
}
