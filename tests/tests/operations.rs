//! Every operation through the real API and worker: the query operations on this machine (result shapes and
//! units), the same ones on a worker whose `host_root` is a copy of `tests/fixtures/host-root` (exact figures,
//! and `network.dns.update` rewriting that copy, never the machine's /etc), a real ping of 127.0.0.1, the refused
//! reboot and shutdown, and bad data failing at once with the field named.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use osapi_tests::{Cluster, Options};

const JOB_DEADLINE: Duration = Duration::from_secs(30);

/// The `result` of a job that must have completed.
fn completed(job: &Value) -> &Value {
    assert_eq!(job["status"], "completed", "{job:#}");
    &job["result"]
}

/// Asserts the job failed at once (one attempt) with an error containing every one of `needles`.
fn failed_with(job: &Value, host: &str, needles: &[&str]) {
    assert_eq!(job["status"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap_or_default();
    for needle in needles {
        assert!(
            error.contains(needle),
            "error should name {needle}: {job:#}"
        );
    }
    if let Some(attempts) = job["worker_states"][host]["attempts"].as_u64() {
        assert_eq!(attempts, 1, "bad input is never retried: {job:#}");
    }
}

fn number(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} should be a number, got {value}"))
}

/// Runs every job of `ops` at once on `host` and returns their details in the same order.
fn run_all(cluster: &Cluster, host: &str, ops: &[(&str, Value)]) -> Vec<Value> {
    let ids: Vec<String> = ops
        .iter()
        .map(|(op, data)| cluster.create_job(op, data.clone(), host))
        .collect();
    ids.iter()
        .map(|id| cluster.wait_job(id, JOB_DEADLINE))
        .collect()
}

fn check_memory(memory: &Value) {
    let total = number(&memory["total"], "memory.total");
    assert!(total > 0.0, "{memory}");
    for key in ["available", "free", "used"] {
        let value = number(&memory[key], key);
        assert!(
            (0.0..=total).contains(&value),
            "{key} within total: {memory}"
        );
    }
    let used = number(&memory["used"], "used");
    let available = number(&memory["available"], "available");
    assert_eq!(
        used,
        total - available,
        "used = total - available: {memory}"
    );
}

fn check_disks(disks: &Value) {
    let list = disks.as_array();
    let list = list.unwrap_or_else(|| panic!("disk.get answers a list: {disks}"));
    assert!(!list.is_empty(), "at least one real filesystem: {disks}");
    for disk in list {
        let mount = disk["mount"].as_str().unwrap_or_default();
        assert!(mount.starts_with('/'), "{disk}");
        let total = number(&disk["total"], "total");
        assert!(total > 0.0, "{disk}");
        assert!(number(&disk["used"], "used") <= total, "{disk}");
        assert!(number(&disk["free"], "free") <= total, "{disk}");
    }
}

fn check_dns(dns: &Value) {
    for key in ["servers", "search_domains"] {
        let list = dns[key].as_array();
        let list = list.unwrap_or_else(|| panic!("{key} should be a list: {dns}"));
        assert!(list.iter().all(Value::is_string), "{dns}");
    }
}

#[test]
fn query_operations_on_this_machine() {
    let cluster = Cluster::start(&[("web1", &[], 8)]);
    let ops = [
        ("system.hostname.get", json!({})),
        ("system.uptime.get", json!({})),
        ("system.os.get", json!({})),
        ("system.load.get", json!({})),
        ("system.memory.get", json!({})),
        ("system.disk.get", json!({})),
        ("system.status.get", json!({})),
        ("network.dns.get", json!({})),
    ];
    let jobs = run_all(&cluster, "web1", &ops);
    let [hostname, uptime, os, load, memory, disk, status, dns] = &jobs[..] else {
        panic!("one job per operation");
    };

    assert!(completed(hostname)["hostname"].is_string(), "{hostname:#}");
    assert!(number(&completed(uptime)["uptime_seconds"], "uptime") > 0.0);
    let os = completed(os);
    for key in ["distribution", "kernel", "arch"] {
        let value = os[key].as_str().unwrap_or_default();
        assert!(!value.is_empty(), "os.{key} non-empty: {os}");
    }
    assert!(os["version"].is_string() || os["version"].is_null(), "{os}");
    let load = completed(load);
    for key in ["load1", "load5", "load15"] {
        assert!(number(&load[key], key) >= 0.0, "{load}");
    }
    check_memory(completed(memory));
    check_disks(completed(disk));
    check_dns(completed(dns));

    let status = completed(status);
    assert!(status["hostname"].is_string(), "{status:#}");
    for part in ["uptime", "os", "load", "memory", "disk"] {
        assert!(!status[part].is_null(), "status.{part} present: {status:#}");
        assert!(
            status[part]["error"].is_null(),
            "status.{part} ok here: {status:#}"
        );
    }
    check_memory(&status["memory"]);
    check_disks(&status["disk"]);
}

/// A copy of `tests/fixtures/host-root`, removed when dropped.
struct FixtureRoot {
    path: PathBuf,
}

impl FixtureRoot {
    fn new() -> FixtureRoot {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/host-root");
        let path = std::env::temp_dir().join(format!("osapi-host-root-{}", uuid::Uuid::new_v4()));
        copy_tree(&source, &path);
        FixtureRoot { path }
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path.join(rel)).unwrap_or_default()
    }
}

impl Drop for FixtureRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create fixture copy");
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("fixture dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("fixture file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

#[test]
fn a_fixture_host_root_gives_its_figures_and_takes_dns_updates() {
    let root = FixtureRoot::new();
    let options = Options {
        worker_yaml: vec![("host_root".into(), format!("'{}'", root.path.display()))],
        ..Options::default()
    };
    let cluster = Cluster::start_with(&[("fx1", &[], 4)], &options);
    let ops = [
        ("system.uptime.get", json!({})),
        ("system.load.get", json!({})),
        ("system.memory.get", json!({})),
        ("system.os.get", json!({})),
        ("system.disk.get", json!({})),
        ("network.dns.get", json!({})),
    ];
    let jobs = run_all(&cluster, "fx1", &ops);
    assert_eq!(completed(&jobs[0]), &json!({"uptime_seconds": 86400.25}));
    assert_eq!(
        completed(&jobs[1]),
        &json!({"load1": 0.25, "load5": 0.5, "load15": 1.75})
    );
    assert_eq!(
        completed(&jobs[2]),
        &json!({
            "total": 4028248_u64 * 1024,
            "available": 3000000_u64 * 1024,
            "free": 512000_u64 * 1024,
            "used": (4028248_u64 - 3000000) * 1024,
        })
    );
    assert_eq!(completed(&jobs[3])["distribution"], "debian");
    assert_eq!(completed(&jobs[3])["version"], "12");
    let mounts: Vec<&str> = completed(&jobs[4])
        .as_array()
        .map(|l| l.iter().filter_map(|d| d["mount"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        mounts,
        ["/", "/etc"],
        "pseudo filesystems skipped: {:#}",
        jobs[4]
    );
    assert_eq!(
        completed(&jobs[5]),
        &json!({"servers": ["10.0.0.2", "10.0.0.3"], "search_domains": ["corp.example"]})
    );

    let original = root.read("etc/resolv.conf");
    let update =
        json!({"dns_servers": ["192.0.2.53", "2001:db8::53"], "search_domains": ["lab.example"]});
    let first = cluster.run_job("network.dns.update", update.clone(), "fx1");
    assert_eq!(completed(&first), &json!({"changed": true}));
    let written = root.read("etc/resolv.conf");
    assert!(
        written.contains("nameserver 192.0.2.53\nnameserver 2001:db8::53\n"),
        "{written}"
    );
    assert!(written.contains("search lab.example\n"), "{written}");
    assert!(
        written.contains("options edns0 timeout:2\n"),
        "options kept: {written}"
    );
    assert_eq!(
        root.read("etc/resolv.conf.bak"),
        original,
        "the previous file is kept"
    );

    let second = cluster.run_job("network.dns.update", update, "fx1");
    assert_eq!(
        completed(&second),
        &json!({"changed": false}),
        "same input, no change"
    );
    let dns = cluster.run_job("network.dns.get", json!({}), "fx1");
    assert_eq!(
        completed(&dns),
        &json!({"servers": ["192.0.2.53", "2001:db8::53"], "search_domains": ["lab.example"]})
    );

    let bad = json!({"dns_servers": ["10.0.0.256"], "search_domains": []});
    let job = cluster.run_job("network.dns.update", bad, "fx1");
    failed_with(&job, "fx1", &["dns_servers", "10.0.0.256"]);
    assert_eq!(
        root.read("etc/resolv.conf"),
        written,
        "a rejected update writes nothing"
    );
}

#[test]
fn ping_of_loopback_answers_every_packet() {
    let cluster = Cluster::start(&[("web1", &[], 2)]);
    let job = cluster.run_job(
        "network.ping.do",
        json!({"target": "127.0.0.1", "count": 2, "timeout": 2}),
        "web1",
    );
    let result = completed(&job);
    assert_eq!(result["sent"], 2, "{result}");
    assert_eq!(result["received"], 2, "{result}");
    assert_eq!(
        number(&result["loss_percent"], "loss_percent"),
        0.0,
        "{result}"
    );
    let min = number(&result["min_ms"], "min_ms");
    let avg = number(&result["avg_ms"], "avg_ms");
    let max = number(&result["max_ms"], "max_ms");
    assert!(0.0 <= min && min <= avg && avg <= max, "{result}");
}

#[test]
fn reboot_and_shutdown_are_refused_by_default() {
    let cluster = Cluster::start(&[("web1", &[], 2)]);
    for op in ["system.reboot.execute", "system.shutdown.execute"] {
        let job = cluster.run_job(op, json!({"delay_seconds": 600, "message": "test"}), "web1");
        failed_with(&job, "web1", &[op, "job.worker.allow_operations"]);
    }
}

#[test]
fn bad_data_fails_at_once_naming_the_field() {
    let cluster = Cluster::start(&[("web1", &[], 8)]);
    let cases = [
        (
            "network.ping.do",
            json!({"target": "127.0.0.1", "count": 0}),
            "count",
        ),
        (
            "network.ping.do",
            json!({"target": "127.0.0.1", "count": "2"}),
            "count",
        ),
        (
            "network.ping.do",
            json!({"target": "127.0.0.1", "timeout": 31}),
            "timeout",
        ),
        ("network.ping.do", json!({"target": "a;rm"}), "target"),
        (
            "network.ping.do",
            json!({"target": "127.0.0.1", "flood": true}),
            "flood",
        ),
        ("system.memory.get", json!({"unit": "MiB"}), "unit"),
        (
            "network.dns.get",
            json!({"interface_name": 7}),
            "interface_name",
        ),
        (
            "network.dns.update",
            json!({"dns_servers": ["x"], "search_domains": []}),
            "dns_servers",
        ),
        (
            "system.reboot.execute",
            json!({"delay_seconds": "soon"}),
            "delay_seconds",
        ),
    ];
    let ops: Vec<(&str, Value)> = cases
        .iter()
        .map(|(op, data, _)| (*op, data.clone()))
        .collect();
    let jobs = run_all(&cluster, "web1", &ops);
    for ((op, data, field), job) in cases.iter().zip(&jobs) {
        assert_eq!(job["status"], "failed", "{op} {data}: {job:#}");
        failed_with(job, "web1", &[op, field]);
    }
}

#[test]
fn workers_advertise_every_operation() {
    let cluster = Cluster::start(&[("web1", &[], 2)]);
    let resp = cluster.http("GET", "/job/workers", None);
    assert_eq!(resp.status, 200, "{}", resp.text);
    let operations = &resp.body["workers"][0]["operations"];
    let all = [
        "system.hostname.get",
        "system.uptime.get",
        "system.os.get",
        "system.load.get",
        "system.memory.get",
        "system.disk.get",
        "system.status.get",
        "network.dns.get",
        "network.dns.update",
        "network.ping.do",
        "system.reboot.execute",
        "system.shutdown.execute",
        "test.ping.do",
        "test.echo.do",
        "test.sleep.do",
        "test.fail.do",
    ];
    assert_eq!(operations, &json!(all), "{}", resp.text);
}
