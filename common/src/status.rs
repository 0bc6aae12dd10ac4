//! Job and per-host statuses, and how a job's status is aggregated from its hosts.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One host's state of a job: `pending -> running -> completed | failed | retryable`, `retryable -> pending`;
/// `cancelled` from `pending`, `retryable` or `running` once the job is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Retryable,
    /// The job was cancelled before this host finished it (never started, or stopped).
    Cancelled,
}

impl HostStatus {
    /// Completed, failed or cancelled: nothing more will happen on this host.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            HostStatus::Completed | HostStatus::Failed | HostStatus::Cancelled
        )
    }
}

/// A job's status over all its hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Running,
    Completed,
    Failed,
    PartialFailure,
    /// Cancelled, and no host runs it any more (hosts that had finished keep their result).
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::PartialFailure,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::PartialFailure => "partial_failure",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Completed, failed, partial_failure or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed
                | JobStatus::Failed
                | JobStatus::PartialFailure
                | JobStatus::Cancelled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Accepts the status names and OSAPI's older aliases `submitted` (= pending) and `processing` (= running).
impl FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" | "submitted" => Ok(JobStatus::Pending),
            "running" | "processing" => Ok(JobStatus::Running),
            "completed" => Ok(JobStatus::Completed),
            "failed" => Ok(JobStatus::Failed),
            "partial_failure" => Ok(JobStatus::PartialFailure),
            "cancelled" => Ok(JobStatus::Cancelled),
            _ => Err(format!(
                "unknown status '{s}': expected one of pending (submitted), running (processing), completed, failed, partial_failure, cancelled"
            )),
        }
    }
}

/// Error shown for a host that never answered within the job's timeout.
pub const NO_RESPONSE: &str = "no response";
/// Error shown for a host that held a job `running` or `retryable` past its grace with no new record:
/// its worker died (SIGKILL, power loss) or lost NATS for good, and nobody will write its end.
pub const WORKER_LOST: &str = "worker lost";

/// How long after the later of the job's deadline and a host's last record a `running` or `retryable`
/// host still counts as alive. From the worker config: `running` waits `ack_wait` (a live worker's
/// in-progress acks keep its delivery; past that JetStream redelivers it anyway), `retryable` waits
/// `ack_wait` plus the longest `back_off` step (the redelivery may be that far off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grace {
    pub running_us: i64,
    pub retryable_us: i64,
}

/// One host's latest state record, as the status rule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRecord<'a> {
    pub host: &'a str,
    pub status: HostStatus,
    pub attempts: u32,
    /// When the worker wrote it (Unix µs; 0 in records older than the field).
    pub updated_us: i64,
}

/// What the clock and the job's timing say about one host: its own record, or why it counts as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its record stands (or, without one, it is still `pending`).
    Own(HostStatus),
    /// No record by the deadline.
    NoResponse,
    /// `running`/`retryable` past its grace with no new record.
    Lost,
    /// The job was cancelled and this host had not started it (or was waiting to retry): it never will.
    Cancelled,
}

impl Verdict {
    pub fn status(self) -> HostStatus {
        match self {
            Verdict::Own(s) => s,
            Verdict::NoResponse | Verdict::Lost => HostStatus::Failed,
            Verdict::Cancelled => HostStatus::Cancelled,
        }
    }

    /// The error the job view shows for a verdict the host did not write itself.
    pub fn error(self) -> Option<&'static str> {
        match self {
            Verdict::Own(_) | Verdict::Cancelled => None,
            Verdict::NoResponse => Some(NO_RESPONSE),
            Verdict::Lost => Some(WORKER_LOST),
        }
    }
}

/// What besides the host records decides a job's status: its deadline (`created + timeout`), the hosts'
/// grace, and whether it was cancelled (a `cancel.{id}` record exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub deadline_us: i64,
    pub grace: Grace,
    pub cancelled: bool,
}

impl Timing {
    /// When a host holding `record` stops counting as alive, if its status can go stale at all.
    fn lost_at(&self, record: &HostRecord<'_>) -> Option<i64> {
        let grace_us = match record.status {
            HostStatus::Running => self.grace.running_us,
            HostStatus::Retryable => self.grace.retryable_us,
            _ => return None,
        };
        Some(
            self.deadline_us
                .max(record.updated_us)
                .saturating_add(grace_us),
        )
    }

    /// One host's verdict at `now_us`.
    pub fn verdict(&self, record: Option<&HostRecord<'_>>, now_us: i64) -> Verdict {
        // A cancelled job is never started again: hosts that have not started it, or wait to retry it,
        // are done with it. A running one counts as running until its worker writes how it stopped.
        if self.cancelled
            && record
                .is_none_or(|r| matches!(r.status, HostStatus::Pending | HostStatus::Retryable))
        {
            return Verdict::Cancelled;
        }
        match record {
            None if now_us > self.deadline_us => Verdict::NoResponse,
            None => Verdict::Own(HostStatus::Pending),
            Some(r) if self.lost_at(r).is_some_and(|at| now_us > at) => Verdict::Lost,
            Some(r) => Verdict::Own(r.status),
        }
    }

    /// The next instant after `now_us` at which the clock alone changes a verdict of this job (its
    /// deadline, or a host's grace running out), or `None` when only a new record can.
    pub fn next_change(&self, records: &[HostRecord<'_>], now_us: i64) -> Option<i64> {
        std::iter::once(self.deadline_us)
            .chain(records.iter().filter_map(|r| self.lost_at(r)))
            .filter(|at| *at >= now_us)
            .min()
    }
}

/// The one host whose record decides an `_any` job. One delivery runs an `_any` job at a time; a host
/// that took an earlier delivery and then died keeps its `running` record for ever, and must not hold the
/// job once another host took the redelivery. The host that completed it decides; else the latest
/// delivery (highest attempt, then latest record); exact ties go to the greatest hostname, so every
/// reader picks the same host whatever order it saw the records in.
pub fn any_target_decider<'a, 'r>(records: &'r [HostRecord<'a>]) -> Option<&'r HostRecord<'a>> {
    records.iter().max_by_key(|r| {
        (
            r.status == HostStatus::Completed,
            r.attempts,
            r.updated_us,
            r.host,
        )
    })
}

/// The hosts a job concerns, each with its record: for `_any` the deciding host alone; otherwise every
/// expected host (with or without a record) and every host that wrote one. Sorted by hostname.
pub fn concerned_hosts<'a, 'r>(
    any: bool,
    expected: &'r [&'a str],
    records: &'r [HostRecord<'a>],
) -> Vec<(&'a str, Option<&'r HostRecord<'a>>)> {
    if any {
        return any_target_decider(records)
            .map(|r| (r.host, Some(r)))
            .into_iter()
            .collect();
    }
    let mut hosts: std::collections::BTreeMap<&'a str, Option<&'r HostRecord<'a>>> =
        expected.iter().map(|h| (*h, None)).collect();
    for r in records {
        hosts.insert(r.host, Some(r));
    }
    hosts.into_iter().collect()
}

/// **The** job status rule, used by the API's index and by the job view alike: the verdicts of the
/// concerned hosts, aggregated; with no host at all, pending until the deadline, then failed.
pub fn job_status(
    any: bool,
    expected: &[&str],
    records: &[HostRecord<'_>],
    timing: &Timing,
    now_us: i64,
) -> JobStatus {
    let verdicts: Vec<HostStatus> = concerned_hosts(any, expected, records)
        .into_iter()
        .map(|(_, r)| timing.verdict(r, now_us).status())
        .collect();
    if verdicts.is_empty() && timing.cancelled {
        return JobStatus::Cancelled;
    }
    aggregate(&verdicts, now_us > timing.deadline_us)
}

/// Aggregates the effective statuses of every host the job concerns (expected ones and any that answered).
/// With no host at all, the job is pending until its deadline, then failed (`no response`).
pub fn aggregate(hosts: &[HostStatus], past_deadline: bool) -> JobStatus {
    if hosts.is_empty() {
        return if past_deadline {
            JobStatus::Failed
        } else {
            JobStatus::Pending
        };
    }
    let count = |want: HostStatus| hosts.iter().filter(|s| **s == want).count();
    let (pending, completed, failed, cancelled) = (
        count(HostStatus::Pending),
        count(HostStatus::Completed),
        count(HostStatus::Failed),
        count(HostStatus::Cancelled),
    );
    if pending == hosts.len() {
        JobStatus::Pending
    } else if completed == hosts.len() {
        JobStatus::Completed
    } else if failed == hosts.len() {
        JobStatus::Failed
    } else if cancelled > 0 && completed + failed + cancelled == hosts.len() {
        JobStatus::Cancelled
    } else if completed + failed == hosts.len() {
        JobStatus::PartialFailure
    } else {
        JobStatus::Running
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
