//! Plain (core NATS) subscriptions, for live notices where a missed one is tolerable because the
//! caller also re-reads the state now and then (the worker's cancel listener). The client
//! re-subscribes by itself after a reconnect; what was published meanwhile is not delivered.

use crate::{Bus, BusError};
use std::time::Duration;

/// One subscription; unsubscribes when dropped.
pub struct Subscription {
    sub: nats::Subscription,
}

impl Bus {
    /// Subscribes to `subject` (wildcards allowed).
    pub fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        self.check_connected()?;
        let sub = self
            .nc()
            .subscribe(subject)
            .map_err(|e| BusError::Unavailable(format!("subscribe {subject}: {e}")))?;
        Ok(Subscription { sub })
    }
}

impl Subscription {
    /// The subject of the next message, or `None` when none came within `wait`.
    pub fn next_subject(&self, wait: Duration) -> Option<String> {
        self.sub.next_timeout(wait).ok().map(|m| m.subject)
    }
}
