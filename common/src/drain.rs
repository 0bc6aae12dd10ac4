//! Drain and undrain of a worker (`POST /job/workers/{hostname}/drain|undrain`): the record kept per
//! host (`drain.{host}` in the drain bucket, which has no TTL, so it lasts until undrain across any
//! downtime or restart of the worker), its bounded event
//! list, and the one rule for the state a worker shows. Pure.

use serde::{Deserialize, Serialize};

/// Most events a record keeps (the oldest go first).
pub const EVENTS_MAX: usize = 50;
pub const DRAIN: &str = "drain";
pub const CORDONED: &str = "cordoned";
pub const UNDRAIN: &str = "undrain";

/// What `/job/workers` shows of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Takes jobs.
    #[default]
    Ready,
    /// Takes nothing new; still runs what it had.
    Draining,
    /// Drained: runs nothing and takes nothing until undrained.
    Cordoned,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Ready => "ready",
            WorkerState::Draining => "draining",
            WorkerState::Cordoned => "cordoned",
        }
    }
}

/// One entry of a worker's drain timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainEvent {
    /// `drain`, `cordoned` or `undrain`.
    pub event: String,
    /// The user (token `sub`) for drain and undrain; the worker's hostname for cordoned.
    pub by: String,
    /// RFC 3339.
    pub timestamp: String,
}

/// `drain.{host}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrainRecord {
    /// Asked to drain (and not undrained since).
    pub drain: bool,
    #[serde(default)]
    pub events: Vec<DrainEvent>,
}

impl DrainRecord {
    /// Appends `event`, keeping at most [`EVENTS_MAX`].
    pub fn push(&mut self, event: DrainEvent) {
        self.events.push(event);
        let over = self.events.len().saturating_sub(EVENTS_MAX);
        self.events.drain(..over);
    }

    /// Whether the worker already recorded that it is cordoned since the last drain.
    pub fn cordoned_recorded(&self) -> bool {
        self.events
            .iter()
            .rev()
            .find(|e| e.event == DRAIN || e.event == CORDONED || e.event == UNDRAIN)
            .is_some_and(|e| e.event == CORDONED)
    }
}

/// The rule: not drained is ready; drained is draining while it still runs (or is being handed) a
/// job, cordoned once it runs none.
pub fn state(drain: bool, busy: usize) -> WorkerState {
    match (drain, busy) {
        (false, _) => WorkerState::Ready,
        (true, 0) => WorkerState::Cordoned,
        (true, _) => WorkerState::Draining,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str) -> DrainEvent {
        DrainEvent {
            event: name.into(),
            by: "alice".into(),
            timestamp: "t".into(),
        }
    }

    #[test]
    fn states() {
        assert_eq!(state(false, 3), WorkerState::Ready);
        assert_eq!(state(true, 1), WorkerState::Draining);
        assert_eq!(state(true, 0), WorkerState::Cordoned);
        assert_eq!(
            serde_json::to_value(WorkerState::Cordoned).ok(),
            Some(serde_json::json!("cordoned"))
        );
    }

    #[test]
    fn events_are_bounded_and_cordoned_is_recorded_once_per_drain() {
        let mut r = DrainRecord::default();
        assert!(!r.cordoned_recorded());
        r.push(event(DRAIN));
        assert!(!r.cordoned_recorded());
        r.push(event(CORDONED));
        assert!(r.cordoned_recorded());
        r.push(event(UNDRAIN));
        r.push(event(DRAIN));
        assert!(!r.cordoned_recorded(), "a new drain needs a new cordoned");
        for _ in 0..EVENTS_MAX * 2 {
            r.push(event(DRAIN));
        }
        assert_eq!(r.events.len(), EVENTS_MAX);
    }
}
