//! Job and per-host statuses, and how a job's status is aggregated from its hosts.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One host's state of a job: `pending -> running -> completed | failed | retryable`, `retryable -> pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Retryable,
}

impl HostStatus {
    /// Completed or failed: nothing more will happen on this host.
    pub fn is_terminal(self) -> bool {
        matches!(self, HostStatus::Completed | HostStatus::Failed)
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
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::PartialFailure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::PartialFailure => "partial_failure",
        }
    }

    /// Completed, failed or partial_failure.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::PartialFailure
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
            _ => Err(format!(
                "unknown status '{s}': expected one of pending (submitted), running (processing), completed, failed, partial_failure"
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
}

impl Verdict {
    pub fn status(self) -> HostStatus {
        match self {
            Verdict::Own(s) => s,
            Verdict::NoResponse | Verdict::Lost => HostStatus::Failed,
        }
    }

    /// The error the job view shows for a verdict the host did not write itself.
    pub fn error(self) -> Option<&'static str> {
        match self {
            Verdict::Own(_) => None,
            Verdict::NoResponse => Some(NO_RESPONSE),
            Verdict::Lost => Some(WORKER_LOST),
        }
    }
}

/// The job's timing: its deadline (`created + timeout`) and the hosts' grace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub deadline_us: i64,
    pub grace: Grace,
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
    let (pending, completed, failed) = (
        count(HostStatus::Pending),
        count(HostStatus::Completed),
        count(HostStatus::Failed),
    );
    if pending == hosts.len() {
        JobStatus::Pending
    } else if completed == hosts.len() {
        JobStatus::Completed
    } else if failed == hosts.len() {
        JobStatus::Failed
    } else if completed + failed == hosts.len() {
        JobStatus::PartialFailure
    } else {
        JobStatus::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HostStatus::*;

    #[test]
    fn aggregation_table() {
        let cases: &[(&[HostStatus], bool, JobStatus)] = &[
            (&[], false, JobStatus::Pending),
            (&[], true, JobStatus::Failed),
            (&[Pending], false, JobStatus::Pending),
            (&[Pending, Pending], false, JobStatus::Pending),
            (&[Running], false, JobStatus::Running),
            (&[Retryable], false, JobStatus::Running),
            (&[Completed, Pending], false, JobStatus::Running),
            (&[Completed, Running], false, JobStatus::Running),
            (&[Completed, Retryable], false, JobStatus::Running),
            (&[Completed], false, JobStatus::Completed),
            (
                &[Completed, Completed, Completed],
                false,
                JobStatus::Completed,
            ),
            (&[Failed], false, JobStatus::Failed),
            (&[Failed, Failed], true, JobStatus::Failed),
            (&[Completed, Failed], false, JobStatus::PartialFailure),
            (
                &[Completed, Completed, Failed],
                true,
                JobStatus::PartialFailure,
            ),
        ];
        for (hosts, past, want) in cases {
            assert_eq!(aggregate(hosts, *past), *want, "{hosts:?} past={past}");
        }
    }

    fn rec(host: &str, status: HostStatus, attempts: u32, updated_us: i64) -> HostRecord<'_> {
        HostRecord {
            host,
            status,
            attempts,
            updated_us,
        }
    }

    const TIMING: Timing = Timing {
        deadline_us: 1_000,
        grace: Grace {
            running_us: 100,
            retryable_us: 500,
        },
    };

    #[test]
    fn silent_hosts_fail_after_the_deadline() {
        assert_eq!(TIMING.verdict(None, 1_000), Verdict::Own(Pending));
        assert_eq!(TIMING.verdict(None, 1_001), Verdict::NoResponse);
        let done = rec("a", Completed, 1, 10);
        assert_eq!(
            job_status(false, &["a", "b"], &[done], &TIMING, 1_001),
            JobStatus::PartialFailure
        );
        assert_eq!(
            job_status(true, &[], &[], &TIMING, 1_001),
            JobStatus::Failed
        );
    }

    #[test]
    fn a_host_silent_past_its_grace_is_lost() {
        let running = rec("a", Running, 1, 10);
        assert_eq!(TIMING.verdict(Some(&running), 1_100), Verdict::Own(Running));
        assert_eq!(TIMING.verdict(Some(&running), 1_101), Verdict::Lost);
        // A record written after the deadline restarts the grace from itself.
        let late = rec("a", Running, 2, 2_000);
        assert_eq!(TIMING.verdict(Some(&late), 2_100), Verdict::Own(Running));
        assert_eq!(TIMING.verdict(Some(&late), 2_101), Verdict::Lost);
        let waiting = rec("a", Retryable, 1, 10);
        assert_eq!(
            TIMING.verdict(Some(&waiting), 1_500),
            Verdict::Own(Retryable)
        );
        assert_eq!(TIMING.verdict(Some(&waiting), 1_501), Verdict::Lost);
        assert_eq!(Verdict::Lost.error(), Some(WORKER_LOST));
        let done = rec("a", Completed, 1, 10);
        assert_eq!(
            TIMING.verdict(Some(&done), i64::MAX),
            Verdict::Own(Completed)
        );
        assert_eq!(
            job_status(false, &["a"], &[running], &TIMING, 1_101),
            JobStatus::Failed
        );
        assert_eq!(TIMING.next_change(&[running], 0), Some(1_000));
        assert_eq!(TIMING.next_change(&[running], 1_001), Some(1_100));
        assert_eq!(TIMING.next_change(&[done], 1_001), None);
    }

    #[test]
    fn the_latest_or_completed_delivery_decides_an_any_job() {
        let host = |rs: &[HostRecord<'static>]| any_target_decider(rs).map(|r| r.host);
        assert_eq!(
            host(&[rec("a", Running, 1, 5), rec("b", Completed, 2, 9)]),
            Some("b")
        );
        assert_eq!(
            host(&[rec("a", Running, 1, 5), rec("b", Running, 2, 1)]),
            Some("b")
        );
        assert_eq!(
            host(&[rec("a", Completed, 1, 5), rec("b", Retryable, 2, 9)]),
            Some("a")
        );
        // Exact ties: the same host whatever the order.
        let (x, y) = (rec("x", Running, 1, 5), rec("y", Running, 1, 5));
        assert_eq!(host(&[x, y]), host(&[y, x]));
        assert_eq!(host(&[]), None);
    }

    #[test]
    fn status_names_and_aliases() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(s));
        }
        assert_eq!("submitted".parse::<JobStatus>(), Ok(JobStatus::Pending));
        assert_eq!("processing".parse::<JobStatus>(), Ok(JobStatus::Running));
        assert!("bogus"
            .parse::<JobStatus>()
            .is_err_and(|e| e.contains("bogus")));
        assert_eq!(
            serde_json::to_string(&JobStatus::PartialFailure)
                .ok()
                .as_deref(),
            Some("\"partial_failure\"")
        );
    }
}
