//! How a job that ran ends on this host: the final state, carrying the answer (so a reader that sees
//! `completed` always has the result), then the notification settled: acked when done (when the
//! `completed` record's ack comes, on the connection's reading thread: `settling.rs`), nak'ed with
//! the back-off step for a retry, nak'ed for the last time when its deliveries are used up.

use super::{format_duration, settle, Job, Runner, RETRY_DEFAULT};
use crate::settling::Final;
use osapi_bus::{BusError, JsMessage, Write};
use osapi_common::job::{event, HostState};
use osapi_common::names::keys;
use osapi_common::status::HostStatus;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

impl Runner {
    /// The operation succeeded: the `completed` state with its data, sent; its ack settles the
    /// notification on the connection's reading thread (`settling.rs`), so this thread goes on to its
    /// next job at once. A result that cannot be stored (too large) fails the job instead.
    pub(super) fn complete(
        &self,
        job: &Job<'_>,
        msg: &Arc<JsMessage>,
        state: HostState,
        data: Value,
        took: String,
    ) {
        let mut done_state = state.clone();
        done_state
            .events
            .push(self.event(event::COMPLETED, format!("completed in {took}"), None));
        done_state.status = HostStatus::Completed;
        done_state.duration = Some(took.clone());
        done_state.response = self.answer(HostStatus::Completed, data, None);
        let key = keys::state(job.id, &self.hostname);
        let done = Final {
            id: job.id.to_string(),
            target: job.target.clone(),
            msg: msg.clone(),
            state,
            took: took.clone(),
        };
        let unsent = match self.state_record(done_state) {
            Ok(value) => self.settling.send(done, |refused, stored| {
                let write = Write::KvPut {
                    bucket: &self.names.bucket,
                    key: &key,
                    value: &value,
                };
                self.bus.send_writes(&[write], refused, Some(stored))
            }),
            Err(e) => Some((done, e)),
        };
        if let Some((done, e)) = unsent {
            return self.not_stored(done, Err(e));
        }
        log::info!(
            "job {} target {} on {}: completed in {took}",
            job.id,
            job.target,
            self.hostname
        );
    }

    /// Settles a job whose `completed` record is given up on or came through late (`settling.rs`):
    /// acked when it was stored after all; a record that cannot be stored fails the job; one refused
    /// for now (store full, NATS unavailable, no ack in time) is redelivered soon.
    pub fn not_stored(&self, done: Final, outcome: Result<u64, BusError>) {
        let job = Job {
            id: &done.id,
            target: done.target.clone(),
        };
        match outcome {
            Ok(_) => settle(&job, "ack", done.msg.ack()),
            Err(e) if !e.is_transient() => {
                let error = format!("result not stored: {e}");
                self.fail(
                    &job,
                    &done.msg,
                    done.state,
                    error,
                    Some(done.took),
                    Finish::Ack,
                );
            }
            Err(e) => self.nats_failed(&job, &done.msg, "writing the completed state", &e),
        }
    }

    /// Records a final failure (the `failed` state with its error), then settles the message as `finish`
    /// says.
    pub(super) fn fail(
        &self,
        job: &Job<'_>,
        msg: &JsMessage,
        mut state: HostState,
        error: String,
        took: Option<String>,
        finish: Finish,
    ) {
        state
            .events
            .push(self.event(event::FAILED, "failed".into(), Some(error.clone())));
        state.status = HostStatus::Failed;
        state.error = Some(error.clone());
        state.duration = took;
        state.response = self.answer(HostStatus::Failed, Value::Null, Some(error.clone()));
        if let Err(e) = self.put_state(job.id, &state) {
            return self.nats_failed(job, msg, "writing the failed state", &e);
        }
        log::info!(
            "job {} target {} on {}: failed: {error}",
            job.id,
            job.target,
            self.hostname
        );
        match finish {
            Finish::Ack => settle(job, "ack", msg.ack()),
            Finish::GiveUp => settle(job, "nak", msg.nak(Duration::ZERO)),
        }
    }

    /// A transient failure with deliveries left: `retryable`, redelivered after the back-off step.
    pub(super) fn retry(
        &self,
        job: &Job<'_>,
        msg: &JsMessage,
        mut state: HostState,
        error: String,
        took: String,
    ) {
        let attempt = msg.delivered;
        let message = format!(
            "attempt {attempt} of {} failed, will retry",
            self.max_deliver
        );
        state
            .events
            .push(self.event(event::RETRIED, message.clone(), Some(error.clone())));
        state.status = HostStatus::Retryable;
        state.error = Some(error.clone());
        state.duration = Some(took);
        if let Err(e) = self.put_state(job.id, &state) {
            return self.nats_failed(job, msg, "writing the retryable state", &e);
        }
        let delay = self.back_off_step(attempt);
        log::info!(
            "job {} target {} on {}: {message} in {}: {error}",
            job.id,
            job.target,
            self.hostname,
            format_duration(delay)
        );
        settle(job, "nak", msg.nak(delay));
    }

    /// The delay after failed attempt `attempt` (1-based): its `back_off` step, the last one when there are
    /// fewer steps, 1 s when there are none.
    fn back_off_step(&self, attempt: u64) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        self.back_off
            .get(index)
            .or(self.back_off.last())
            .copied()
            .unwrap_or(RETRY_DEFAULT)
    }
}

/// How a final failure settles its notification.
pub(super) enum Finish {
    /// Done with it (bad input, unsupported): never redeliver.
    Ack,
    /// Last delivery used up: a NAK on it makes the server give up with a MAX_DELIVERIES advisory, which
    /// the dead-letter stream captures (a TERM would leave the DLQ empty).
    GiveUp,
}
