//! The threads the NATS connection's reading thread wakes run as `SCHED_BATCH`, so a wake-up does not
//! preempt that thread while it still has deliveries to hand out: the worker's pool threads and the
//! API's connection threads that have handled a request. Every other thread keeps the default policy.

use serde_json::json;

use osapi_tests::Cluster;

const SCHED_OTHER: i32 = 0;
const SCHED_BATCH: i32 = 3;

/// `(thread name, scheduling policy)` of each thread of `pid`, from `/proc/PID/task/TID/stat` (field
/// 41, counted from the `)` that ends the name, which may hold spaces).
fn threads(pid: u32) -> Vec<(String, i32)> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap_or_else(|e| panic!("{e}"));
    dir.filter_map(Result::ok)
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let name = stat.get(open + 1..close)?.to_string();
            let policy = stat.get(close + 2..)?.split(' ').nth(38)?.parse().ok()?;
            Some((name, policy))
        })
        .collect()
}

#[test]
fn the_threads_the_reading_thread_wakes_run_as_batch_and_no_other() {
    let cluster = Cluster::start(&[("w1", &[], 2)]);
    let job = cluster.run_job("test.ping.do", json!({}), "w1");
    assert_eq!(job["status"], "completed");

    let worker = threads(cluster.workers[0].pid());
    let pool: Vec<_> = worker
        .iter()
        .filter(|(n, _)| n.starts_with("job-"))
        .collect();
    let pool_threads = pool
        .iter()
        .filter(|(n, _)| n[4..].parse::<u32>().is_ok())
        .count();
    assert_eq!(pool_threads, 2, "max_jobs pool threads: {worker:?}");
    for (name, policy) in &worker {
        let is_pool = name
            .strip_prefix("job-")
            .is_some_and(|n| n.parse::<u32>().is_ok());
        let want = if is_pool { SCHED_BATCH } else { SCHED_OTHER };
        assert_eq!(*policy, want, "worker thread {name}: {worker:?}");
    }

    let api = threads(cluster.api.pid());
    let served: Vec<_> = api.iter().filter(|(n, _)| n == "http-conn").collect();
    assert!(!served.is_empty(), "no connection thread: {api:?}");
    for (name, policy) in &api {
        if name != "http-conn" {
            assert_eq!(*policy, SCHED_OTHER, "API thread {name}: {api:?}");
        }
    }
    assert!(
        served.iter().any(|(_, policy)| *policy == SCHED_BATCH),
        "a connection thread that served the job's requests runs as batch: {api:?}"
    );
}
