//! A watch on a bucket: an ephemeral push consumer whose every delivery is checked against the one
//! before, so a gap, a silence or a consumer gone after a reconnect is an error the caller sees.

use super::{op_from_headers, stream_name, KvEntry};
use crate::stream::AckMeta;
use crate::{Bus, BusError, Message};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

impl Bus {
    /// Starts watching every key of `bucket`: the last record of each key first (from `after_seq + 1` when
    /// resuming), then every change; [`KvWatch::next`] hands each record out. A bucket keeps one record
    /// a key: a change replaced by its key's next one before the watch read it is gone and skipped, so
    /// a watch that falls behind sees each key's last record, in order, not every change.
    ///
    /// A replay's consumer delivers the last record per key; once it has, the watch moves to a consumer
    /// that starts after the last record delivered (see [`KvWatch::next`]): nats-server 2.9.10
    /// (Debian 12's) recounts a last-per-key consumer's pending records by walking every key of the
    /// bucket each time it delivers one while it is caught up, so a long-lived one costs the server
    /// O(keys) a record, and every reader of the bucket waits on it (fixed in later 2.9 releases).
    pub fn kv_watch(&self, bucket: &str, after_seq: Option<u64>) -> Result<KvWatch, BusError> {
        self.start_watch(bucket, after_seq, None)
    }

    /// [`Bus::kv_watch`] whose records go to `apply` instead of out of [`KvWatch::next`]. Past the
    /// replay, the connection's reading thread applies each record as it arrives (`may_wait` false),
    /// which saves waking the watch's own thread for it; whatever it cannot apply at once (`apply`
    /// answered false, a record out of turn, a heartbeat, flow control) it queues for that thread, which
    /// applies it in order (`may_wait` true) when it calls `next`. Records are applied one at a time, in
    /// the stream's order, and none after the watch is dropped.
    pub fn kv_watch_applying(
        &self,
        bucket: &str,
        after_seq: Option<u64>,
        apply: Apply,
    ) -> Result<KvWatch, BusError> {
        self.start_watch(bucket, after_seq, Some(apply))
    }

    fn start_watch(
        &self,
        bucket: &str,
        after_seq: Option<u64>,
        apply: Option<Apply>,
    ) -> Result<KvWatch, BusError> {
        let start = after_seq.map(|seq| seq + 1);
        let prefix_len = format!("$KV.{bucket}.").len();
        let follow = Arc::new(Mutex::new(Follow {
            deliveries: Deliveries::default(),
            last_seq: after_seq.unwrap_or(0),
            caught_up: false,
            last_seen: Instant::now(),
            inline: None,
            apply,
        }));
        if start.is_some() {
            // A replay goes through the queue, paced by flow control: applied inline only from here.
            lock(&follow).apply_inline(0);
        }
        let created = self.watch_consumer(bucket, start, Inline::new(&follow, 0, prefix_len))?;
        lock(&follow).caught_up |= created.pending == 0;
        Ok(KvWatch {
            bus: self.clone(),
            bucket: bucket.to_string(),
            sub: created.sub,
            stream: stream_name(bucket),
            consumer: created.name,
            prefix_len,
            replaying: start.is_none(),
            generation: 0,
            follow,
        })
    }

    /// Creates a watch's consumer and the inbox it pushes to: from `start` (a stream sequence) on, or,
    /// without one, the last record of each key first.
    fn watch_consumer(
        &self,
        bucket: &str,
        start: Option<u64>,
        inline: Inline,
    ) -> Result<Created, BusError> {
        let inbox = self.new_inbox();
        let sub = self.inbox(&inbox, move |msg| inline.take(msg))?;
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
        lock(&watch.follow).deliveries.server_sent(sent)
    }
}

/// How often a quiet watch hears from the server; three missed beats mean the watch is dead.
pub const WATCH_HEARTBEAT: Duration = Duration::from_secs(2);

/// What an applying watch does with a record ([`Bus::kv_watch_applying`]): applies it and answers
/// true; or, when `may_wait` is false and applying it would mean waiting (for a lock another thread
/// holds), answers false and leaves it (the watch's own thread calls again with `may_wait` true). It
/// runs on the connection's reading thread: it must never wait for anything NATS delivers.
pub type Apply = Box<dyn FnMut(&KvEntry, bool) -> bool + Send>;

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
    /// The consumer delivers the last record per key (a replay), not every record from a sequence on;
    /// once caught up, the watch moves to a consumer from `last_seq + 1` before reading on.
    replaying: bool,
    /// Counts the watch's consumers (its inboxes): a delivery is applied on the reading thread only
    /// when it comes from the consumer `follow.inline` names.
    generation: u64,
    follow: Arc<Mutex<Follow>>,
}

/// Where a watch stands, shared by its own thread and the reading thread's handler: every record is
/// counted and applied under this lock, so the two never apply out of turn.
struct Follow {
    deliveries: Deliveries,
    /// The stream sequence of the last record handed out or applied (or resumed after).
    last_seq: u64,
    /// Every record that existed when the watch started has been delivered.
    caught_up: bool,
    last_seen: Instant,
    /// The consumer (its generation) whose records the reading thread may apply; `None` while
    /// replaying, for a watch that hands records out, and once the watch is dropped.
    inline: Option<u64>,
    apply: Option<Apply>,
}

fn lock(follow: &Mutex<Follow>) -> MutexGuard<'_, Follow> {
    follow.lock().unwrap_or_else(|p| p.into_inner())
}

impl Follow {
    /// Lets the reading thread apply the records of consumer `generation` (if there is an applier).
    fn apply_inline(&mut self, generation: u64) {
        self.inline = self.apply.is_some().then_some(generation);
    }

    /// Counts a record delivery (its sequences from the reply subject).
    fn arrived(&mut self, meta: &AckMeta) -> Result<(), BusError> {
        self.deliveries.arrived(meta.consumer_seq)?;
        if meta.pending == 0 {
            self.caught_up = true;
        }
        self.last_seq = meta.stream_seq;
        self.last_seen = Instant::now();
        Ok(())
    }
}

/// What a record delivery's reply subject says (`None` for a heartbeat or flow control: those carry a
/// status, and no reply subject or no ack one).
fn record_meta(msg: &Message) -> Option<AckMeta> {
    if msg
        .headers
        .as_ref()
        .is_some_and(|h| h.get("Status").is_some())
    {
        return None;
    }
    AckMeta::parse(msg.reply.as_deref()?)
}

/// The record a delivery carries; takes its payload.
fn entry(msg: &mut Message, prefix_len: usize, revision: u64) -> KvEntry {
    KvEntry {
        key: msg.subject.get(prefix_len..).unwrap_or("").to_string(),
        op: op_from_headers(msg.headers.as_ref()),
        value: std::mem::take(&mut msg.data),
        revision,
    }
}

/// The reading thread's side of one of a watch's consumers.
struct Inline {
    follow: Arc<Mutex<Follow>>,
    generation: u64,
    prefix_len: usize,
}

impl Inline {
    fn new(follow: &Arc<Mutex<Follow>>, generation: u64, prefix_len: usize) -> Inline {
        Inline {
            follow: follow.clone(),
            generation,
            prefix_len,
        }
    }

    /// Applies `msg` if it is the next record of the consumer the watch follows and nothing has to
    /// wait for it; otherwise gives it back, to be queued for the watch's thread. A record queued
    /// before it (out of turn, or the lock busy) keeps every later one out of turn until that thread
    /// has applied it, so the order holds.
    fn take(&self, mut msg: Message) -> Option<Message> {
        let Ok(mut f) = self.follow.try_lock() else {
            return Some(msg);
        };
        if f.inline != Some(self.generation) {
            return Some(msg);
        }
        let Some(meta) = record_meta(&msg) else {
            return Some(msg);
        };
        if meta.consumer_seq != f.deliveries.received + 1 {
            return Some(msg);
        }
        let entry = entry(&mut msg, self.prefix_len, meta.stream_seq);
        let applied = f.apply.as_mut().is_some_and(|apply| apply(&entry, false));
        if !applied {
            msg.data = entry.value;
            return Some(msg);
        }
        // Its turn was checked above.
        let _ = f.arrived(&meta);
        None
    }
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
    /// The next change, waiting at most `wait`; for an applying watch ([`Bus::kv_watch_applying`])
    /// the records the reading thread left are applied here, one a call, and `None` is returned.
    /// Errors when the watch has been silent for three heartbeats (server restarted, consumer gone)
    /// or skipped a delivery (the client dropped messages, or they were lost in a disconnect):
    /// re-create it from the last revision applied.
    pub fn next(&mut self, wait: Duration) -> Result<Option<KvEntry>, BusError> {
        if self.replaying && lock(&self.follow).caught_up {
            self.leave_replay()?;
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(mut msg) = self.sub.next_timeout(left) else {
                let f = lock(&self.follow);
                if f.last_seen.elapsed() > WATCH_HEARTBEAT * 3 {
                    return Err(BusError::Unavailable("watch went silent".into()));
                }
                return Ok(None);
            };
            let mut f = lock(&self.follow);
            let Some(meta) = record_meta(&msg) else {
                f.last_seen = Instant::now();
                // An idle heartbeat names the last delivery the consumer made: later than ours
                // means some never arrived.
                let last_sent = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Last-Consumer"))
                    .and_then(|v| v.parse::<u64>().ok());
                if let Some(sent) = last_sent {
                    f.deliveries.server_sent(sent)?;
                }
                // Not held for a publish: the reading thread finds it free and applies records itself.
                drop(f);
                // Flow control (a status and a reply subject) is answered: we have read up to here.
                let status = msg
                    .headers
                    .as_ref()
                    .is_some_and(|h| h.get("Status").is_some());
                if let (Some(reply), true) = (&msg.reply, status) {
                    let _ = msg.respond(b"");
                    log::trace!("flow control answered on {reply}");
                }
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                continue;
            };
            f.arrived(&meta)?;
            let entry = entry(&mut msg, self.prefix_len, meta.stream_seq);
            return Ok(match f.apply.as_mut() {
                Some(apply) => {
                    apply(&entry, true);
                    None
                }
                None => Some(entry),
            });
        }
    }

    /// Replaces the replay's consumer by one that delivers every record after the last one handed out.
    /// What the old one had pushed and was not read yet is dropped with its inbox: the new one sends
    /// it again, in order, from the next sequence.
    fn leave_replay(&mut self) -> Result<(), BusError> {
        let generation = self.generation + 1;
        let from = lock(&self.follow).last_seq + 1;
        let created = self.bus.watch_consumer(
            &self.bucket,
            Some(from),
            Inline::new(&self.follow, generation, self.prefix_len),
        )?;
        let old = std::mem::replace(&mut self.consumer, created.name);
        self.sub = created.sub;
        self.generation = generation;
        self.replaying = false;
        {
            // The new consumer's first deliveries were queued (not yet its turn); counting starts
            // over for it, and the reading thread may apply its records from now on.
            let mut f = lock(&self.follow);
            f.deliveries = Deliveries::default();
            f.last_seen = Instant::now();
            f.apply_inline(generation);
        }
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
            "watch on {}: replay done, following from sequence {from}",
            self.bucket
        );
        Ok(())
    }

    /// True once every record that existed when the watch started has been delivered.
    pub fn caught_up(&self) -> bool {
        lock(&self.follow).caught_up
    }
}

impl Drop for KvWatch {
    /// No record is applied once the watch is gone (its owner may be re-creating it from the last
    /// revision applied), though a delivery may still reach the handler as the inbox goes.
    fn drop(&mut self) {
        lock(&self.follow).inline = None;
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
