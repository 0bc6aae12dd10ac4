//! A subscription whose messages the connection's reading thread puts straight into a queue
//! (vendor/nats, osapi patch 2; `sync.rs`), for the subscriptions a thread blocks on: KV watches
//! (pullers have their own, which can hand a job over on the reading thread: stream/pull.rs; a KV
//! watch may apply its records there: kv/watch.rs).
//!
//! The crate queues each message on a crossbeam channel instead, and a crossbeam receiver about to
//! block first calls `sched_yield` several times: on a busy host each of those is a context switch,
//! paid by every fetcher and watch once per message. The queue's receiver sleeps on a futex, and is
//! woken only when it sleeps, outside the queue's lock.

use crate::sync::{queue, QueueRx, RecvError};
use crate::{Bus, BusError, Message};
use std::time::Duration;

/// One subscription; unsubscribes when dropped (the reading thread then drops the sender, and a
/// waiting reader sees the channel closed).
pub(crate) struct Inbox {
    _sub: nats::Subscription,
    rx: QueueRx<Message>,
}

impl Inbox {
    /// The next message within `wait`: `TimedOut` when none came, another error kind once the
    /// subscription is gone (unsubscribed, connection closed), as the crate's `next_timeout`.
    pub(crate) fn next_timeout(&self, wait: Duration) -> std::io::Result<Message> {
        self.rx.recv_timeout(wait).map_err(|e| match e {
            RecvError::Timeout => std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
            RecvError::Closed => std::io::Error::other("unsubscribed"),
        })
    }
}

impl Bus {
    /// Subscribes to `subject`, delivering into an [`Inbox`] what `take`, called on the reading thread
    /// with each message, gives back (`Some` to queue them all); what it keeps is done with (a KV
    /// watch's records applied there: kv/watch.rs).
    pub(crate) fn inbox(
        &self,
        subject: &str,
        take: impl Fn(Message) -> Option<Message> + Send + Sync + 'static,
    ) -> Result<Inbox, BusError> {
        let (tx, rx) = queue();
        let sub = self
            .nc()
            .subscribe_inline(subject, move |msg| {
                if let Some(msg) = take(msg) {
                    // The reader gone: it dropped the inbox, nobody wants the message.
                    let _ = tx.send(msg);
                }
            })
            .map_err(|e| BusError::Unavailable(format!("subscribe {subject}: {e}")))?;
        Ok(Inbox { _sub: sub, rx })
    }
}
