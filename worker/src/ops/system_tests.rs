//! Unit tests of the `system.*.get` parsers and operations on fixture files and fixture host_root trees.

use super::*;
use crate::ops::tests_support::{fixture, TempRoot};
use crate::ops::ErrorKind;

const KIB: u64 = 1024;

#[test]
fn uptime_and_load_parse() {
    assert_eq!(parse_uptime(&fixture("uptime")), Ok(350735.47));
    assert_eq!(parse_loadavg(&fixture("loadavg")), Ok([0.52, 0.58, 1.07]));
    assert!(parse_uptime("").is_err());
    assert!(parse_uptime("-3 1").is_err());
    assert!(parse_loadavg("0.1 0.2").is_err());
    assert!(parse_loadavg("0.1 x 0.3 1/2 3").is_err());
}

#[test]
fn memory_is_in_bytes_and_used_is_total_minus_available() {
    let m = parse_meminfo(&fixture("meminfo")).expect("meminfo");
    assert_eq!(
        m,
        Memory {
            total: 16318412 * KIB,
            available: 9876544 * KIB,
            free: 1204560 * KIB,
            used: (16318412 - 9876544) * KIB,
        }
    );
    // Before Linux 3.14 there is no MemAvailable: free + buffers + cached stands in.
    let old = parse_meminfo(&fixture("meminfo-3.10")).expect("old meminfo");
    assert_eq!(old.available, (110452 + 20480 + 501760) * KIB);
    assert_eq!(old.used, old.total - old.available);
    let missing = parse_meminfo("MemFree: 1 kB\n");
    assert_eq!(missing, Err("no MemTotal line".to_string()));
}

#[test]
fn os_release_fields() {
    let cases = [
        ("os-release-debian", "debian", Some("12")),
        ("os-release-ubuntu", "ubuntu", Some("24.04")),
        ("os-release-alpine", "alpine", Some("3.20.3")),
        ("os-release-arch", "arch", None),
    ];
    for (name, id, version) in cases {
        let fields = parse_os_release(&fixture(name));
        assert_eq!(fields.get("ID").map(String::as_str), Some(id), "{name}");
        assert_eq!(
            fields.get("VERSION_ID").map(String::as_str),
            version,
            "{name}"
        );
    }
    let arch = parse_os_release(&fixture("os-release-arch"));
    assert_eq!(arch["NAME"], "Arch Linux");
    assert_eq!(arch["PRETTY_NAME"], "Arch \"rolling\" Linux");
}

/// A host_root with every file the `system.*` operations read.
fn full_root() -> TempRoot {
    let root = TempRoot::new("system");
    root.write("proc/uptime", &fixture("uptime"));
    root.write("proc/loadavg", &fixture("loadavg"));
    root.write("proc/meminfo", &fixture("meminfo"));
    root.write("proc/self/mounts", "/dev/sda1 / ext4 rw 0 0\n");
    root.write("usr/lib/os-release", &fixture("os-release-ubuntu"));
    root.symlink("../usr/lib/os-release", "etc/os-release");
    root
}

#[test]
fn operations_read_under_host_root() {
    let root = full_root();
    let ctx = root.ctx();
    let empty = json!({});
    assert_eq!(
        uptime_get(&empty, &ctx),
        Ok(json!({"uptime_seconds": 350735.47}))
    );
    assert_eq!(
        load_get(&empty, &ctx),
        Ok(json!({"load1": 0.52, "load5": 0.58, "load15": 1.07}))
    );
    let memory = memory_get(&empty, &ctx).expect("memory");
    assert_eq!(memory["total"], 16318412 * KIB);
    assert_eq!(memory["used"], (16318412 - 9876544) * KIB);
    let os = os_get(&empty, &ctx).expect("os");
    assert_eq!(os["distribution"], "ubuntu");
    assert_eq!(os["version"], "24.04");
    assert!(os["kernel"].as_str().is_some_and(|k| !k.is_empty()), "{os}");
    assert!(os["arch"].as_str().is_some_and(|a| !a.is_empty()), "{os}");
    let disk = disk_get(&empty, &ctx).expect("disk");
    assert_eq!(disk.as_array().map(Vec::len), Some(1), "{disk}");
}

#[test]
fn os_release_falls_back_to_usr_lib() {
    let root = TempRoot::new("system-os");
    root.write("usr/lib/os-release", &fixture("os-release-arch"));
    let os = os_get(&json!({}), &root.ctx()).expect("os");
    assert_eq!(os["distribution"], "arch");
    assert_eq!(os["version"], "rolling", "BUILD_ID stands in: {os}");
    let none = os_get(&json!({}), &TempRoot::new("system-none").ctx());
    assert!(none.is_err_and(|e| e.message.contains("etc/os-release")));
}

#[test]
fn status_has_every_part_and_reports_a_failed_one_inside() {
    let root = full_root();
    let status = status_get(&json!({}), &root.ctx()).expect("status");
    assert_eq!(status["hostname"], "web1");
    assert_eq!(status["uptime"]["uptime_seconds"], 350735.47);
    assert_eq!(status["load"]["load15"], 1.07);
    assert_eq!(status["memory"]["free"], 1204560 * KIB);
    assert_eq!(status["os"]["distribution"], "ubuntu");
    assert!(status["disk"].is_array(), "{status}");

    std::fs::remove_file(root.path.join("proc/meminfo")).expect("remove meminfo");
    let status = status_get(&json!({}), &root.ctx()).expect("status without meminfo");
    let error = status["memory"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("proc/meminfo"), "{status}");
    assert_eq!(status["load"]["load1"], 0.52, "other parts still there");
}

#[test]
fn a_missing_file_is_permanent_and_bad_data_names_the_field() {
    let ctx = TempRoot::new("system-empty").ctx();
    let err = load_get(&json!({}), &ctx).err();
    assert!(err.is_some_and(|e| e.kind == ErrorKind::Permanent && e.message.contains("loadavg")));
    for op in [
        uptime_get, os_get, load_get, memory_get, disk_get, status_get,
    ] {
        let err = op(&json!({"verbose": true}), &ctx).err();
        assert!(
            err.is_some_and(|e| e.message.contains("unknown field `verbose`")),
            "every system get takes {{}} only"
        );
    }
}
