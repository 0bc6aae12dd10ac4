//! Requests and their answers: one wildcard reply subscription and a table of waiting callers, so a
//! request costs one publish and no SUB/UNSUB, and a flusher thread that sends publishes at once.

use crate::{Bus, BusError, Inner, Message};
use nats::header::HeaderMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
// std's channels, not crossbeam's: a crossbeam receiver about to block first calls `sched_yield` a few
// times, and on a busy host each of those is a context switch (a quarter of the API's CPU under load
// went there); std's spins briefly and then sleeps on a futex.
use std::sync::mpsc::{sync_channel as bounded, Receiver, SyncSender as Sender};
use std::sync::Arc;
use std::time::Duration;

/// Most requests one [`Bus::request_many`] call sends at once.
pub const BATCH_MAX: usize = 256;

impl Bus {
    /// Sends buffered publishes now rather than after the crate's 5 ms delay.
    pub(crate) fn kick_flush(&self) {
        // A full channel means a flush is already due and will carry this publish too.
        let _ = self.inner.flush_kick.try_send(());
    }

    /// Publishes without waiting for an answer (acks to JetStream), flushed at once.
    pub fn publish(&self, subject: &str, payload: &[u8]) -> Result<(), BusError> {
        self.check_connected()?;
        self.nc()
            .publish(subject, payload)
            .map_err(|e| BusError::Unavailable(format!("publish {subject}: {e}")))?;
        self.kick_flush();
        Ok(())
    }

    /// One request with the configured timeout.
    pub fn request(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> Result<Message, BusError> {
        let mut out = self.request_many(&[(subject, headers, payload)]);
        out.pop()
            .unwrap_or_else(|| Err(BusError::Protocol("no answer slot".into())))
    }

    /// Sends several requests at once (one flush) and collects every answer, each within the
    /// configured timeout from now. At most [`BATCH_MAX`] per call; answers come in request order.
    pub fn request_many(
        &self,
        requests: &[(&str, Option<&HeaderMap>, &[u8])],
    ) -> Vec<Result<Message, BusError>> {
        if requests.len() > BATCH_MAX {
            let mut out = Vec::with_capacity(requests.len());
            for chunk in requests.chunks(BATCH_MAX) {
                out.extend(self.request_many(chunk));
            }
            return out;
        }
        if let Err(e) = self.check_connected() {
            return requests.iter().map(|_| Err(e.clone())).collect();
        }
        let mut slots: Vec<Result<(u64, Receiver<Message>), BusError>> =
            Vec::with_capacity(requests.len());
        for (subject, headers, payload) in requests {
            let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = bounded(1);
            self.waiting().insert(token, tx);
            let reply = format!("{}.{token}", self.inner.reply_prefix);
            let sent =
                self.nc()
                    .publish_with_reply_or_headers(subject, Some(&reply), *headers, payload);
            slots.push(match sent {
                Ok(()) => Ok((token, rx)),
                Err(e) => {
                    self.waiting().remove(&token);
                    Err(BusError::Unavailable(format!("publish {subject}: {e}")))
                }
            });
        }
        self.kick_flush();
        let sent_at = std::time::Instant::now();
        let deadline = sent_at + self.inner.request_timeout;
        let answers = slots
            .into_iter()
            .zip(requests)
            .map(|(slot, (subject, _, _))| {
                let (token, rx) = slot?;
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let answer = rx.recv_timeout(left);
                self.waiting().remove(&token);
                let msg = answer.map_err(|_| {
                    BusError::Unavailable(format!("no answer from {subject} in time"))
                })?;
                if msg.is_no_responders() {
                    return Err(BusError::Unavailable(format!("no responders on {subject}")));
                }
                Ok(msg)
            })
            .collect();
        if let Some(observe) = REQUEST_OBSERVER.get() {
            observe(sent_at.elapsed());
        }
        answers
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Sender<Message>>> {
        self.inner
            .waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A JetStream API call: `$JS.API.{suffix}` with a JSON body; JetStream errors become [`BusError::Api`].
    pub fn js_api(
        &self,
        suffix: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, BusError> {
        let payload = serde_json::to_vec(body).map_err(|e| BusError::Protocol(e.to_string()))?;
        let msg = self.request(&format!("$JS.API.{suffix}"), None, &payload)?;
        parse_api_answer(&msg.data)
    }
}

/// Turns a JetStream API answer into its JSON, or its `error` object into [`BusError::Api`].
pub(crate) fn parse_api_answer(data: &[u8]) -> Result<serde_json::Value, BusError> {
    let v: serde_json::Value = serde_json::from_slice(data)
        .map_err(|e| BusError::Protocol(format!("bad JetStream JSON: {e}")))?;
    if let Some(err) = v.get("error") {
        return Err(BusError::classify(
            err.get("code").and_then(|c| c.as_u64()).unwrap_or(0) as u16,
            err.get("err_code").and_then(|c| c.as_u64()).unwrap_or(0) as u32,
            err.get("description")
                .and_then(|d| d.as_str())
                .unwrap_or("unknown")
                .to_string(),
        ));
    }
    Ok(v)
}

/// Hands each reply to the caller waiting on its token; replies nobody waits for (timed out) are dropped.
pub(crate) fn route_replies(replies: nats::Subscription, inner: std::sync::Weak<Inner>) {
    for msg in replies.iter() {
        let Some(inner) = inner.upgrade() else { return };
        let token = msg
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse::<u64>().ok());
        let Some(token) = token else { continue };
        let waiter = inner
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token);
        if let Some(tx) = waiter {
            let _ = tx.try_send(msg);
        }
    }
}

/// Flushes on demand. A flush is a PING/PONG round trip that also writes out whatever is buffered;
/// kicks that arrive meanwhile coalesce into one more flush.
pub(crate) fn flusher(
    nc: nats::Connection,
    connected: Arc<AtomicBool>,
    kicks: Receiver<()>,
    timeout: Duration,
) {
    while kicks.recv().is_ok() {
        if connected.load(Ordering::SeqCst) {
            if let Err(e) = nc.flush_timeout(timeout) {
                log::debug!("flush: {e}");
            }
        }
    }
}

static REQUEST_OBSERVER: std::sync::OnceLock<fn(Duration)> = std::sync::OnceLock::new();

/// Sets the function told how long each NATS round trip (one request, or one batch sent at once) took,
/// for a daemon's metrics. Once per process; later calls are ignored.
pub fn observe_requests(observe: fn(Duration)) {
    let _ = REQUEST_OBSERVER.set(observe);
}

/// Builds a header map from pairs.
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.to_string());
    }
    h
}
