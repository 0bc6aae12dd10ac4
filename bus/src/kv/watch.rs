//! A watch on a bucket: an ephemeral push consumer whose every delivery is checked against the one
//! before, so a gap, a silence or a consumer gone after a reconnect is an error the caller sees.

use super::{op_from_headers, stream_name, KvEntry};
use crate::{Bus, BusError};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

impl Bus {
    /// Starts watching every key of `bucket`: the last record of each key first (from `after_seq + 1` when
    /// resuming), then every change.
    ///
    /// A replay's consumer delivers the last record per key; once it has, the watch moves to a consumer
    /// that starts after the last record delivered (see [`KvWatch::next`]): nats-server 2.9.10
    /// (Debian 12's) recounts a last-per-key consumer's pending records by walking every key of the
    /// bucket each time it delivers one while it is caught up, so a long-lived one costs the server
    /// O(keys) a record, and every reader of the bucket waits on it (fixed in later 2.9 releases).
    pub fn kv_watch(&self, bucket: &str, after_seq: Option<u64>) -> Result<KvWatch, BusError> {
        let start = after_seq.map(|seq| seq + 1);
        let created = self.watch_consumer(bucket, start)?;
        Ok(KvWatch {
            bus: self.clone(),
            bucket: bucket.to_string(),
            sub: created.sub,
            stream: stream_name(bucket),
            consumer: created.name,
            prefix_len: format!("$KV.{bucket}.").len(),
            caught_up: created.pending == 0,
            replaying: start.is_none(),
            last_seq: after_seq.unwrap_or(0),
            last_seen: Instant::now(),
            deliveries: Deliveries::default(),
        })
    }

    /// Creates a watch's consumer and the inbox it pushes to: from `start` (a stream sequence) on, or,
    /// without one, the last record of each key first.
    fn watch_consumer(&self, bucket: &str, start: Option<u64>) -> Result<Created, BusError> {
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
        match start {
            Some(seq) => {
                config["deliver_policy"] = json!("by_start_sequence");
                config["opt_start_seq"] = json!(seq);
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
        let name = created
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| BusError::Protocol("consumer created without a name".into()))?
            .to_string();
        Ok(Created { sub, name, pending })
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

/// A watch consumer just created.
struct Created {
    sub: crate::inbox::Inbox,
    name: String,
    pending: u64,
}

/// A live watch on a bucket. Not `Clone`: one reader.
pub struct KvWatch {
    bus: Bus,
    bucket: String,
    sub: crate::inbox::Inbox,
    stream: String,
    consumer: String,
    prefix_len: usize,
    caught_up: bool,
    /// The consumer delivers the last record per key (a replay), not every record from a sequence on;
    /// once `caught_up`, the watch moves to a consumer from `last_seq + 1` before reading on.
    replaying: bool,
    /// The stream sequence of the last record handed out (or resumed after).
    last_seq: u64,
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
        if self.replaying && self.caught_up {
            self.leave_replay()?;
        }
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
                    self.last_seq = meta.stream_seq;
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

    /// Replaces the replay's consumer by one that delivers every record after the last one handed out.
    /// What the old one had pushed and was not read yet is dropped with its inbox: the new one sends
    /// it again, in order, from the next sequence.
    fn leave_replay(&mut self) -> Result<(), BusError> {
        let created = self
            .bus
            .watch_consumer(&self.bucket, Some(self.last_seq + 1))?;
        let old = std::mem::replace(&mut self.consumer, created.name);
        self.sub = created.sub;
        self.replaying = false;
        self.deliveries = Deliveries::default();
        self.last_seen = Instant::now();
        // Without its inbox the old consumer has no interest and the server drops it after
        // `inactive_threshold`; deleting it now frees it at once.
        if let Err(e) = self.bus.js_api(
            &format!("CONSUMER.DELETE.{}.{old}", self.stream),
            &json!({}),
        ) {
            log::debug!(
                "watch on {}: replay consumer {old} not deleted: {e}",
                self.bucket
            );
        }
        log::debug!(
            "watch on {}: replay done, following from sequence {}",
            self.bucket,
            self.last_seq + 1
        );
        Ok(())
    }

    /// True once every record that existed when the watch started has been delivered.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }
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
