//! Append-only streams read by sequence (the audit trail): the bounds of a stream and a batch of its
//! messages by sequence number, so a page costs one STREAM.INFO and a few batches of MSG.GETs, whatever
//! the stream's size; and an append that only lands after a given last message (compare-and-set on the
//! stream's last sequence), so a writer can number what it appends without a race with another writer.

use crate::{headers, parse_api_answer, Bus, BusError};
use base64::Engine as _;
use serde_json::{json, Value};

/// What a stream holds now: its first and last sequence and its message count (0 when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBounds {
    pub first_seq: u64,
    pub last_seq: u64,
    pub messages: u64,
}

impl Bus {
    pub fn stream_bounds(&self, name: &str) -> Result<StreamBounds, BusError> {
        let info = self.js_api(&format!("STREAM.INFO.{name}"), &json!({}))?;
        let num = |field: &str| {
            info.pointer(&format!("/state/{field}"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        Ok(StreamBounds {
            first_seq: num("first_seq"),
            last_seq: num("last_seq"),
            messages: num("messages"),
        })
    }

    /// Publishes `payload` to `subject` (stored by a stream) only if the stream's last sequence is still
    /// `last_seq` (`Nats-Expected-Last-Sequence`), or for `last_seq` 0 only if `subject` holds no message
    /// yet (`Nats-Expected-Last-Subject-Sequence: 0`: nats-server takes an expected last sequence of 0
    /// as no check at all): `Conflict` when another message came first. With `Nats-Msg-Id` a message
    /// already stored within the stream's duplicate window is not stored again (`true`: a duplicate;
    /// nats-server 2.15 checks the sequence first, so a stale re-send there is a `Conflict`:
    /// docs/nats.md). Returns the stored sequence and whether it was such a duplicate.
    pub fn js_publish_after(
        &self,
        subject: &str,
        msg_id: &str,
        last_seq: u64,
        payload: &[u8],
    ) -> Result<(u64, bool), BusError> {
        let last = last_seq.to_string();
        let expect = if last_seq == 0 {
            ("Nats-Expected-Last-Subject-Sequence", "0")
        } else {
            ("Nats-Expected-Last-Sequence", last.as_str())
        };
        let h = headers(&[("Nats-Msg-Id", msg_id), expect]);
        let msg = self.request(subject, Some(&h), payload)?;
        let ack = parse_api_answer(&msg.data)?;
        let seq = ack
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| BusError::Protocol("PubAck without seq".into()))?;
        let duplicate = ack.get("duplicate").and_then(Value::as_bool) == Some(true);
        Ok((seq, duplicate))
    }

    /// The payloads at `seqs` of stream `name`, in order; `None` for a sequence no longer (or not) stored.
    pub fn stream_get_many(
        &self,
        name: &str,
        seqs: &[u64],
    ) -> Vec<Result<Option<Vec<u8>>, BusError>> {
        let api = format!("$JS.API.STREAM.MSG.GET.{name}");
        let bodies: Vec<Vec<u8>> = seqs
            .iter()
            .map(|seq| json!({ "seq": seq }).to_string().into_bytes())
            .collect();
        let requests: Vec<(&str, Option<&nats::header::HeaderMap>, &[u8])> = bodies
            .iter()
            .map(|body| (api.as_str(), None, body.as_slice()))
            .collect();
        self.request_many(&requests)
            .into_iter()
            .map(|answer| decode(&answer?.data))
            .collect()
    }
}

fn decode(data: &[u8]) -> Result<Option<Vec<u8>>, BusError> {
    let v = match parse_api_answer(data) {
        Ok(v) => v,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let text = v
        .pointer("/message/data")
        .and_then(Value::as_str)
        .unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(Some)
        .map_err(|e| BusError::Protocol(format!("bad base64 in a stream message: {e}")))
}
