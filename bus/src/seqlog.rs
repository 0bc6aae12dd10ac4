//! Append-only streams read by sequence (the audit trail): the bounds of a stream and a batch of its
//! messages by sequence number, so a page costs one STREAM.INFO and one batch of MSG.GETs, whatever the
//! stream's size.

use crate::{parse_api_answer, Bus, BusError};
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
