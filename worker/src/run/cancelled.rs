//! The end of a cancelled job on this host (`POST /job/{id}/cancel`, `cancel.rs`): its own file so
//! `run.rs` keeps to the normal flow.

use super::{settle, Job, Runner};
use osapi_bus::JsMessage;
use osapi_common::job::{event, HostState};
use osapi_common::status::HostStatus;
use serde_json::Value;

impl Runner {
    /// The job was cancelled: not started here (`took` None) or stopped after `took`. The `cancelled`
    /// state (with an answer when it ran); acked, never redelivered.
    pub(super) fn cancelled(
        &self,
        job: &Job<'_>,
        msg: &JsMessage,
        mut state: HostState,
        took: Option<String>,
    ) {
        let message = match &took {
            Some(t) => format!("stopped after {t}: the job was cancelled"),
            None => "not started: the job was cancelled".to_string(),
        };
        if took.is_some() {
            let error = Some("cancelled".to_string());
            state.response = self.answer(HostStatus::Cancelled, Value::Null, error);
        }
        state
            .events
            .push(self.event(event::CANCELLED, message.clone(), None));
        state.status = HostStatus::Cancelled;
        state.duration = took;
        if let Err(e) = self.put_state(job.id, &state) {
            return self.nats_failed(job, msg, "writing the cancelled state", &e);
        }
        log::info!(
            "job {} target {} on {}: {message}",
            job.id,
            job.target,
            self.hostname
        );
        settle(job, "ack", msg.ack());
    }
}
