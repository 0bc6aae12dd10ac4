//! JetStream streams and consumers: idempotent creation, publishing with a PubAck, pull consumers with
//! bounded long polls, and acks by hand (docs/nats.md, crate facts 5 and 7: the crate's helpers lack `backoff`
//! and can silently fork or delete durables, so we create consumers explicitly and never bind).

use crate::{Bus, BusError};
use serde_json::{json, Value};
use std::time::Duration;

mod pull;

pub use pull::{JsMessage, Puller, Taker, Took};

/// The window in which a publish with a seen `Nats-Msg-Id` is dropped as a retry: 2 minutes, but never
/// longer than what the stream keeps (the server refuses a window over `max_age`, so a short
/// `nats.kv.ttl` or `nats.stream.max_age` would stop the layout being created); 0 = kept for ever.
pub(crate) fn duplicate_window_ns(max_age: Duration) -> u64 {
    const WINDOW: Duration = Duration::from_secs(120);
    let window = if max_age.is_zero() {
        WINDOW
    } else {
        WINDOW.min(max_age)
    };
    u64::try_from(window.as_nanos()).unwrap_or(u64::MAX)
}

/// The settings osapi uses for a stream (KV buckets included).
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub max_age: Duration,
    pub max_msgs: i64,
    pub max_bytes: i64,
    /// `file` or `memory`.
    pub storage: String,
    pub replicas: usize,
    /// `old` or `new`.
    pub discard: String,
    /// Most consumers; -1 leaves it to the server (since nats-server 2.15 that is 1,000, not unlimited).
    pub max_consumers: i64,
}

/// A durable pull consumer.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub durable: String,
    /// One subject, or several on nats-server 2.10+ (see [`crate::version_at_least`]).
    pub filters: Vec<String>,
    pub ack_wait: Duration,
    pub max_deliver: i64,
    pub back_off: Vec<Duration>,
    pub max_ack_pending: i64,
    /// Most pull requests waiting at once: one per worker that pulls from this consumer.
    pub max_waiting: i64,
    /// Copies in a cluster; 0: as many as the stream.
    pub replicas: usize,
}

/// A stream's consumer limit (as the server reports it: -1 or 0 mean the server's default) and use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerRoom {
    pub limit: i64,
    pub used: u64,
}

/// Delivery facts carried in a JetStream message's reply subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckMeta {
    pub delivered: u64,
    pub stream_seq: u64,
    /// The consumer's own count of its deliveries (a KV watch checks each follows the last).
    pub consumer_seq: u64,
    /// When the stream stored it (Unix ns, the server's clock).
    pub stored_ns: u64,
    pub pending: u64,
}

impl AckMeta {
    /// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` and the longer
    /// form with domain and account hash in front (12+ tokens).
    pub(crate) fn parse(reply: &str) -> Option<AckMeta> {
        // The tokens in an array (no allocation: this runs for every delivery); `count` is all of
        // them, the array keeps the first 12, past the last one read.
        let mut t = [""; 12];
        let mut count = 0;
        for token in reply.split('.') {
            if let Some(slot) = t.get_mut(count) {
                *slot = token;
            }
            count += 1;
        }
        if count < 9 || t[0] != "$JS" || t[1] != "ACK" {
            return None;
        }
        let base = if count == 9 { 4 } else { 6 };
        let num = |i: usize| t.get(i).and_then(|s| s.parse::<u64>().ok());
        Some(AckMeta {
            delivered: num(base)?,
            stream_seq: num(base + 1)?,
            consumer_seq: num(base + 2)?,
            stored_ns: num(base + 3)?,
            pending: num(base + 4)?,
        })
    }
}

impl Bus {
    /// Creates a stream, or updates an existing one to this config. Idempotent.
    pub(crate) fn stream_ensure_raw(&self, name: &str, body: &Value) -> Result<(), BusError> {
        match self.js_api(&format!("STREAM.CREATE.{name}"), body) {
            Ok(_) => Ok(()),
            // 10058: stream name already in use with a different configuration.
            Err(BusError::Api {
                err_code: 10058, ..
            }) => match self.js_api(&format!("STREAM.UPDATE.{name}"), body) {
                Ok(_) => Ok(()),
                Err(e @ BusError::Unavailable(_)) => Err(e),
                // nats-server 2.9 never changes a stream's consumer limit: apply the rest, keep that.
                Err(e) if e.to_string().contains("MaxConsumers") => {
                    let now = self.stream_consumers(name)?;
                    if now.limit <= 0 {
                        // No limit: on the servers that refuse the change (before 2.15), unlimited.
                        log::info!("stream {name} keeps no consumer limit ({e})");
                    } else {
                        log::warn!(
                            "stream {name} keeps its consumer limit of {} ({e}); to change it, \
                             re-create the stream",
                            now.limit
                        );
                    }
                    let mut body = body.clone();
                    body["max_consumers"] = json!(now.limit);
                    match self.js_api(&format!("STREAM.UPDATE.{name}"), &body) {
                        Ok(_) => Ok(()),
                        Err(e @ BusError::Unavailable(_)) => Err(e),
                        Err(e) => {
                            log::warn!(
                                "stream {name} exists with other settings that cannot change: {e}"
                            );
                            Ok(())
                        }
                    }
                }
                Err(e) => {
                    log::warn!("stream {name} exists with other settings that cannot change: {e}");
                    Ok(())
                }
            },
            Err(e) => Err(e),
        }
    }

    /// Creates (or updates) a stream over `subjects`.
    pub fn stream_ensure(
        &self,
        name: &str,
        subjects: &[String],
        cfg: &StreamConfig,
    ) -> Result<(), BusError> {
        let body = json!({
            "name": name,
            "subjects": subjects,
            "retention": "limits",
            "max_age": cfg.max_age.as_nanos() as u64,
            "max_msgs": cfg.max_msgs,
            "max_bytes": cfg.max_bytes,
            "storage": cfg.storage,
            "num_replicas": cfg.replicas,
            "discard": cfg.discard,
            "duplicate_window": duplicate_window_ns(cfg.max_age),
            "max_consumers": cfg.max_consumers,
        });
        self.stream_ensure_raw(name, &body)
    }

    /// A stream's consumer limit as the server applies it and how many consumers it holds now.
    pub fn stream_consumers(&self, name: &str) -> Result<ConsumerRoom, BusError> {
        let info = self.js_api(&format!("STREAM.INFO.{name}"), &json!({}))?;
        let num = |p: &str| info.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        Ok(ConsumerRoom {
            limit: num("/config/max_consumers"),
            used: u64::try_from(num("/state/consumer_count")).unwrap_or(0),
        })
    }

    /// How many messages a stream holds now.
    pub fn stream_messages(&self, name: &str) -> Result<u64, BusError> {
        let info = self.js_api(&format!("STREAM.INFO.{name}"), &json!({}))?;
        Ok(info
            .pointer("/state/messages")
            .and_then(Value::as_u64)
            .unwrap_or(0))
    }

    /// Removes message `seq` from stream `name` (its data left to be overwritten, not erased: cheaper).
    pub fn stream_msg_delete(&self, name: &str, seq: u64) -> Result<(), BusError> {
        self.js_api(
            &format!("STREAM.MSG.DELETE.{name}"),
            &json!({ "seq": seq, "no_erase": true }),
        )
        .map(|_| ())
    }

    /// Publishes to a stream and waits for its PubAck. `msg_id` de-duplicates a retried publish
    /// (docs/nats.md, crate fact 9). Returns the stream sequence.
    pub fn js_publish(&self, subject: &str, msg_id: &str, payload: &[u8]) -> Result<u64, BusError> {
        self.write_one(crate::Write::Publish {
            subject,
            msg_id,
            payload,
        })
    }

    /// Creates a durable pull consumer, or leaves an existing one with the same config as it is.
    pub fn consumer_ensure(&self, stream: &str, cfg: &ConsumerConfig) -> Result<(), BusError> {
        let mut config = json!({
            "durable_name": cfg.durable,
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "ack_wait": cfg.ack_wait.as_nanos() as u64,
            "max_deliver": cfg.max_deliver,
            "replay_policy": "instant",
            "max_ack_pending": cfg.max_ack_pending,
            "max_waiting": cfg.max_waiting,
        });
        if cfg.replicas > 0 {
            config["num_replicas"] = json!(cfg.replicas);
        }
        match cfg.filters.as_slice() {
            [one] => config["filter_subject"] = json!(one),
            several => config["filter_subjects"] = json!(several),
        }
        if !cfg.back_off.is_empty() {
            let steps: Vec<u64> = cfg.back_off.iter().map(|d| d.as_nanos() as u64).collect();
            config["backoff"] = json!(steps);
        }
        self.js_api(
            &format!("CONSUMER.DURABLE.CREATE.{stream}.{}", cfg.durable),
            &json!({ "stream_name": stream, "config": config }),
        )
        .map(|_| ())
    }

    /// Whether a durable consumer exists (`Ok(false)` when the server says it does not).
    pub fn consumer_exists(&self, stream: &str, durable: &str) -> Result<bool, BusError> {
        match self.js_api(&format!("CONSUMER.INFO.{stream}.{durable}"), &json!({})) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a durable consumer; one that does not exist counts as deleted.
    pub fn consumer_delete(&self, stream: &str, durable: &str) -> Result<(), BusError> {
        match self.js_api(&format!("CONSUMER.DELETE.{stream}.{durable}"), &json!({})) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duplicate_window_never_outlasts_the_stream() {
        let secs = |s| Duration::from_secs(s);
        assert_eq!(duplicate_window_ns(Duration::ZERO), 120_000_000_000);
        assert_eq!(duplicate_window_ns(secs(3600)), 120_000_000_000);
        assert_eq!(duplicate_window_ns(secs(4)), 4_000_000_000);
    }

    #[test]
    fn ack_meta_both_forms() {
        let short = "$JS.ACK.JOBS.w-any.3.17.9.1764392400000000000.2";
        assert_eq!(
            AckMeta::parse(short),
            Some(AckMeta {
                delivered: 3,
                stream_seq: 17,
                consumer_seq: 9,
                stored_ns: 1764392400000000000,
                pending: 2
            })
        );
        let long = "$JS.ACK.dom.acchash.JOBS.w-any.1.5.4.1764392400000000000.0.rand";
        assert_eq!(
            AckMeta::parse(long),
            Some(AckMeta {
                delivered: 1,
                stream_seq: 5,
                consumer_seq: 4,
                stored_ns: 1764392400000000000,
                pending: 0
            })
        );
        assert_eq!(AckMeta::parse("_INBOX.x"), None);
        assert_eq!(
            AckMeta::parse("$JS.ACK.JOBS.w-any.3.17.9.1764392400000000000"),
            None
        );
        assert_eq!(
            AckMeta::parse("$JS.ACK.JOBS.w-any.3.x.9.1764392400000000000.2"),
            None
        );
        // Tokens past the twelfth are not read.
        let longer = format!("{long}.more.and.more");
        assert_eq!(AckMeta::parse(&longer), AckMeta::parse(long));
    }
}
