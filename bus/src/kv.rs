//! JetStream key-value buckets, spoken directly: a bucket is the stream `KV_{bucket}` on subjects
//! `$KV.{bucket}.>`; a put is a publish answered by a PubAck; a get is a `STREAM.MSG.GET` by last subject;
//! a watch is an ephemeral push consumer whose every delivery is checked against the one before (a gap,
//! a silence or a consumer gone after a reconnect is an error: the caller re-creates it from its last
//! applied revision). See docs/nats.md.

use crate::{headers, parse_api_answer, Bus, BusError, StreamConfig};
use base64::Engine;
use serde_json::{json, Value};

mod watch;

pub use watch::{Apply as WatchApply, KvWatch};

/// Largest value we write: below the server's 1 MiB max payload (a larger put never returns: docs/nats.md).
pub const VALUE_BYTES_MAX: usize = 1024 * 1024 - 4096;

/// Whether a KV record is a value or a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvOp {
    Put,
    Delete,
    Purge,
}

/// One key's current record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub key: String,
    pub value: Vec<u8>,
    /// The stream sequence of this record.
    pub revision: u64,
    pub op: KvOp,
}

/// A bucket's stream is this and the bucket's name; its subjects, this, the name, a dot and the key.
pub(crate) const STREAM_PREFIX: &str = "KV_";
pub(crate) const SUBJECT_PREFIX: &str = "$KV.";

pub(crate) fn stream_name(bucket: &str) -> String {
    format!("{STREAM_PREFIX}{bucket}")
}

pub(crate) fn subject(bucket: &str, key: &str) -> String {
    format!("{SUBJECT_PREFIX}{bucket}.{key}")
}

pub(crate) fn op_from_headers(h: Option<&nats::header::HeaderMap>) -> KvOp {
    match h.and_then(|h| h.get("KV-Operation")).map(String::as_str) {
        Some("DEL") => KvOp::Delete,
        Some("PURGE") => KvOp::Purge,
        _ => KvOp::Put,
    }
}

/// A value [`VALUE_BYTES_MAX`] allows, else why not (a larger put never returns).
pub(crate) fn check_value(key: &str, value: &[u8]) -> Result<(), BusError> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(BusError::TooLarge(format!(
            "record {key} would be {} bytes, more than the {VALUE_BYTES_MAX} a KV value may hold",
            value.len()
        )));
    }
    Ok(())
}

/// The stream sequence a PubAck gives (a KV record's revision).
pub(crate) fn pub_ack_seq(data: &[u8]) -> Result<u64, BusError> {
    /// The usual PubAck, read without building a `Value` (this runs for every write's ack); an error,
    /// or anything else, takes the general path below.
    #[derive(serde::Deserialize)]
    struct PubAck {
        seq: Option<u64>,
        error: Option<serde::de::IgnoredAny>,
    }
    if let Ok(PubAck {
        seq: Some(seq),
        error: None,
    }) = serde_json::from_slice(data)
    {
        return Ok(seq);
    }
    let v = parse_api_answer(data)?;
    v.get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| BusError::Protocol("PubAck without seq".into()))
}

impl Bus {
    /// Creates the bucket, or brings an existing one to this config. Idempotent.
    pub fn kv_ensure(&self, bucket: &str, cfg: &StreamConfig) -> Result<(), BusError> {
        let body = json!({
            "name": stream_name(bucket),
            "subjects": [format!("{SUBJECT_PREFIX}{bucket}.>")],
            "retention": "limits",
            "max_msgs_per_subject": 1,
            "max_age": cfg.max_age.as_nanos() as u64,
            "max_bytes": cfg.max_bytes,
            "max_msg_size": VALUE_BYTES_MAX as i64,
            "storage": cfg.storage,
            "num_replicas": cfg.replicas,
            "discard": "new",
            "allow_rollup_hdrs": true,
            // Direct gets (direct.rs): readers use them only while the bucket has one replica.
            "allow_direct": true,
            "deny_delete": true,
            "deny_purge": false,
            "duplicate_window": crate::stream::duplicate_window_ns(cfg.max_age),
        });
        self.stream_ensure_raw(&stream_name(bucket), &body)
    }

    fn kv_publish(
        &self,
        bucket: &str,
        key: &str,
        hdrs: Option<&nats::header::HeaderMap>,
        value: &[u8],
    ) -> Result<u64, BusError> {
        check_value(key, value)?;
        let msg = self.request(&subject(bucket, key), hdrs, value)?;
        pub_ack_seq(&msg.data)
    }

    /// Writes `value` under `key`; returns the new revision.
    pub fn kv_put(&self, bucket: &str, key: &str, value: &[u8]) -> Result<u64, BusError> {
        self.kv_publish(bucket, key, None, value)
    }

    /// Writes `key` only if it has never been written (fails with an API error otherwise).
    pub fn kv_create(&self, bucket: &str, key: &str, value: &[u8]) -> Result<u64, BusError> {
        self.write_one(crate::Write::KvCreate { bucket, key, value })
    }

    /// Writes `value` under `key` only if `revision` is still its last record (compare-and-set); a
    /// stale revision fails with [`BusError::Conflict`].
    pub fn kv_update(
        &self,
        bucket: &str,
        key: &str,
        value: &[u8],
        revision: u64,
    ) -> Result<u64, BusError> {
        let h = headers(&[("Nats-Expected-Last-Subject-Sequence", &revision.to_string())]);
        self.kv_publish(bucket, key, Some(&h), value)
    }

    /// Removes `key` and its history (a purge marker stays until the bucket's TTL); returns the
    /// marker's revision.
    pub fn kv_purge(&self, bucket: &str, key: &str) -> Result<u64, BusError> {
        let h = headers(&[("KV-Operation", "PURGE"), ("Nats-Rollup", "sub")]);
        self.kv_publish(bucket, key, Some(&h), &[])
    }

    /// Marks `key` deleted (`KV-Operation: DEL`), without a rollup: the bucket keeps one record per key,
    /// so the marker replaces the value by the stream's limits, and no consumer's position moves (a purge
    /// or rollup on nats-server before 2.9.12 advanced every consumer past records it had not delivered).
    pub fn kv_delete(&self, bucket: &str, key: &str) -> Result<u64, BusError> {
        let h = headers(&[("KV-Operation", "DEL")]);
        self.kv_publish(bucket, key, Some(&h), &[])
    }

    /// The current value of `key`, or `None` when it was never written or was deleted.
    pub fn kv_get(&self, bucket: &str, key: &str) -> Result<Option<KvEntry>, BusError> {
        self.kv_get_many(&[(bucket, key)]).pop().unwrap_or(Ok(None))
    }

    /// Several gets, possibly across buckets, sent at once with one flush; answers in request order.
    /// A bucket [`Bus::kv_enable_direct`] turned on is read with direct gets (direct.rs), others with
    /// `STREAM.MSG.GET`.
    pub fn kv_get_many(&self, wanted: &[(&str, &str)]) -> Vec<Result<Option<KvEntry>, BusError>> {
        let direct: Vec<bool> = wanted.iter().map(|(b, _)| self.is_direct(b)).collect();
        let apis: Vec<String> = wanted
            .iter()
            .zip(&direct)
            .map(|((bucket, key), direct)| match direct {
                true => crate::direct::direct_subject(bucket, key),
                false => format!("$JS.API.STREAM.MSG.GET.{}", stream_name(bucket)),
            })
            .collect();
        let bodies: Vec<Vec<u8>> = wanted
            .iter()
            .zip(&direct)
            .map(|((bucket, key), direct)| match direct {
                true => Vec::new(),
                false => json!({ "last_by_subj": subject(bucket, key) })
                    .to_string()
                    .into_bytes(),
            })
            .collect();
        let requests: Vec<(&str, Option<&nats::header::HeaderMap>, &[u8])> = apis
            .iter()
            .zip(&bodies)
            .map(|(api, body)| (api.as_str(), None, body.as_slice()))
            .collect();
        self.request_many(&requests)
            .into_iter()
            .zip(wanted.iter().zip(direct))
            .map(|(answer, ((bucket, key), direct))| match direct {
                true => {
                    let answer = answer.map_err(|e| self.direct_failed(bucket, e));
                    crate::direct::decode_direct(&answer?, key)
                }
                false => decode_stored(&answer?.data, key),
            })
            .collect()
    }
}

/// Decodes a `STREAM.MSG.GET` answer; "no message" and tombstones are `None`.
fn decode_stored(data: &[u8], key: &str) -> Result<Option<KvEntry>, BusError> {
    let v = match parse_api_answer(data) {
        Ok(v) => v,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let message = v
        .get("message")
        .ok_or_else(|| BusError::Protocol("MSG.GET without message".into()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let field = |name: &str| -> Result<Vec<u8>, BusError> {
        match message.get(name).and_then(Value::as_str) {
            None => Ok(Vec::new()),
            Some(s) => b64
                .decode(s)
                .map_err(|e| BusError::Protocol(format!("bad base64 in {name}: {e}"))),
        }
    };
    let hdrs = field("hdrs")?;
    let op = if hdrs.is_empty() {
        KvOp::Put
    } else {
        let parsed = nats::header::HeaderMap::try_from(hdrs.as_slice()).ok();
        op_from_headers(parsed.as_ref())
    };
    if op != KvOp::Put {
        return Ok(None);
    }
    Ok(Some(KvEntry {
        key: key.to_string(),
        value: field("data")?,
        revision: message.get("seq").and_then(Value::as_u64).unwrap_or(0),
        op,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pub_acks_sequence_and_its_errors() {
        assert_eq!(
            pub_ack_seq(br#"{"stream":"KV_jobs","seq":42}"#).ok(),
            Some(42)
        );
        assert_eq!(
            pub_ack_seq(br#"{"stream":"KV_jobs","domain":"d","seq":7,"duplicate":true}"#).ok(),
            Some(7)
        );
        // An error wins over a sequence, as the general parse has it.
        for data in [
            &br#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"}}"#[..],
            br#"{"seq":3,"error":{"code":503,"description":"no quorum"}}"#,
        ] {
            let (fast, general) = (pub_ack_seq(data), parse_api_answer(data));
            assert_eq!(
                fast.map_err(|e| e.to_string()),
                Err(general.err().map(|e| e.to_string()).unwrap_or_default())
            );
        }
        for data in [
            &b"{}"[..],
            br#"{"seq":-1}"#,
            br#"{"seq":"9"}"#,
            b"not json",
            b"",
        ] {
            assert!(
                matches!(pub_ack_seq(data), Err(BusError::Protocol(_))),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }
}
