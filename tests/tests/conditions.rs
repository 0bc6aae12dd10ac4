//! Node conditions in heartbeats, from a fixture `host_root` (a temp tree with its own /proc): a
//! worker under memory pressure and high load says so in `GET /job/workers`, and when the load drops
//! `HighLoad` turns false with a new transition time while `MemoryPressure` keeps its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use osapi_tests::{wait_until, Cluster, Options};

const DEADLINE: Duration = Duration::from_secs(20);

/// A host root removed on drop: /proc/{loadavg,meminfo,uptime,self/mounts} as the test writes them.
struct HostRoot(PathBuf);

impl HostRoot {
    fn new() -> HostRoot {
        let dir = std::env::temp_dir().join(format!("osapi-conditions-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("proc/self")).expect("create fixture dirs");
        let root = HostRoot(dir);
        root.write("proc/uptime", "100.00 200.00\n");
        // No real filesystem: DiskPressure is false ("no real filesystem found").
        root.write("proc/self/mounts", "proc /proc proc rw 0 0\n");
        // 95% of memory used.
        root.write(
            "proc/meminfo",
            "MemTotal:        1000000 kB\nMemFree:           10000 kB\nMemAvailable:      50000 kB\n",
        );
        root.write("proc/loadavg", "9999.00 1.00 1.00 1/100 4242\n");
        root
    }

    /// Replaces a file whole (write to a temp name, then rename: the worker never reads half of it).
    fn write(&self, rel: &str, text: &str) {
        let path = self.0.join(rel);
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).expect("write fixture file");
        std::fs::rename(&tmp, &path).expect("rename fixture file");
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for HostRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn conditions(cluster: &Cluster) -> Vec<Value> {
    let body = cluster.http("GET", "/job/workers", None).body;
    body["workers"][0]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn find<'a>(list: &'a [Value], kind: &str) -> &'a Value {
    list.iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no condition {kind} in {list:?}"))
}

#[test]
fn a_fixture_host_shows_its_conditions_and_when_they_changed() {
    let root = HostRoot::new();
    let options = Options {
        worker_yaml: vec![("host_root".into(), format!("'{}'", root.path().display()))],
        ..Options::default()
    };
    let cluster = Cluster::start_with(&[("fx1", &[], 2)], &options);
    wait_until("the first conditions", DEADLINE, || {
        conditions(&cluster).len() == 3
    });
    let first = conditions(&cluster);
    let kinds: Vec<&str> = first.iter().filter_map(|c| c["type"].as_str()).collect();
    assert_eq!(kinds, ["MemoryPressure", "HighLoad", "DiskPressure"]);
    assert_eq!(find(&first, "MemoryPressure")["status"], true, "{first:?}");
    assert!(
        find(&first, "MemoryPressure")["message"]
            .as_str()
            .is_some_and(|m| m.contains("95%")),
        "{first:?}"
    );
    assert_eq!(find(&first, "HighLoad")["status"], true, "{first:?}");
    assert_eq!(find(&first, "DiskPressure")["status"], false, "{first:?}");
    let memory_since = find(&first, "MemoryPressure")["last_transition_us"].clone();
    let load_since = find(&first, "HighLoad")["last_transition_us"].as_i64();

    root.write("proc/loadavg", "0.01 0.01 0.01 1/100 4242\n");
    wait_until("HighLoad to clear", DEADLINE, || {
        find(&conditions(&cluster), "HighLoad")["status"] == false
    });
    let now = conditions(&cluster);
    assert!(
        find(&now, "HighLoad")["last_transition_us"].as_i64() > load_since,
        "a change moves its time: {now:?}"
    );
    assert_eq!(
        find(&now, "MemoryPressure")["last_transition_us"],
        memory_since,
        "an unchanged condition keeps its time: {now:?}"
    );
}
