//! Several JetStream writes sent at once and acked each on its own: one flush and one wait for the
//! lot instead of a round trip each. The server stores writes to one stream in the order they were
//! sent; writes to different streams (a KV record and a notification) may be stored in either order,
//! so a reader of one must not count on the other being there yet.

use crate::kv::{check_value, pub_ack_seq, subject};
use crate::{headers, Bus, BusError};
use nats::header::HeaderMap;

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

impl Bus {
    /// Sends `writes` at once and waits for every ack (within the request timeout): the revision or
    /// stream sequence of each, in order. A KV value too large to store fails the whole call before
    /// anything is sent.
    pub fn write_many(&self, writes: &[Write<'_>]) -> Vec<Result<u64, BusError>> {
        for w in writes {
            if let Write::KvCreate { key, value, .. } | Write::KvPut { key, value, .. } = w {
                if let Err(e) = check_value(key, value) {
                    return writes.iter().map(|_| Err(e.clone())).collect();
                }
            }
        }
        // Each write's subject and headers: a create only if the key's last sequence is 0 (never
        // written), a publish de-duplicated by its id (docs/nats.md, crate fact 9).
        let parts: Vec<(String, Option<HeaderMap>)> = writes
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
            .collect();
        let requests: Vec<_> = writes
            .iter()
            .zip(&parts)
            .map(|(w, (subject, h))| {
                let body = match w {
                    Write::KvCreate { value, .. } | Write::KvPut { value, .. } => *value,
                    Write::Publish { payload, .. } => *payload,
                };
                (subject.as_str(), h.as_ref(), body)
            })
            .collect();
        self.request_many(&requests)
            .into_iter()
            .map(|answer| pub_ack_seq(&answer?.data))
            .collect()
    }

    /// One write, acked ([`Bus::write_many`] of one).
    pub(crate) fn write_one(&self, write: Write<'_>) -> Result<u64, BusError> {
        self.write_many(&[write])
            .pop()
            .unwrap_or_else(|| Err(BusError::Protocol("no answer slot".into())))
    }
}
