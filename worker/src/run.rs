//! One job notification, start to finish: read the job (and this host's earlier state) from KV, note
//! `acknowledged` + `started` (written as the `running` record only if the job still runs after 100 ms:
//! run/fresh.rs), run the operation, write the final state (which carries every event and the answer),
//! then settle the message: ack (done), nak with back-off (retry), or give up after `max_deliver`. A
//! `completed` record is acked when its ack comes, on the connection's reading thread (`settling.rs`).
//!
//! Before anything else the job must pass `gate.rs`: signed by a trusted key (else `failed`, `rejected: ...`),
//! addressed to this host (else skipped), and reaching this host before its deadline (else `failed`,
//! `expired: ...`).
//!
//! The answer (data or error) is written in the same record as the final status, so a reader that sees
//! `completed` always has the result. A read or write that fails for a while (NATS unavailable, a store full)
//! naks the message for 1 s and moves on; one that retrying cannot fix (a result too large to store, a
//! garbled answer) fails the job at once. A redelivery of a job already finished here is acked and ignored.

use crate::cancel;
use crate::clock::now_us;
use crate::gate::{self, Decision, Gate};
use crate::jobdef;
use crate::ops::{self, ErrorKind, OpContext};
use crate::settling::Settling;
use osapi_bus::{Bus, BusError, JsMessage};
use osapi_common::job::{event, Event, HostState, JobDef, Response};
use osapi_common::names::{keys, Names};
use osapi_common::status::HostStatus;
use osapi_common::timefmt::format_micros;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod cancelled;
mod finish;
mod fresh;

use finish::Finish;

pub use fresh::Fresh;

/// Redelivery delay after a write failed (NATS hiccup).
const RETRY_AFTER_WRITE_FAILURE: Duration = Duration::from_secs(1);
/// Redelivery delay after a transient failure when `back_off` is empty.
const RETRY_DEFAULT: Duration = Duration::from_secs(1);

/// Everything a pool thread needs to run jobs on this host.
pub struct Runner {
    pub bus: Bus,
    pub names: Names,
    pub hostname: String,
    /// `job.worker.consumer.max_deliver` (at least 1).
    pub max_deliver: u64,
    pub back_off: Vec<Duration>,
    pub ctx: OpContext,
    /// When this worker started (Unix µs): older broadcast jobs that did not expect it are not its own.
    pub started_us: i64,
    /// The jobs running here, for `POST /job/{id}/cancel` (`cancel.rs`).
    pub cancels: std::sync::Arc<cancel::Registry>,
    /// What a job must pass before it runs here: trusted signature, this host's address, its deadline.
    pub gate: Gate,
    /// How often a long-running job's `running` record is rewritten (see [`refresh_interval`]).
    pub refresh_every: Duration,
    /// The running jobs whose record [`Runner::keep_fresh`] rewrites.
    pub fresh: Fresh,
    /// The finished jobs whose `completed` record's ack settles them ([`Runner::keep_settling`]).
    pub settling: Arc<Settling>,
}

/// The API counts a host `running` with no new record for `ack_wait` past the deadline as lost
/// (`common::status::Grace`); a live worker whose operation outlasts that rewrites its record twice
/// per `ack_wait`, so only a dead one goes silent.
pub fn refresh_interval(ack_wait: Duration) -> Duration {
    (ack_wait / 2).max(Duration::from_millis(100))
}

/// The job being handled, for log lines.
struct Job<'a> {
    id: &'a str,
    target: String,
}

/// `0.002s`, `1.001s`.
fn format_duration(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// A notification carries the job id, a UUID: 36 characters of hex digits and dashes.
fn job_id(payload: &[u8]) -> Option<&str> {
    let id = std::str::from_utf8(payload).ok()?.trim();
    let ok = id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    ok.then_some(id)
}

fn settle(job: &Job<'_>, what: &str, result: Result<(), BusError>) {
    if let Err(e) = result {
        log::warn!(
            "job {} ({what}): could not settle the notification: {e}",
            job.id
        );
    }
}

impl Runner {
    fn event(&self, name: &str, message: String, error: Option<String>) -> Event {
        Event {
            timestamp: format_micros(now_us()),
            event: name.to_string(),
            hostname: self.hostname.clone(),
            message,
            error,
        }
    }

    /// `state` as its record, stamped with when it was written (the API counts a host silent too long
    /// in `running` as lost).
    fn state_record(&self, mut state: HostState) -> Result<Vec<u8>, BusError> {
        state.updated_us = now_us();
        serde_json::to_vec(&state).map_err(|e| BusError::Protocol(format!("encode state: {e}")))
    }

    fn put_state(&self, id: &str, state: &HostState) -> Result<(), BusError> {
        let record = self.state_record(state.clone())?;
        let key = keys::state(id, &self.hostname);
        self.bus
            .kv_put(&self.names.bucket, &key, &record)
            .map(|_| ())
    }

    /// This host's answer, carried by its final state.
    fn answer(&self, status: HostStatus, data: Value, error: Option<String>) -> Option<Response> {
        Some(Response {
            status,
            data,
            error,
            hostname: self.hostname.clone(),
        })
    }

    /// A read or write failed. Transient (NATS unavailable, store full): let JetStream redeliver soon,
    /// and move on. Permanent: redelivering would fail the same way until `max_deliver`, so settle now.
    fn nats_failed(&self, job: &Job<'_>, msg: &JsMessage, doing: &str, e: &BusError) {
        if !e.is_transient() {
            log::error!(
                "job {} target {} on {}: {doing} failed for good ({e}); not retried",
                job.id,
                job.target,
                self.hostname
            );
            return settle(job, "ack", msg.ack());
        }
        log::warn!(
            "job {} target {} on {}: {doing} failed ({e}); redelivery in {}s",
            job.id,
            job.target,
            self.hostname,
            RETRY_AFTER_WRITE_FAILURE.as_secs()
        );
        settle(job, "nak", msg.nak(RETRY_AFTER_WRITE_FAILURE));
    }

    /// Handles one notification. Never panics on bad input; every outcome settles the message.
    pub fn handle(&self, msg: &Arc<JsMessage>) {
        let Some(id) = job_id(&msg.data) else {
            log::warn!(
                "notification with a bad job id {:?} on {}: dropped",
                String::from_utf8_lossy(&msg.data.iter().take(64).copied().collect::<Vec<u8>>()),
                self.hostname
            );
            let _ = msg.term();
            return;
        };
        let mut job = Job {
            id,
            target: "?".into(),
        };
        // A broadcast is read from its hosts' copy, without the host list (jobdef.rs).
        let form = jobdef::form_of(&self.names, &msg.subject);
        let (job_key, state_key) = (jobdef::key(id, form), keys::state(id, &self.hostname));
        let cancel_key = keys::cancel(id);
        let bucket = self.names.bucket.as_str();
        // Job, this host's state and a cancel request in one round trip (a redelivery keeps the earlier
        // events).
        let mut got = self
            .bus
            .kv_get_many(&[
                (bucket, &job_key),
                (bucket, &state_key),
                (bucket, &cancel_key),
            ])
            .into_iter();
        let missing = || Err(BusError::Protocol("fewer answers than requests".into()));
        let def = got.next().unwrap_or_else(missing);
        let state = got.next().unwrap_or_else(missing);
        // A cancel record we cannot read now is caught by the listener's recheck once the job runs.
        let cancelled_before = matches!(got.next(), Some(Ok(Some(_))));
        let (def, state) = match (def, state) {
            (Ok(def), Ok(state)) => (def, state),
            (Err(e), _) | (_, Err(e)) => return self.nats_failed(&job, msg, "reading the job", &e),
        };
        let def = match jobdef::resolve(&self.bus, bucket, id, form, def, self.started_us) {
            // Sent with its record, the notification may have been stored first.
            Ok(None) if jobdef::may_come(msg.delivered, msg.stored_us, now_us()) => {
                jobdef::read_again(&self.bus, bucket, id, form, self.started_us)
            }
            other => other,
        };
        let def = match def {
            Ok(def) => def,
            Err(e) => return self.nats_failed(&job, msg, "reading the job", &e),
        };
        let Some(def) = def else {
            log::info!(
                "job {id} on {}: deleted, notification skipped",
                self.hostname
            );
            return settle(&job, "ack", msg.ack());
        };
        let previous: Option<HostState> =
            state.and_then(|e| match serde_json::from_slice(&e.value) {
                Ok(s) => Some(s),
                Err(err) => {
                    log::warn!(
                        "job {id} on {}: unreadable earlier state ({err}); starting afresh",
                        self.hostname
                    );
                    None
                }
            });
        if previous.as_ref().is_some_and(|p| p.status.is_terminal()) {
            log::info!(
                "job {id} on {}: already finished here, redelivery acked",
                self.hostname
            );
            return settle(&job, "ack", msg.ack());
        }
        let (def, form) = match def {
            Ok(d) => d,
            Err(e) => {
                let state = previous.unwrap_or_else(|| self.new_state());
                // Nothing unreadable can be verified: refused like any other job that fails the gate.
                let error = format!("rejected: cannot read the job definition: {e}");
                return self.fail(&job, msg, state, error, None, Finish::Ack);
            }
        };
        job.target = def.target_hostname.clone();
        // Before anything else: the job's signature, its id, its address, its deadline (gate.rs).
        let first_here = previous.is_none();
        match gate::decide(&self.gate, id, &def, form, first_here, now_us()) {
            Decision::Run => {}
            Decision::Skip(why) => {
                log::warn!("job {id} target {} {why}: skipped", job.target);
                return settle(&job, "ack", msg.ack());
            }
            Decision::Refuse(error) => {
                log::warn!(
                    "job {id} target {} on {}: {error}",
                    job.target,
                    self.hostname
                );
                let state = previous.unwrap_or_else(|| self.new_state());
                return self.fail(&job, msg, state, error, None, Finish::Ack);
            }
        }
        if self.not_ours(&def) {
            log::info!(
                "job {id} target {} on {}: submitted before this worker started and not expecting it; skipped",
                job.target,
                self.hostname
            );
            return settle(&job, "ack", msg.ack());
        }
        let state = previous.unwrap_or_else(|| self.new_state());
        // Registered before the last check, so a cancel arriving from now on reaches the job.
        let running = self.cancels.enter(id);
        if cancelled_before || running.is_cancelled() {
            return self.cancelled(&job, msg, state, None);
        }
        self.run(&job, msg, &def, state, &running);
    }

    /// A broadcast job lists the hosts it expects; one submitted before this worker existed (replayed by its
    /// fresh consumer) is not this worker's to answer.
    fn not_ours(&self, def: &JobDef) -> bool {
        !def.expected_hosts.is_empty()
            && !def.expected_hosts.contains(&self.hostname)
            && def.created_us < self.started_us
    }

    fn new_state(&self) -> HostState {
        HostState {
            hostname: self.hostname.clone(),
            status: HostStatus::Pending,
            attempts: 0,
            error: None,
            duration: None,
            events: Vec::new(),
            updated_us: 0,
            response: None,
        }
    }

    fn run(
        &self,
        job: &Job<'_>,
        msg: &Arc<JsMessage>,
        def: &JobDef,
        mut state: HostState,
        running: &cancel::Running,
    ) {
        let attempt = msg.delivered;
        let op = def.operation.op_type;
        state.events.push(self.event(
            event::ACKNOWLEDGED,
            format!("received by {}", self.hostname),
            None,
        ));
        state.events.push(self.event(
            event::STARTED,
            format!("running {op}, attempt {attempt} of {}", self.max_deliver),
            None,
        ));
        state.status = HostStatus::Running;
        state.attempts = u32::try_from(attempt).unwrap_or(u32::MAX);
        state.error = None;
        state.duration = None;
        // The `running` record is written only if the job still runs after `fresh::FIRST_AFTER`
        // (fresh.rs); the final record carries these events either way.
        // One info line per job (its end): a line at the start too cost the worker measurable CPU.
        log::debug!(
            "job {} target {} on {}: running {op} (attempt {attempt} of {})",
            job.id,
            job.target,
            self.hostname,
            self.max_deliver
        );
        let started = Instant::now();
        // Shared with the thread that keeps the record fresh rather than copied for it: once the guard
        // drops, this is the only reference, unless that thread is writing the record just then.
        let shared = Arc::new(state);
        let fresh = self.fresh.enter(job.id, shared.clone());
        let result = ops::execute(op, &def.operation.data, &self.ctx);
        // No `running` rewrite after this, so the final state written below stays the last.
        drop(fresh);
        let state = Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone());
        let elapsed = started.elapsed();
        let took = format_duration(elapsed);
        let ended = match &result {
            Err(_) if running.is_cancelled() => "cancelled",
            Ok(_) => "completed",
            Err(e) if e.kind != ErrorKind::Permanent && attempt < self.max_deliver => "retryable",
            Err(_) => "failed",
        };
        crate::metrics::job_ended(op.as_str(), ended, elapsed);
        match result {
            // Stopped by a cancel; a job that finished before the cancel took effect keeps its result.
            Err(_) if running.is_cancelled() => self.cancelled(job, msg, state, Some(took)),
            Ok(data) => self.complete(job, msg, state, data, took),
            Err(e) if e.kind == ErrorKind::Permanent => {
                self.fail(job, msg, state, e.message, Some(took), Finish::Ack)
            }
            Err(e) if attempt < self.max_deliver => self.retry(job, msg, state, e.message, took),
            Err(e) => {
                let error = format!("max deliveries exceeded: {}", e.message);
                self.fail(job, msg, state, error, Some(took), Finish::GiveUp);
            }
        }
    }

    /// Settles, on the calling thread for the life of the process, each job whose `completed` record
    /// was refused or whose ack is overdue (`settling.rs`); the reading thread settles the others.
    pub fn keep_settling(&self) {
        self.settling
            .run(|done, outcome| self.not_stored(done, outcome));
    }

    /// Rewrites the `running` record of each job running longer than `refresh_every` (fresh.rs), on
    /// the calling thread, for the life of the process. A failed rewrite is only logged (the job goes on).
    pub fn keep_fresh(&self) {
        self.fresh.run(self.refresh_every, |id, state| {
            if let Err(e) = self.put_state(id, state) {
                log::warn!(
                    "job {id} on {}: running record not refreshed: {e}",
                    self.hostname
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_durations() {
        assert_eq!(
            job_id(b"550e8400-e29b-41d4-a716-446655440000"),
            Some("550e8400-e29b-41d4-a716-446655440000")
        );
        assert_eq!(job_id(b"550e8400"), None);
        assert_eq!(job_id(b"../../../../../../../../../../../etc"), None);
        assert_eq!(job_id(&[0xff; 36]), None);
        assert_eq!(format_duration(Duration::from_millis(2)), "0.002s");
        assert_eq!(format_duration(Duration::from_millis(1001)), "1.001s");
    }
}
