//! Several JetStream writes sent at once and acked each on its own: one flush and one wait for the
//! lot instead of a round trip each. The server stores writes to one stream in the order they were
//! sent; writes to different streams (a KV record and a notification) may be stored in either order,
//! so a reader of one must not count on the other being there yet.

use crate::kv::{check_value, pub_ack_seq, subject};
use crate::request::{Sent, Watch};
use crate::{headers, Bus, BusError};
use nats::header::HeaderMap;
use std::time::Instant;

/// One write of [`Bus::write_many`].
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// A KV record only if the key was never written ([`Bus::kv_create`]).
    KvCreate {
        bucket: &'a str,
        key: &'a str,
        value: &'a [u8],
    },
    /// A KV record ([`Bus::kv_put`]).
    KvPut {
        bucket: &'a str,
        key: &'a str,
        value: &'a [u8],
    },
    /// A message to a stream, de-duplicated by `msg_id` ([`Bus::js_publish`]).
    Publish {
        subject: &'a str,
        msg_id: &'a str,
        payload: &'a [u8],
    },
}

/// Writes sent by [`Bus::send_writes`], their acks still to come.
pub struct PendingWrites(Sent);

impl PendingWrites {
    /// Whether the writes can no longer all be stored: an ack refused one (or one could not be sent),
    /// or acks are still missing at [`PendingWrites::deadline`]. [`PendingWrites::acks`] then says why.
    pub fn given_up(&self) -> bool {
        self.0.failed() || (Instant::now() >= self.deadline() && !self.0.complete())
    }

    /// When acks still missing stop being waited for (the request timeout after sending).
    pub fn deadline(&self) -> Instant {
        self.0.deadline()
    }

    /// The revision or stream sequence of each write, in order, as [`Bus::write_many`] answers;
    /// waits until [`PendingWrites::deadline`] for acks not in yet.
    pub fn acks(self) -> Vec<Result<u64, BusError>> {
        self.0
            .answers()
            .into_iter()
            .map(|answer| pub_ack_seq(&answer?.data))
            .collect()
    }
}

impl Bus {
    /// Sends `writes` at once and waits for every ack (within the request timeout): the revision or
    /// stream sequence of each, in order. A KV value too large to store fails the whole call before
    /// anything is sent.
    pub fn write_many(&self, writes: &[Write<'_>]) -> Vec<Result<u64, BusError>> {
        let parts = match write_parts(writes) {
            Ok(parts) => parts,
            Err(e) => return writes.iter().map(|_| Err(e.clone())).collect(),
        };
        self.request_many(&requests(writes, &parts))
            .into_iter()
            .map(|answer| pub_ack_seq(&answer?.data))
            .collect()
    }

    /// [`Bus::write_many`] without the wait: sends `writes` at once (at most [`crate::BATCH_MAX`]) and
    /// returns. `failed` runs on the connection's reading thread at the first ack that refuses a write,
    /// or at once when one could not be sent (after [`PendingWrites::given_up`] turned true); never
    /// when every write is stored. `stored`, when given, runs on that thread when the last ack is in
    /// and every write was stored; never when one was refused, nor for acks that come after
    /// [`PendingWrites::acks`] gave up on them. Both must be quick and must not wait for anything that
    /// thread delivers; either may run before this call returns. A caller that waits elsewhere (for
    /// what the writes start) is so woken only when they failed. A value too large fails before
    /// anything is sent.
    pub fn send_writes(
        &self,
        writes: &[Write<'_>],
        failed: Box<dyn Fn() + Send + Sync>,
        stored: Option<Box<dyn Fn() + Send + Sync>>,
    ) -> Result<PendingWrites, BusError> {
        if writes.len() > crate::BATCH_MAX {
            return Err(BusError::Protocol(format!(
                "{} writes sent at once, at most {}",
                writes.len(),
                crate::BATCH_MAX
            )));
        }
        let parts = write_parts(writes)?;
        let watch = Watch {
            accept: |msg| !msg.is_no_responders() && pub_ack_seq(&msg.data).is_ok(),
            failed,
            stored,
        };
        Ok(PendingWrites(
            self.send_many(&requests(writes, &parts), Some(watch)),
        ))
    }

    /// One write, acked ([`Bus::write_many`] of one).
    pub(crate) fn write_one(&self, write: Write<'_>) -> Result<u64, BusError> {
        self.write_many(&[write])
            .pop()
            .unwrap_or_else(|| Err(BusError::Protocol("no answer slot".into())))
    }
}

/// Each write's subject and headers: a create only if the key's last sequence is 0 (never written), a
/// publish de-duplicated by its id (docs/nats.md, crate fact 9). A KV value too large to store is an
/// error for the whole lot.
fn write_parts(writes: &[Write<'_>]) -> Result<Vec<(String, Option<HeaderMap>)>, BusError> {
    for w in writes {
        if let Write::KvCreate { key, value, .. } | Write::KvPut { key, value, .. } = w {
            check_value(key, value)?;
        }
    }
    Ok(writes
        .iter()
        .map(|w| match w {
            Write::KvCreate { bucket, key, .. } => (
                subject(bucket, key),
                Some(headers(&[("Nats-Expected-Last-Subject-Sequence", "0")])),
            ),
            Write::KvPut { bucket, key, .. } => (subject(bucket, key), None),
            Write::Publish {
                subject, msg_id, ..
            } => (
                subject.to_string(),
                Some(headers(&[("Nats-Msg-Id", msg_id)])),
            ),
        })
        .collect())
}

/// The requests that carry `writes` (subjects and headers from [`write_parts`]).
fn requests<'a>(
    writes: &[Write<'a>],
    parts: &'a [(String, Option<HeaderMap>)],
) -> Vec<(&'a str, Option<&'a HeaderMap>, &'a [u8])> {
    writes
        .iter()
        .zip(parts)
        .map(|(w, (subject, h))| {
            let body = match w {
                Write::KvCreate { value, .. } | Write::KvPut { value, .. } => *value,
                Write::Publish { payload, .. } => *payload,
            };
            (subject.as_str(), h.as_ref(), body)
        })
        .collect()
}
