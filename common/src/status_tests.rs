//! Unit tests of `status.rs`: the aggregation table, verdicts by the clock (deadline, grace,
//! cancellation), the host that decides an `_any` job, and the status names.

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
        (&[Cancelled], false, JobStatus::Cancelled),
        (&[Completed, Failed, Cancelled], false, JobStatus::Cancelled),
        (&[Cancelled, Running], false, JobStatus::Running),
        (&[Cancelled, Pending], false, JobStatus::Running),
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
    cancelled: false,
};

#[test]
fn a_cancelled_job_is_cancelled_once_nobody_runs_it() {
    let cancelled = Timing {
        cancelled: true,
        ..TIMING
    };
    let (running, waiting, done) = (
        rec("a", Running, 1, 10),
        rec("b", Retryable, 1, 10),
        rec("c", Completed, 1, 10),
    );
    assert_eq!(cancelled.verdict(None, 5), Verdict::Cancelled);
    assert_eq!(cancelled.verdict(None, 5_000), Verdict::Cancelled);
    assert_eq!(cancelled.verdict(Some(&waiting), 5), Verdict::Cancelled);
    assert_eq!(cancelled.verdict(Some(&running), 5), Verdict::Own(Running));
    assert_eq!(cancelled.verdict(Some(&running), 1_101), Verdict::Lost);
    assert_eq!(cancelled.verdict(Some(&done), 5), Verdict::Own(Completed));
    let all = ["a", "b", "c", "d"];
    assert_eq!(
        job_status(false, &all, &[running, waiting, done], &cancelled, 5),
        JobStatus::Running,
        "a host still runs it"
    );
    let stopped = rec("a", Cancelled, 1, 20);
    assert_eq!(
        job_status(false, &all, &[stopped, waiting, done], &cancelled, 5),
        JobStatus::Cancelled,
        "finished hosts keep their result, the job is cancelled"
    );
    assert_eq!(
        job_status(true, &[], &[], &cancelled, 5),
        JobStatus::Cancelled
    );
    assert_eq!(
        job_status(true, &[], &[running], &cancelled, 5),
        JobStatus::Running
    );
    assert_eq!(job_status(true, &[], &[], &TIMING, 5), JobStatus::Pending);
}

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
