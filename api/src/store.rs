//! The API's view of NATS and of its index, in domain terms, and the handlers' only door to either:
//! submit a job (KV first, then the notification), read job details (from the index's detail cache,
//! else batched KV gets for the hosts the index knows), delete, list, count, live workers, `?wait=`,
//! readiness. The watches write the index (`watch.rs`); the store only applies a job it has just
//! created, as the watch will (`Index::apply_own_job`), so its creator finds it at once. A create also
//! records its revision; a reader of anything else this API wrote waits until the watch applied it
//! (`see_own_writes`); a delete or cancel waits for its own write before answering.

use crate::ctx::now_us;
use crate::index::detail::{Lookup, Parts};
use crate::index::{Index, Record, Source, Stats};
use osapi_bus::{Bus, BusError, Write};
use osapi_common::job::{JobDef, Operation, WorkerInfo};
use osapi_common::names::{keys, Names};
use osapi_common::status::{Grace, JobStatus};
use osapi_common::target::Target;
use osapi_common::timefmt::format_micros;
use osapi_common::trust::{self, JobSigningKey};
use osapi_common::view::{self, JobDetail};
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

mod cancel;
mod drain;
mod idempotency;

pub use cancel::CancelOutcome;

/// What `POST /job` answers.
pub struct Created {
    pub id: String,
    pub revision: u64,
    pub timestamp: String,
}

/// A job to submit.
pub struct Submission {
    pub operation: Operation,
    pub target: Target,
    pub timeout_ms: u64,
    pub retry_of: Option<String>,
    /// The token's `sub`.
    pub submitted_by: String,
}

/// A job about to be submitted: its signed record and what its submission writes.
struct Prepared {
    uuid: Uuid,
    id: String,
    def: JobDef,
    /// The record, `jobs.{id}`.
    value: Vec<u8>,
    /// A broadcast's copy for its hosts, `run.{id}`.
    copy: Option<Vec<u8>>,
    /// The notification's subject.
    subject: String,
    job_key: String,
    run_key: String,
}

impl Prepared {
    /// The record (and a broadcast's copy), then the notification (the id only).
    fn writes<'a>(&'a self, names: &'a Names) -> Vec<Write<'a>> {
        let bucket = &names.bucket;
        let mut writes = vec![Write::KvCreate {
            bucket,
            key: &self.job_key,
            value: &self.value,
        }];
        if let Some(copy) = &self.copy {
            writes.push(Write::KvPut {
                bucket,
                key: &self.run_key,
                value: copy,
            });
        }
        writes.push(Write::Publish {
            subject: &self.subject,
            msg_id: &self.id,
            payload: self.id.as_bytes(),
        });
        writes
    }
}

/// One job's records as [`Store::details`] read them, with the moment they were read: its
/// [`Records::detail`] is the job's view, borrowing from them.
pub struct Records {
    def: JobDef,
    parts: Parts,
    grace: Grace,
    now: i64,
}

impl Records {
    /// `GET /job/{id}`'s view of the job (`view::detail_with_cancel`).
    pub fn detail(&self) -> JobDetail<'_> {
        view::detail_with_cancel(
            &self.def,
            &self.parts.states,
            &self.parts.responses,
            self.parts.cancel.as_ref(),
            self.grace,
            self.now,
        )
    }
}

/// Cheap to clone; shared by the handler threads.
#[derive(Clone)]
pub struct Store {
    bus: Bus,
    names: Arc<Names>,
    index: Arc<Index>,
    grace: Grace,
    /// `api.server.security.job_signing_key_file`: every job definition is signed with it.
    job_key: Arc<JobSigningKey>,
}

impl Store {
    pub fn new(
        bus: Bus,
        names: Arc<Names>,
        index: Arc<Index>,
        grace: Grace,
        job_key: Arc<JobSigningKey>,
    ) -> Store {
        Store {
            bus,
            names,
            index,
            grace,
            job_key,
        }
    }

    /// Whether the NATS connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.bus.is_connected()
    }

    /// `Ok` when NATS is reachable, the index is current and the job stream exists; else what is not.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.bus.is_connected() {
            return Err("NATS is unreachable".into());
        }
        self.index.readiness(self.bus.reconnects())?;
        match self.bus.stream_messages(&self.names.stream) {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("job stream {}: {e}", self.names.stream)),
        }
    }

    /// One page of job ids, newest first, and the total that matched.
    pub fn page(
        &self,
        filter: Option<JobStatus>,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<Uuid>) {
        self.index.page(filter, offset, limit, now_us())
    }

    pub fn stats(&self) -> Stats {
        self.index.stats(now_us())
    }

    pub fn live_workers(&self) -> Vec<WorkerInfo> {
        self.index.live_workers(now_us())
    }

    /// The detail cache (for its counters).
    pub fn detail_cache(&self) -> &crate::index::detail::DetailCache {
        self.index.detail()
    }

    /// Whether the index knows the job.
    pub fn knows(&self, id: &Uuid) -> bool {
        self.index.status(id, now_us()).is_some()
    }

    /// Blocks until the job is terminal, gone, or `deadline` passes (woken by the watch, no polling).
    pub fn wait_terminal(&self, id: &Uuid, deadline: Instant) {
        self.index.wait_terminal(id, deadline, now_us);
    }

    /// Read-your-writes for readers of the index: waits (within the request timeout) until the job
    /// watch has applied every job this API had created when called. Immediate when it has (the usual
    /// case); a reader that finds its job, or needs no index, does not call it.
    pub fn see_own_writes(&self) {
        let deadline = Instant::now() + self.bus.request_timeout();
        if !self.index.wait_own_writes(Source::Jobs, deadline) {
            log::warn!("index has not applied this API's writes within the request timeout");
        }
    }

    /// Waits (within the request timeout) until the watch has applied our own write at `revision`, so
    /// whoever wrote reads it back at once. Past that the write stands; the index follows shortly.
    fn wait_own_write(&self, revision: u64) {
        self.index.wrote(Source::Jobs, revision);
        let deadline = Instant::now() + self.bus.request_timeout();
        if !self.index.wait_applied(Source::Jobs, revision, deadline) {
            log::warn!("index has not applied revision {revision} within the request timeout");
        }
    }

    /// Writes the job definition to KV (a broadcast also its hosts' copy, `run.{id}`) and publishes
    /// the notification (the id only), all sent at once, and waits for every ack. Only then is the job
    /// accepted. If any write failed, what was written is removed again (best effort:
    /// [`Store::undo_submit`]), so a job either exists with its notification or is reported as not
    /// created. The notification may be stored before the record: a worker that reads nothing for a
    /// fresh notification reads again (worker/src/run.rs).
    pub fn submit(&self, sub: Submission) -> Result<Created, BusError> {
        let job = self.prepare(sub)?;
        let acks = self.bus.write_many(&job.writes(&self.names));
        self.settle(job, acks)
    }

    /// [`Store::submit`], then holds until the job is terminal or gone, or `until` (as
    /// `GET /job/{id}?wait=` holds): for `POST /job?wait=`. The acks are not waited for on their own:
    /// the caller sleeps once, until the job's end comes through the watch, and is woken early only
    /// when a write is refused (or its acks are overdue). The job is accepted, or undone, exactly as
    /// by [`Store::submit`]; when the wait is over first the acks are then waited for.
    pub fn submit_and_wait(&self, sub: Submission, until: Instant) -> Result<Created, BusError> {
        let job = self.prepare(sub)?;
        let id = job.uuid;
        let index = self.index.clone();
        let on_refusal = Box::new(move || index.wake_waiters(&id));
        let pending = self
            .bus
            .send_writes(&job.writes(&self.names), on_refusal, None)?;
        self.index.wait_created(
            &id,
            until,
            pending.deadline(),
            || pending.given_up(),
            now_us,
        );
        self.settle(job, pending.acks())
    }

    /// A job's record, signed, and what else its submission writes.
    fn prepare(&self, sub: Submission) -> Result<Prepared, BusError> {
        let uuid = Uuid::new_v4();
        let id = uuid.to_string();
        let now = now_us();
        let broadcast = sub.target.is_broadcast();
        let expected_hosts = if broadcast {
            self.index
                .live_workers(now)
                .into_iter()
                .filter(|w| w.subscribed && sub.target.matches(&w.hostname, &w.labels))
                .map(|w| w.hostname)
                .collect()
        } else {
            Vec::new()
        };
        let mut def = JobDef {
            id: id.clone(),
            operation: sub.operation,
            target_hostname: sub.target.to_string(),
            expected_hosts,
            created: format_micros(now),
            created_us: now,
            timeout_ms: sub.timeout_ms,
            retry_of: sub.retry_of,
            submitted_by: sub.submitted_by,
            signature: None,
        };
        def.signature = Some(trust::sign(&def, &self.job_key));
        let encode =
            |d: &JobDef| serde_json::to_vec(d).map_err(|e| BusError::Protocol(e.to_string()));
        let value = encode(&def)?;
        // Each host of a broadcast reads this copy (no host list, signed on its own), not the whole
        // record.
        let copy = if broadcast {
            let mut run = def.run_copy();
            run.signature = Some(trust::sign_as(&run, trust::Form::Run, &self.job_key));
            Some(encode(&run)?)
        } else {
            None
        };
        let subject = self
            .names
            .job_subject(def.operation.op_type.kind(), &sub.target);
        Ok(Prepared {
            job_key: keys::job(&id),
            run_key: keys::run(&id),
            uuid,
            id,
            def,
            value,
            copy,
            subject,
        })
    }

    /// Accepts a job whose writes were all acked, or undoes what was written of one that was refused.
    fn settle(&self, job: Prepared, acks: Vec<Result<u64, BusError>>) -> Result<Created, BusError> {
        let Prepared {
            id,
            def,
            value,
            copy,
            job_key,
            ..
        } = job;
        if let Some(e) = acks.iter().find_map(|a| a.as_ref().err()) {
            // The notification may be stored though a record was refused (a full bucket): take it
            // back too, so a refused job leaves nothing for the workers to wait for.
            let notified = acks.last().and_then(|a| a.as_ref().ok()).copied();
            self.undo_submit(&id, copy.is_some(), notified, e);
            return Err(e.clone());
        }
        let revision = acks
            .first()
            .and_then(|a| a.as_ref().ok())
            .copied()
            .unwrap_or(0);
        // The job goes into the index now, as the watch will deliver it, so its creator's `GET` finds
        // it at once. Readers of anything else this API wrote wait for the watch (`see_own_writes`).
        self.index.wrote(Source::Jobs, revision);
        let record = Record {
            key: &job_key,
            value: Some(&value),
            revision,
        };
        self.index.apply_own_job(&record, now_us());
        crate::metrics::job_created();
        log::info!(
            "job {id} submitted: {} -> {}",
            def.operation.op_type,
            def.target_hostname
        );
        Ok(Created {
            id,
            revision,
            timestamp: def.created,
        })
    }

    /// Removes what a failed [`Store::submit`] wrote: its notification (stream sequence `notified`)
    /// when that was stored, a broadcast's copy, then the record (a failure is logged; what stays
    /// expires with the stream's and the bucket's age limits; a worker skips a notification without
    /// its record).
    fn undo_submit(&self, id: &str, broadcast: bool, notified: Option<u64>, why: &BusError) {
        if let Some(seq) = notified {
            if let Err(undo) = self.bus.stream_msg_delete(&self.names.stream, seq) {
                log::warn!(
                    "job {id}: not created ({why}) and taking back its notification failed: {undo}"
                );
            }
        }
        if let Err(undo) = self.remove(id, broadcast) {
            log::warn!("job {id}: not created ({why}) and removing it failed too: {undo}");
        }
    }

    /// Writes delete markers on job `id`'s records: first a broadcast's copy `run.{id}`, which its
    /// hosts read (so none runs a job that is gone), then `jobs.{id}`; the latter's revision.
    fn remove(&self, id: &str, broadcast: bool) -> Result<u64, BusError> {
        if broadcast {
            self.bus.kv_delete(&self.names.bucket, &keys::run(id))?;
        }
        self.bus.kv_delete(&self.names.bucket, &keys::job(id))
    }

    /// The definition alone (for retry), or `None` when there is no such job.
    pub fn definition(&self, id: &Uuid) -> Result<Option<JobDef>, BusError> {
        let entry = self
            .bus
            .kv_get(&self.names.bucket, &keys::job(&id.to_string()))?;
        Ok(entry.and_then(|e| serde_json::from_slice(&e.value).ok()))
    }

    /// Details of several jobs, in order; unknown ids are left out. What the detail cache holds whole
    /// is answered from it; the rest (whole jobs, or a finished host's response not yet delivered) is
    /// read in one batch of KV gets, the jobs' hosts being those the index knows. Both paths parse the
    /// records the same way (`detail::Parts`) and build the same `view::detail_with_cancel`.
    pub fn details(&self, ids: &[Uuid]) -> Result<Vec<Records>, BusError> {
        /// One job's records, and which of them the batch must still read.
        struct Plan {
            id: String,
            parts: Parts,
            /// Read `jobs.{id}` and `cancel.{id}` (a cache miss).
            whole: bool,
            /// Hosts whose state (when `whole`) and response to read.
            hosts: Vec<String>,
        }
        let now = now_us();
        let reconnects = self.bus.reconnects();
        let cache = self.index.detail();
        let mut plans: Vec<Plan> = ids
            .iter()
            .map(|id| match cache.lookup(id, now, reconnects) {
                Lookup::Found { parts, missing } => Plan {
                    id: id.to_string(),
                    parts: *parts,
                    whole: false,
                    hosts: missing,
                },
                Lookup::Miss => Plan {
                    id: id.to_string(),
                    parts: Parts::default(),
                    whole: true,
                    hosts: self.index.hosts(id).unwrap_or_default(),
                },
            })
            .collect();
        let mut wanted: Vec<(&str, String)> = Vec::new();
        let (jobs, responses) = (&self.names.bucket, &self.names.response_bucket);
        for p in &plans {
            if p.whole {
                wanted.push((jobs, keys::job(&p.id)));
                wanted.push((jobs, keys::cancel(&p.id)));
            }
            for h in &p.hosts {
                if p.whole {
                    wanted.push((jobs, keys::state(&p.id, h)));
                }
                wanted.push((responses, keys::response(&p.id, h)));
            }
        }
        if !wanted.is_empty() {
            let refs: Vec<(&str, &str)> = wanted.iter().map(|(b, k)| (*b, k.as_str())).collect();
            let mut answers = self.bus.kv_get_many(&refs).into_iter();
            let mut next = || -> Result<Option<Vec<u8>>, BusError> {
                Ok(answers.next().unwrap_or(Ok(None))?.map(|e| e.value))
            };
            for p in &mut plans {
                if p.whole {
                    p.parts.set_def(next()?.as_deref());
                    p.parts.set_cancel(next()?.as_deref());
                }
                for h in &p.hosts {
                    if p.whole {
                        p.parts.add_state(h, next()?.as_deref());
                    }
                    p.parts.add_response(h, next()?.as_deref());
                }
            }
        }
        Ok(plans
            .into_iter()
            .filter_map(|p| {
                let mut parts = p.parts;
                let def = parts.def.take()?;
                Some(Records {
                    def,
                    parts,
                    grace: self.grace,
                    now,
                })
            })
            .collect())
    }

    /// Deletes the job by writing a delete marker on `jobs.{id}` (and first on a broadcast's `run.{id}`):
    /// the job is then gone for clients, while its hosts' states and responses stay in KV, unreachable,
    /// until the bucket's TTL removes them (never with `nats.kv.ttl: 0s`). `false` when there was no such job.
    pub fn delete(&self, id: &Uuid) -> Result<bool, BusError> {
        let sid = id.to_string();
        let Some(def) = self.definition(id)? else {
            return Ok(false);
        };
        let broadcast = def
            .target_hostname
            .parse::<Target>()
            .is_ok_and(|t| t.is_broadcast());
        // Only the job's records, marked deleted: the hosts' states and responses, no longer reachable,
        // expire with the bucket's TTL. Neither a purge nor a rollup: on nats-server 2.9.10 either moves
        // the index's watch past records it has not delivered (docs/nats.md). And the API's NATS
        // identity may not write a host's records anyway (docs/security.md).
        let revision = self.remove(&sid, broadcast)?;
        self.wait_own_write(revision);
        log::info!("job {sid} deleted");
        Ok(true)
    }

    /// Notifications in the dead-letter stream.
    pub fn dlq_count(&self) -> Result<u64, BusError> {
        self.bus.stream_messages(&self.names.dlq_stream)
    }
}
