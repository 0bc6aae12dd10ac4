//! Pulling from a durable consumer: one message at a time with a bounded long poll, and the acks a
//! pulled message is answered with.

use super::AckMeta;
use crate::sync::{queue, QueueRx, RecvError};
use crate::{Bus, BusError};
use serde_json::json;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Takes a pulled message on the connection's reading thread, or gives it back for the puller's own
/// caller. It must not block: the reading thread delivers everything else too.
pub type Taker = Arc<dyn Fn(JsMessage) -> Took + Send + Sync>;

/// What a [`Taker`] did with a message.
pub enum Took {
    /// Not taken: the caller of [`Puller::next_until`] gets it.
    Back(JsMessage),
    /// Taken. `again`: ask for the next message at once, from the reading thread, while the caller
    /// goes on waiting in [`Puller::next_until`] (one thread fewer woken a message); otherwise that
    /// pull is over and the caller is told so.
    Taken { again: bool },
}

/// What the reading thread leaves for the puller's caller.
enum Pulled {
    /// A status (no messages, request expired, ...) or anything else that came.
    Raw(nats::Message),
    /// A message the taker gave back.
    Ready(JsMessage),
    /// A message the taker took: that pull is over.
    Taken,
}

impl Bus {
    /// A puller for one durable pull consumer.
    pub fn puller(&self, stream: &str, durable: &str) -> Result<Puller, BusError> {
        self.puller_with(stream, durable, None)
    }

    /// A puller whose messages are first offered to `taker` on the connection's reading thread: a
    /// message taken there reaches whoever runs it with one thread wake-up instead of two (the
    /// reading thread waking the caller of [`Puller::next_until`], which wakes the taker).
    pub fn puller_with(
        &self,
        stream: &str,
        durable: &str,
        taker: Option<Taker>,
    ) -> Result<Puller, BusError> {
        let inbox = self.new_inbox();
        let (tx, rx) = queue();
        let pull = Arc::new(Pull {
            next_subject: format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"),
            inbox: inbox.clone(),
            renewable: Mutex::new(None),
        });
        // The handler holds the connection (to ack); it is dropped with the subscription.
        let (bus, renew) = (self.clone(), pull.clone());
        let sub = self
            .nc()
            .subscribe_inline(&inbox, move |msg| {
                let pulled = match (&taker, has_status(&msg)) {
                    (Some(taker), false) => match accept(&bus, msg) {
                        Some(m) => match taker(m) {
                            Took::Back(m) => Pulled::Ready(m),
                            Took::Taken { again: true } if renew.again(&bus) => return,
                            Took::Taken { .. } => Pulled::Taken,
                        },
                        None => return,
                    },
                    _ => Pulled::Raw(msg),
                };
                // The caller gone: it dropped the puller; a message it held is redelivered.
                let _ = tx.send(pulled);
            })
            .map_err(|e| BusError::Unavailable(format!("subscribe {inbox}: {e}")))?;
        Ok(Puller {
            bus: self.clone(),
            pull,
            _sub: sub,
            rx,
        })
    }
}

/// Where a puller's pulls go, and the pull its caller waits on, which the reading thread may ask again.
struct Pull {
    next_subject: String,
    inbox: String,
    /// While the caller waits in [`Puller::next_until`]: the pull's body and when it was last sent.
    renewable: Mutex<Option<(String, Instant)>>,
}

impl Pull {
    fn renewable(&self) -> MutexGuard<'_, Option<(String, Instant)>> {
        self.renewable.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, bus: &Bus, body: &str) -> Result<(), BusError> {
        bus.check_connected()?;
        bus.nc()
            .publish_request(&self.next_subject, &self.inbox, body.as_bytes())
            .map_err(|e| BusError::Unavailable(format!("pull: {e}")))?;
        bus.kick_flush();
        Ok(())
    }

    /// Sends the waiting caller's pull again (its last one was answered by a message the taker ran);
    /// false when the caller no longer waits or the pull cannot be sent (the caller then pulls itself).
    fn again(&self, bus: &Bus) -> bool {
        let mut renewable = self.renewable();
        let Some((body, sent)) = renewable.as_mut() else {
            return false;
        };
        match self.send(bus, body) {
            Ok(()) => {
                *sent = Instant::now();
                true
            }
            Err(e) => {
                log::debug!("pulling again from the reading thread: {e}");
                false
            }
        }
    }
}

fn has_status(msg: &nats::Message) -> bool {
    msg.headers
        .as_ref()
        .is_some_and(|h| h.get("Status").is_some())
}

/// How long past a pull's expiry its answer may take before the pull counts as unanswered.
pub const PULL_GRACE: Duration = Duration::from_millis(500);
/// How often a long poll looks at its caller's stop condition and at the connection.
pub const PULL_SLICE: Duration = Duration::from_secs(1);

/// Pulls one message at a time from a durable consumer, with a bounded long poll.
pub struct Puller {
    bus: Bus,
    pull: Arc<Pull>,
    /// Unsubscribed when dropped (the reading thread then drops the sender).
    _sub: nats::Subscription,
    /// One thread pulls.
    rx: QueueRx<Pulled>,
}

impl Puller {
    /// Waits up to `wait` for the next message. `Ok(None)` when none came (the server said so);
    /// `Err(Unavailable)` when not even that answer came within [`PULL_GRACE`] more.
    pub fn next(&self, wait: Duration) -> Result<Option<JsMessage>, BusError> {
        self.next_until(wait, false, &|| false)
    }

    /// [`Puller::next`] for a long poll: also `Ok(None)` within `PULL_SLICE` of `stop()` turning true,
    /// and after a reconnect (a restarted server forgot the pull: ask again rather than wait it out).
    /// With `renew`, while it waits, a message the taker runs with `again` renews the pull (the wait
    /// then counts from the renewal); one it runs otherwise ends the call with `Ok(None)`.
    /// A caller that stops for good closes the puller ([`Puller::close`]): its inbox's UNSUB ends the
    /// server's interest, and the server gives a waiting pull without interest nothing (checked on
    /// 2.9.10 and 2.15.1).
    pub fn next_until(
        &self,
        wait: Duration,
        renew: bool,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<JsMessage>, BusError> {
        // A message left over from an earlier pull that we stopped waiting for comes first.
        while let Some(pulled) = self.try_next() {
            if let Some(m) = self.held(pulled) {
                return Ok(Some(m));
            }
        }
        let expires = wait.as_nanos() as u64;
        let body = json!({ "batch": 1, "expires": expires }).to_string();
        let reconnects = self.bus.reconnects();
        {
            // Sent under the lock, so the reading thread renews only a pull that was sent.
            let mut renewable = self.pull.renewable();
            self.pull.send(&self.bus, &body)?;
            *renewable = renew.then(|| (body, Instant::now()));
        }
        let first_sent = Instant::now();
        // However the wait ends, the reading thread renews nothing more for it.
        let _stop_renewing = StopRenewing(&self.pull);
        loop {
            let sent = self.pull.renewable().as_ref().map(|(_, at)| *at);
            let deadline = sent.unwrap_or(first_sent) + wait + PULL_GRACE;
            let left = deadline.saturating_duration_since(Instant::now());
            if stop() || self.bus.reconnects() != reconnects {
                return Ok(None);
            }
            if left.is_zero() {
                // The server answers every pull when it expires (408): silence means nothing serves
                // the consumer, e.g. the node holding its only copy went down with the pull.
                return Err(BusError::Unavailable(format!(
                    "no answer to the pull on {} within {:?}",
                    self.pull.next_subject,
                    wait + PULL_GRACE
                )));
            }
            let msg = match self.rx.recv_timeout(left.min(PULL_SLICE)) {
                Ok(Pulled::Raw(msg)) => msg,
                Ok(Pulled::Ready(m)) => return Ok(Some(m)),
                // Running elsewhere already: this pull is over.
                Ok(Pulled::Taken) => return Ok(None),
                Err(RecvError::Timeout) => continue,
                // Unsubscribed (the connection closed): nothing more will come; never spin on it.
                Err(RecvError::Closed) => return Ok(None),
            };
            if let Some(status) = msg.headers.as_ref().and_then(|h| h.get("Status")) {
                match status.as_str() {
                    // 404 no messages, 408 request expired, 409 consumer deleted or limits: pull is over.
                    "404" | "408" => return Ok(None),
                    // No responders: the consumer (or JetStream) is gone; the caller re-creates it.
                    "503" => {
                        return Err(BusError::Api {
                            code: 404,
                            err_code: 0,
                            description: format!("no consumer answers {}", self.pull.next_subject),
                        })
                    }
                    "409" => {
                        return Err(BusError::Unavailable(format!(
                            "pull on {} refused: {}",
                            self.pull.next_subject,
                            msg.headers
                                .as_ref()
                                .and_then(|h| h.get("Description"))
                                .cloned()
                                .unwrap_or_default()
                        )))
                    }
                    _ => continue,
                }
            }
            if let Some(m) = accept(&self.bus, msg) {
                return Ok(Some(m));
            }
        }
    }

    fn try_next(&self) -> Option<Pulled> {
        self.rx.try_recv()
    }

    /// Stops pulling for good: whatever already arrived goes back at once (NAK), then the inbox is
    /// dropped, so the server delivers nothing more to a pull still waiting. A message the server sent
    /// in the instant before our UNSUB reached it is redelivered after `ack_wait`.
    pub fn close(self) {
        while let Some(pulled) = self.try_next() {
            if let Some(m) = self.held(pulled) {
                let _ = m.nak(Duration::ZERO);
            }
        }
    }

    /// The message a leftover delivery leaves this puller holding: none for a status (its pull is
    /// over) or a message the taker ran.
    fn held(&self, pulled: Pulled) -> Option<JsMessage> {
        match pulled {
            Pulled::Ready(m) => Some(m),
            Pulled::Raw(msg) if !has_status(&msg) => accept(&self.bus, msg),
            Pulled::Raw(_) | Pulled::Taken => None,
        }
    }
}

/// Ends a wait's renewals when the wait ends, however it ends.
struct StopRenewing<'a>(&'a Pull);

impl Drop for StopRenewing<'_> {
    fn drop(&mut self) {
        *self.0.renewable() = None;
    }
}

/// A consumer's delivery as a [`JsMessage`]; `None` for anything without JetStream's ack subject.
fn accept(bus: &Bus, msg: nats::Message) -> Option<JsMessage> {
    let reply = msg.reply.clone()?;
    let meta = AckMeta::parse(&reply)?;
    Some(JsMessage {
        bus: bus.clone(),
        subject: msg.subject,
        data: msg.data,
        reply,
        delivered: meta.delivered,
        stored_us: i64::try_from(meta.stored_ns / 1_000).unwrap_or(i64::MAX),
    })
}

/// A message from a pull consumer, acknowledged by hand.
pub struct JsMessage {
    bus: Bus,
    /// The subject it was published on (which target it went to).
    pub subject: String,
    pub data: Vec<u8>,
    reply: String,
    /// 1 on first delivery.
    pub delivered: u64,
    /// When the stream stored it (Unix µs, the server's clock).
    pub stored_us: i64,
}

impl JsMessage {
    /// Done: never redeliver.
    pub fn ack(&self) -> Result<(), BusError> {
        self.bus.publish(&self.reply, b"+ACK")
    }

    /// [`JsMessage::ack`] without a socket write of its own: it goes out with the connection's next write,
    /// within 5 ms. For the connection's reading thread (a job acked when its record's ack comes): under
    /// load the next pull or request carries it.
    pub fn ack_unflushed(&self) -> Result<(), BusError> {
        self.bus.publish_unflushed(&self.reply, b"+ACK")
    }

    /// Redeliver after `delay` (0.26 has no delayed NAK of its own: docs/nats.md, crate fact 5).
    pub fn nak(&self, delay: Duration) -> Result<(), BusError> {
        let body = format!("-NAK {{\"delay\": {}}}", delay.as_nanos());
        self.bus.publish(&self.reply, body.as_bytes())
    }

    /// Still working: restart the ack-wait clock.
    pub fn in_progress(&self) -> Result<(), BusError> {
        self.bus.publish(&self.reply, b"+WPI")
    }

    /// Never redeliver, and do not count as success.
    pub fn term(&self) -> Result<(), BusError> {
        self.bus.publish(&self.reply, b"+TERM")
    }

    /// The reply subject, a stable identity for this delivery.
    pub fn ack_subject(&self) -> &str {
        &self.reply
    }
}
