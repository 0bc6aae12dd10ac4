//! JetStream key-value buckets, spoken directly: a bucket is the stream `KV_{bucket}` on subjects
//! `$KV.{bucket}.>`; a put is a publish answered by a PubAck; a get is a `STREAM.MSG.GET` by last subject;
//! a watch is an ephemeral push consumer whose every delivery is checked against the one before (a gap,
//! a silence or a consumer gone after a reconnect is an error: the caller re-creates it from its last
//! applied revision). See docs/nats.md.

use crate::{headers, parse_api_answer, Bus, BusError, StreamConfig};
use base64::Engine;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

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

pub(crate) fn stream_name(bucket: &str) -> String {
    format!("KV_{bucket}")
}

pub(crate) fn subject(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

pub(crate) fn op_from_headers(h: Option<&nats::header::HeaderMap>) -> KvOp {
    match h.and_then(|h| h.get("KV-Operation")).map(String::as_str) {
        Some("DEL") => KvOp::Delete,
        Some("PURGE") => KvOp::Purge,
        _ => KvOp::Put,
    }
}

fn pub_ack_seq(data: &[u8]) -> Result<u64, BusError> {
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
            "subjects": [format!("$KV.{bucket}.>")],
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
        if value.len() > VALUE_BYTES_MAX {
            return Err(BusError::TooLarge(format!(
                "record {key} would be {} bytes, more than the {VALUE_BYTES_MAX} a KV value may hold",
                value.len()
            )));
        }
        let msg = self.request(&subject(bucket, key), hdrs, value)?;
        pub_ack_seq(&msg.data)
    }

    /// Writes `value` under `key`; returns the new revision.
    pub fn kv_put(&self, bucket: &str, key: &str, value: &[u8]) -> Result<u64, BusError> {
        self.kv_publish(bucket, key, None, value)
    }

    /// Writes `key` only if it has never been written (fails with an API error otherwise).
    pub fn kv_create(&self, bucket: &str, key: &str, value: &[u8]) -> Result<u64, BusError> {
        let h = headers(&[("Nats-Expected-Last-Subject-Sequence", "0")]);
        self.kv_publish(bucket, key, Some(&h), value)
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

    /// Starts watching every key of `bucket`: the last record of each key first (from `after_seq + 1` when
    /// resuming), then every change.
    pub fn kv_watch(&self, bucket: &str, after_seq: Option<u64>) -> Result<KvWatch, BusError> {
        let inbox = self.new_inbox();
        let sub = self.inbox(&inbox)?;
        let mut config = json!({
            "deliver_subject": inbox,
            "ack_policy": "none",
            "filter_subject": format!("$KV.{bucket}.>"),
            "idle_heartbeat": WATCH_HEARTBEAT.as_nanos() as u64,
            // The server pauses until the watch has read what it pushed (`next` answers), so a replay
            // of a large bucket is not all queued in this client's unbounded channel at once.
            "flow_control": true,
            "mem_storage": true,
            "num_replicas": 1,
            "inactive_threshold": 30_000_000_000_u64,
        });
        match after_seq {
            Some(seq) => {
                config["deliver_policy"] = json!("by_start_sequence");
                config["opt_start_seq"] = json!(seq + 1);
            }
            None => config["deliver_policy"] = json!("last_per_subject"),
        }
        let created = self.js_api(
            &format!("CONSUMER.CREATE.{}", stream_name(bucket)),
            &json!({ "stream_name": stream_name(bucket), "config": config }),
        )?;
        let pending = created
            .get("num_pending")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let consumer = created
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| BusError::Protocol("consumer created without a name".into()))?
            .to_string();
        Ok(KvWatch {
            sub,
            stream: stream_name(bucket),
            consumer,
            prefix_len: format!("$KV.{bucket}.").len(),
            caught_up: pending == 0,
            last_seen: Instant::now(),
            deliveries: Deliveries::default(),
        })
    }

    /// Checks a watch against the server (after a reconnect): its consumer must still exist and must
    /// not have delivered more than the watch received. An error means records may have been lost.
    pub fn kv_watch_verify(&self, watch: &KvWatch) -> Result<(), BusError> {
        let info = self.js_api(
            &format!("CONSUMER.INFO.{}.{}", watch.stream, watch.consumer),
            &json!({}),
        )?;
        let sent = info
            .pointer("/delivered/consumer_seq")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        watch.deliveries.server_sent(sent)
    }
}

/// The consumer sequence of a delivery: `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`,
/// or the longer form with domain and account hash in front.
pub(crate) fn consumer_seq(reply: &str) -> Option<u64> {
    let t: Vec<&str> = reply.split('.').collect();
    let base = if t.len() == 9 { 4 } else { 6 };
    t.get(base + 2)?.parse().ok()
}

/// How often a quiet watch hears from the server; three missed beats mean the watch is dead.
pub const WATCH_HEARTBEAT: Duration = Duration::from_secs(2);

/// A live watch on a bucket. Not `Clone`: one reader.
pub struct KvWatch {
    sub: crate::inbox::Inbox,
    stream: String,
    consumer: String,
    prefix_len: usize,
    caught_up: bool,
    last_seen: Instant,
    deliveries: Deliveries,
}

/// The consumer sequences a watch has received: each delivery must be the next one, and the server may
/// never have sent more than arrived. Anything else is a gap: records were lost.
#[derive(Debug, Default)]
struct Deliveries {
    received: u64,
}

impl Deliveries {
    /// A delivery with consumer sequence `seq` arrived.
    fn arrived(&mut self, seq: u64) -> Result<(), BusError> {
        if seq != self.received + 1 {
            return Err(BusError::Unavailable(format!(
                "watch skipped from delivery {} to {seq}",
                self.received
            )));
        }
        self.received = seq;
        Ok(())
    }

    /// The server says (idle heartbeat, consumer info) it has sent `sent` deliveries.
    fn server_sent(&self, sent: u64) -> Result<(), BusError> {
        if sent > self.received {
            return Err(BusError::Unavailable(format!(
                "watch consumer sent {sent} records, {} arrived",
                self.received
            )));
        }
        Ok(())
    }
}

impl KvWatch {
    /// The next change, waiting at most `wait`. Errors when the watch has been silent for three heartbeats
    /// (server restarted, consumer gone) or skipped a delivery (the client dropped messages, or they were
    /// lost in a disconnect): re-create it from the last revision applied.
    pub fn next(&mut self, wait: Duration) -> Result<Option<KvEntry>, BusError> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.sub.next_timeout(left) {
                Ok(msg) => {
                    self.last_seen = Instant::now();
                    let status = msg.headers.as_ref().and_then(|h| h.get("Status")).cloned();
                    // An idle heartbeat names the last delivery the consumer made: later than ours
                    // means some never arrived.
                    let last_sent = msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Last-Consumer"))
                        .and_then(|v| v.parse::<u64>().ok());
                    if let Some(sent) = last_sent {
                        self.deliveries.server_sent(sent)?;
                    }
                    if status.is_some() || msg.reply.is_none() {
                        // Idle heartbeat or flow control: answer flow control, otherwise nothing to do.
                        if let (Some(reply), Some(_)) = (&msg.reply, &status) {
                            let _ = msg.respond(b"");
                            log::trace!("flow control answered on {reply}");
                        }
                        if Instant::now() >= deadline {
                            return Ok(None);
                        }
                        continue;
                    }
                    let Some(meta) = msg.reply.as_deref().and_then(crate::stream::AckMeta::parse)
                    else {
                        continue;
                    };
                    let seq = msg.reply.as_deref().and_then(consumer_seq).unwrap_or(0);
                    self.deliveries.arrived(seq)?;
                    if meta.pending == 0 {
                        self.caught_up = true;
                    }
                    let key = msg.subject.get(self.prefix_len..).unwrap_or("").to_string();
                    return Ok(Some(KvEntry {
                        key,
                        op: op_from_headers(msg.headers.as_ref()),
                        value: msg.data,
                        revision: meta.stream_seq,
                    }));
                }
                Err(_) => {
                    if self.last_seen.elapsed() > WATCH_HEARTBEAT * 3 {
                        return Err(BusError::Unavailable("watch went silent".into()));
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// True once every record that existed when the watch started has been delivered.
    pub fn caught_up(&self) -> bool {
        self.caught_up
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
    fn a_gap_in_the_deliveries_is_an_error() {
        let mut d = Deliveries::default();
        assert!(d.arrived(1).is_ok() && d.arrived(2).is_ok());
        assert!(
            d.server_sent(2).is_ok(),
            "heartbeat naming the last delivery"
        );
        assert!(
            d.server_sent(3).is_err(),
            "the server sent one that never arrived"
        );
        let skipped = d.arrived(4);
        assert!(
            skipped
                .as_ref()
                .is_err_and(|e| e.to_string().contains("skipped from delivery 2 to 4")),
            "{skipped:?}"
        );
        assert!(
            d.arrived(2).is_err(),
            "a repeat is not the next delivery either"
        );
        assert!(d.arrived(3).is_ok());
    }
}
