//! Several JetStream writes sent at once and acked each on its own: one flush and one wait for the
//! lot instead of a round trip each. The server stores writes to one stream in the order they were
//! sent; writes to different streams (a KV record and a notification) may be stored in either order,
//! so a reader of one must not count on the other being there yet.

use crate::kv::{subject, VALUE_BYTES_MAX};
use crate::{headers, parse_api_answer, Bus, BusError};
use serde_json::Value;

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
                if value.len() > VALUE_BYTES_MAX {
                    let e = BusError::TooLarge(format!(
                        "record {key} would be {} bytes, more than the {VALUE_BYTES_MAX} a KV value may hold",
                        value.len()
                    ));
                    return writes.iter().map(|_| Err(e.clone())).collect();
                }
            }
        }
        let create = headers(&[("Nats-Expected-Last-Subject-Sequence", "0")]);
        let ids: Vec<_> = writes
            .iter()
            .map(|w| match w {
                Write::Publish { msg_id, .. } => Some(headers(&[("Nats-Msg-Id", msg_id)])),
                _ => None,
            })
            .collect();
        let subjects: Vec<String> = writes
            .iter()
            .map(|w| match w {
                Write::KvCreate { bucket, key, .. } | Write::KvPut { bucket, key, .. } => {
                    subject(bucket, key)
                }
                Write::Publish { subject, .. } => subject.to_string(),
            })
            .collect();
        let requests: Vec<_> = writes
            .iter()
            .zip(&subjects)
            .zip(&ids)
            .map(|((w, subject), id)| match w {
                Write::KvCreate { value, .. } => (subject.as_str(), Some(&create), *value),
                Write::KvPut { value, .. } => (subject.as_str(), None, *value),
                Write::Publish { payload, .. } => (subject.as_str(), id.as_ref(), *payload),
            })
            .collect();
        self.request_many(&requests)
            .into_iter()
            .map(|answer| {
                let ack = parse_api_answer(&answer?.data)?;
                ack.get("seq")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| BusError::Protocol("PubAck without seq".into()))
            })
            .collect()
    }
}
