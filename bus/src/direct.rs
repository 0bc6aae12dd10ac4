//! Direct gets (nats-server 2.9+): a KV read as `$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{key}`,
//! answered with the stored message itself (payload as is, `Nats-Sequence` and the record's own headers),
//! status 404 when the key has no record. The server answers it outside the JetStream API's queue, with
//! no JSON to parse and no base64 to write, unlike `STREAM.MSG.GET` (kv.rs).
//!
//! Used only where it is as true as `STREAM.MSG.GET` (docs/nats.md, "Direct gets"): a bucket whose stream
//! allows direct gets **and has one replica**. With replicas > 1 every replica answers direct gets, a
//! lagging follower included, so a job just written could read as missing; there `STREAM.MSG.GET` (the
//! leader) stays. [`Bus::kv_enable_direct`] decides per bucket at start; a direct get left unanswered
//! later (the stream lost `allow_direct`) turns them off for good ([`Bus::direct_failed`]).

use crate::kv::{op_from_headers, stream_name, KvEntry, KvOp, STREAM_PREFIX, SUBJECT_PREFIX};
use crate::{Bus, BusError};
use serde_json::Value;

/// A key no record is written under: the probe's get must answer 404.
const PROBE_KEY: &str = "osapi-direct-get-probe";

/// The request subject of a direct get of `key` (the last record of its subject).
pub(crate) fn direct_subject(bucket: &str, key: &str) -> String {
    // One allocation: this runs three times for each job a worker takes.
    let mut out = String::with_capacity(40 + 2 * bucket.len() + key.len());
    let parts = [
        "$JS.API.DIRECT.GET.",
        STREAM_PREFIX,
        bucket,
        ".",
        SUBJECT_PREFIX,
        bucket,
        ".",
        key,
    ];
    for part in parts {
        out.push_str(part);
    }
    out
}

/// Decodes a direct get's answer: the stored message, or a status (404: no record).
pub(crate) fn decode_direct(msg: &nats::Message, key: &str) -> Result<Option<KvEntry>, BusError> {
    let h = msg.headers.as_ref();
    if let Some(status) = h.and_then(|h| h.get("Status")) {
        return match status.as_str() {
            "404" => Ok(None),
            other => Err(BusError::Unavailable(format!(
                "direct get of {key} answered {other} {}",
                h.and_then(|h| h.get("Description"))
                    .map(String::as_str)
                    .unwrap_or("")
            ))),
        };
    }
    let revision = h
        .and_then(|h| h.get("Nats-Sequence"))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| BusError::Protocol(format!("direct get of {key} without Nats-Sequence")))?;
    if op_from_headers(h) != KvOp::Put {
        return Ok(None);
    }
    Ok(Some(KvEntry {
        key: key.to_string(),
        value: msg.data.clone(),
        revision,
        op: KvOp::Put,
    }))
}

impl Bus {
    /// A direct get of `bucket` went unanswered while connected: the stream may have lost
    /// `allow_direct` (an older API re-applied its layout), and a direct get to such a stream is never
    /// answered. Reads of `bucket` go back to `STREAM.MSG.GET` from now on; the caller's error stands
    /// (transient: the worker redelivers the job in 1 s).
    pub(crate) fn direct_failed(&self, bucket: &str, e: BusError) -> BusError {
        if matches!(e, BusError::Unavailable(_)) && self.is_connected() && self.is_direct(bucket) {
            log::warn!("direct get of {bucket} unanswered ({e}); reading it with STREAM.MSG.GET");
            self.set_direct(bucket, false);
        }
        e
    }

    /// Reads `bucket` with direct gets from now on when that is as true as `STREAM.MSG.GET`: its stream
    /// allows them, has one replica, and a probe get answers (an identity not allowed to send them gets
    /// no answer: then after one `request_timeout` it stays with `STREAM.MSG.GET`). Returns whether
    /// direct gets are used, with the reason when not.
    pub fn kv_enable_direct(&self, bucket: &str) -> Result<Result<(), String>, BusError> {
        let info = self.js_api(
            &format!("STREAM.INFO.{}", stream_name(bucket)),
            &serde_json::json!({}),
        )?;
        let allowed = info
            .pointer("/config/allow_direct")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let replicas = info
            .pointer("/config/num_replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let verdict = if !allowed {
            Err("the stream does not allow direct gets".to_string())
        } else if replicas > 1 {
            Err(format!(
                "{replicas} replicas: a follower may answer with an older record"
            ))
        } else {
            match self.request(&direct_subject(bucket, PROBE_KEY), None, b"") {
                Ok(msg) => decode_direct(&msg, PROBE_KEY)
                    .map(|_| ())
                    .map_err(|e| format!("probe: {e}")),
                Err(e) => Err(format!("probe: {e}")),
            }
        };
        self.set_direct(bucket, verdict.is_ok());
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::subject;

    #[test]
    fn the_direct_subject_names_the_kv_streams_subject() {
        assert_eq!(
            direct_subject("jobs", "run.1"),
            format!(
                "$JS.API.DIRECT.GET.{}.{}",
                stream_name("jobs"),
                subject("jobs", "run.1")
            )
        );
        assert_eq!(direct_subject("b", "k"), "$JS.API.DIRECT.GET.KV_b.$KV.b.k");
    }
}
