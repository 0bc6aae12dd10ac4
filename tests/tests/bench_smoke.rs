//! Smoke run of `make bench` so it cannot rot: scripts/bench.sh with the debug binaries and tiny sizes
//! (`BENCH_PROFILE=debug BENCH_SMOKE=1`) starts its own nats-server, API and workers and runs every
//! phase. Asserts that it ends well, prints the table and writes results JSON with every section; never
//! a timing (a smoke run on a busy machine proves nothing about speed).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A smoke run takes ~10 s; a loaded machine may need more, a hung one gets stopped.
const RUN_WITHIN: Duration = Duration::from_secs(180);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// Runs the script, stopping it (SIGTERM: its trap ends the daemons) if it outlives [`RUN_WITHIN`].
fn run_smoke(dir: &Path, out: &Path) -> (bool, String, String) {
    let bin_dir = osapi_tests::binary("osapi-bench")
        .parent()
        .expect("binary dir")
        .to_path_buf();
    let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
    let mut cmd = Command::new("bash");
    cmd.arg(workspace_root().join("scripts/bench.sh"))
        .env("BENCH_PROFILE", "debug")
        .env("BENCH_SMOKE", "1")
        .env("BENCH_BIN_DIR", &bin_dir)
        .env("BENCH_OUT", out)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr).expect("stderr file"));
    for (k, _) in std::env::vars() {
        if k.starts_with("BENCH_") || k == "JOBS" {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("start scripts/bench.sh");
    let started = Instant::now();
    let ok = loop {
        if let Some(status) = child.try_wait().expect("wait for scripts/bench.sh") {
            break status.success();
        }
        if started.elapsed() > RUN_WITHIN {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (ok, read(&stdout), read(&stderr))
}

#[test]
fn bench_smoke_runs_every_phase_and_writes_json() {
    let dir = std::env::temp_dir().join(format!("osapi-bench-smoke-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("results.json");
    let (ok, stdout, stderr) = run_smoke(&dir, &out);
    let json_text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        ok,
        "scripts/bench.sh failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );

    for row in [
        "1 raw NATS floor, sequential",
        "1 NATS messages per job, floor",
        "2 NATS messages per job, HTTP",
        "2 NATS messages HTTP / floor",
        "3 NATS messages per job under load, HTTP",
        "2 HTTP create + wait, sequential",
        "2 round trip / floor",
        "3 throughput:",
        "3 raw NATS floor, 4 lanes, 2 turns with HTTP",
        "3 each turn: HTTP / floor CPU a job",
        "3 CPU per job in all, HTTP / raw floor",
        "3 one request a job (POST /job?wait=), lean",
        "3 one request a job: CPU per job",
        "4 broadcast _all to 2 workers",
        "5 bucket of 50 jobs",
        "5 bucket of 100 jobs",
        "GET /job?status=failed&limit=50",
        "6 API RSS idle / under load",
        "6 osapi-worker size",
        "6 start to /health/ready",
        "targets",
        "7 3 workers on nats-server",
        "joined / consumers",
        "broadcast _all (2 runs)",
        "GET /job/workers",
        "fleet targets",
    ] {
        assert!(stdout.contains(row), "table lacks '{row}':\n{stdout}");
    }
    assert!(
        stdout.contains("PASS") || stdout.contains("MISS"),
        "no verdicts:\n{stdout}"
    );

    let v: Value = serde_json::from_str(&json_text)
        .unwrap_or_else(|e| panic!("results are not JSON ({e}):\n{json_text}"));
    for section in [
        "config",
        "floor",
        "round_trip",
        "throughput",
        "broadcast",
        "scaling",
        "footprint",
        "targets",
        "fleet",
    ] {
        assert!(v.get(section).is_some(), "no '{section}' in {v:#}");
    }
    assert_eq!(v["config"]["jobs"], 5, "smoke sizes were used: {v:#}");
    assert_eq!(v["floor"]["n"], 5, "{v:#}");
    assert_eq!(v["round_trip"]["latency"]["n"], 5, "{v:#}");
    // The target's ratio comes from floor and HTTP jobs taken in turn.
    let turns = &v["round_trip"]["interleaved"];
    assert_eq!(turns["floor"]["n"], 5, "{v:#}");
    assert_eq!(turns["http"]["n"], 5, "{v:#}");
    assert!(turns["ratio_p50"].as_f64() > Some(0.0), "{v:#}");
    assert!(v["throughput"]["completed"].as_u64() > Some(0), "{v:#}");
    assert_eq!(v["throughput"]["failed"], 0, "{v:#}");
    for cpu in ["cpu_us_per_job_all", "raw_floor_cpu_us_per_job_all"] {
        assert!(v["throughput"][cpu].as_f64() > Some(0.0), "{cpu}: {v:#}");
    }
    // Each of the smoke run's two turns on its own, beside the pooled share.
    let each = v["throughput"]["turns"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(each.len(), 2, "{v:#}");
    for t in &each {
        for figure in [
            "floor_share_percent",
            "one_request_floor_share_percent",
            "raw_floor_cpu_us_per_job_all",
            "cpu_us_per_job_all",
        ] {
            assert!(t[figure].as_f64() > Some(0.0), "{figure}: {v:#}");
        }
    }
    let one = &v["throughput"]["one_request"];
    assert!(one["completed"].as_u64() > Some(0), "{v:#}");
    assert_eq!(one["failed"], 0, "{v:#}");
    assert!(one["cpu_us_per_job_all"].as_f64() > Some(0.0), "{v:#}");
    assert_eq!(v["broadcast"]["workers"], 2, "{v:#}");
    let sizes: Vec<u64> = v["scaling"]
        .as_array()
        .map(|l| l.iter().filter_map(|x| x["jobs"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(sizes, [50, 100], "{v:#}");
    for level in v["scaling"].as_array().into_iter().flatten() {
        assert_eq!(
            level["endpoints"].as_array().map(Vec::len),
            Some(4),
            "{level:#}"
        );
    }
    let f = &v["footprint"];
    for key in [
        "api_rss_idle_mib",
        "api_rss_load_mib",
        "worker_rss_idle_mib",
        "worker_rss_load_mib",
    ] {
        assert!(
            f[key].as_f64().is_some_and(|m| m > 0.0),
            "footprint.{key}: {f:#}"
        );
    }
    for bin in ["osapi-api", "osapi-worker", "osapi"] {
        assert!(
            f["binary_bytes"][bin].as_u64() > Some(0),
            "size of {bin}: {f:#}"
        );
    }
    assert!(f["ready"]["n"].as_u64() > Some(0), "{f:#}");
    let fleet = &v["fleet"];
    assert_eq!(fleet["workers"], 3, "{fleet:#}");
    assert_eq!(
        fleet["servers"].as_array().map(Vec::len),
        Some(1),
        "{fleet:#}"
    );
    // The shared `_any` consumer and one (2.10+) or three (2.9) of each worker's own.
    let consumers = fleet["consumers"].as_u64().unwrap_or(0);
    assert!(consumers == 4 || consumers == 10, "{fleet:#}");
    assert_eq!(fleet["broadcast"]["n"], 2, "{fleet:#}");
    for key in ["broadcast_p50_ms", "idle_nats_cpu_percent", "join_s"] {
        assert!(
            fleet[key].as_f64().is_some_and(|x| x >= 0.0),
            "fleet.{key}: {fleet:#}"
        );
    }
    assert!(fleet["workers_bytes"].as_u64() > Some(0), "{fleet:#}");
    // Messages per job, from nats-server's counters: a job cannot take fewer than its KV write and
    // its notification, whichever way it goes.
    let per_job = &v["nats_per_job"];
    for phase in ["floor", "round_trip", "throughput"] {
        for key in [
            "in_msgs_per_job",
            "out_msgs_per_job",
            "msgs_per_job",
            "in_bytes_per_job",
        ] {
            assert!(
                per_job[phase][key].as_f64().is_some_and(|x| x >= 2.0),
                "nats_per_job.{phase}.{key}: {per_job:#}"
            );
        }
        assert!(per_job[phase]["by_side"].is_object(), "{per_job:#}");
    }
    for side in ["api", "workers"] {
        assert!(
            per_job["round_trip"]["by_side"][side]["in_msgs_per_job"].as_f64() > Some(0.0),
            "the {side}'s messages counted: {per_job:#}"
        );
    }
    assert!(per_job["ratio_msgs"].as_f64().is_some(), "{per_job:#}");
    let targets = v["targets"].as_array().cloned().unwrap_or_default();
    assert!(targets.len() >= 18, "every target checked: {targets:#?}");
    // Issue 13's targets, each with a verdict (the fleet's three are in the same list).
    for name in [
        "round trip p50 / floor p50",
        "throughput / raw floor (same lanes)",
        "throughput / raw floor, one request a job",
        "nats-server CPU per HTTP job / per raw job",
        "API RSS under load",
        "API RSS with 100 jobs in the bucket",
        "broadcast p50 (nats-server",
        "idle nats-server CPU (nats-server",
        "GET /job/workers p50 (nats-server",
    ] {
        assert!(
            targets
                .iter()
                .any(|t| t["target"].as_str().is_some_and(|n| n.starts_with(name))),
            "no target '{name}': {targets:#?}"
        );
        assert!(
            stdout.contains(name),
            "table lacks target '{name}':\n{stdout}"
        );
    }
    assert!(
        targets.iter().all(|t| t["pass"].is_boolean()),
        "{targets:#?}"
    );
}
