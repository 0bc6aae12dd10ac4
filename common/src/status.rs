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

/// Error recorded for a host that never answered within the job's timeout.
pub const NO_RESPONSE: &str = "no response";

/// A host's status as a reader sees it: its own record, or `failed: no response` when it stayed silent
/// past the deadline, or pending.
pub fn effective_host_status(own: Option<HostStatus>, past_deadline: bool) -> HostStatus {
    match own {
        Some(s) => s,
        None if past_deadline => HostStatus::Failed,
        None => HostStatus::Pending,
    }
}

/// The one host whose state decides an `_any` job, from `(host, status, attempts)` of the hosts that wrote
/// a state. One delivery runs an `_any` job at a time; a host that took an earlier delivery and then died
/// (SIGKILL, power loss) keeps its `running` state for ever, and must not hold the job `running` once
/// another host took the redelivery. The host that completed it decides; else the latest delivery
/// (highest attempt number) does.
pub fn any_target_decider<'a>(
    hosts: impl Iterator<Item = (&'a str, HostStatus, u32)>,
) -> Option<&'a str> {
    let rank = |status: HostStatus, attempts: u32| (status == HostStatus::Completed, attempts);
    hosts
        .max_by_key(|(_, status, attempts)| rank(*status, *attempts))
        .map(|(host, _, _)| host)
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

    #[test]
    fn silent_hosts_fail_after_the_deadline() {
        assert_eq!(effective_host_status(None, false), Pending);
        assert_eq!(effective_host_status(None, true), Failed);
        assert_eq!(effective_host_status(Some(Running), true), Running);
        let hosts = [Completed, effective_host_status(None, true)];
        assert_eq!(aggregate(&hosts, true), JobStatus::PartialFailure);
    }

    #[test]
    fn the_latest_or_completed_delivery_decides_an_any_job() {
        let dead_then_done = [("a", Running, 1), ("b", Completed, 2)];
        assert_eq!(any_target_decider(dead_then_done.into_iter()), Some("b"));
        let dead_then_running = [("a", Running, 1), ("b", Running, 2)];
        assert_eq!(any_target_decider(dead_then_running.into_iter()), Some("b"));
        let done_then_stale = [("a", Completed, 1), ("b", Retryable, 2)];
        assert_eq!(any_target_decider(done_then_stale.into_iter()), Some("a"));
        assert_eq!(any_target_decider(std::iter::empty()), None);
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
