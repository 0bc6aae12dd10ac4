//! The audit trail written in batches: what queues while NATS is slow goes out as one message, and
//! `GET /audit` and `osapi audit export` still give every entry once, newest first, with the same
//! total and paging as one entry a message; an entry written before batching (one JSON object a
//! message, as earlier versions of the API wrote) stays readable.

use osapi_common::names::Names;
use osapi_tests::{admin_token, command, request, wait_until, Cluster, ExtraConfig, Options};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);
/// Refused requests sent while nats-server is frozen: they queue for the publisher.
const QUEUED: usize = 50;

fn page(cluster: &Cluster, offset: usize, limit: usize) -> (u64, Vec<Value>) {
    let resp = cluster.http(
        "GET",
        &format!("/audit?limit={limit}&offset={offset}"),
        None,
    );
    assert_eq!(resp.status, 200, "{}", resp.text);
    let items = resp.body["items"].as_array().cloned().unwrap_or_default();
    (resp.body["total_items"].as_u64().unwrap_or(0), items)
}

fn retry_path(n: usize) -> String {
    format!("/job/00000000-0000-4000-8000-{n:012}/retry")
}

#[test]
fn entries_queued_together_are_one_message_and_read_back_like_single_ones() {
    let extra = ExtraConfig {
        nats_yaml: vec![("request_timeout".into(), "'10s'".into())],
        ..ExtraConfig::default()
    };
    let cluster = Cluster::start_extra(&[], &Options::default(), &extra);
    let base = cluster.api.base_url();
    let names = Names::new("t1", "JOBS", "job-queue", "job-responses", "jobs-worker");
    let nats = cluster.nats.bus("audit batch test");

    // An entry as the API wrote them before batching: one JSON object, one message.
    let legacy = json!({
        "id": "legacy-1", "timestamp": "2026-12-01T00:00:00Z", "user": "old", "roles": ["admin"],
        "method": "DELETE", "path": "/legacy", "code": 204, "duration_ms": 1, "source": "", "job_id": null,
    });
    nats.js_publish(
        &names.audit_subject(),
        "legacy-1",
        legacy.to_string().as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // NATS frozen: the first entry's write waits (within the 10 s timeout), the rest queue behind it.
    {
        let _paused = cluster.nats.paused();
        for n in 0..QUEUED {
            let refused = request(&base, "POST", &retry_path(n), None).expect("an answer");
            assert_eq!(refused.status, 401, "{}", refused.text);
        }
    }
    let total = (QUEUED + 1) as u64;
    wait_until("every entry on record", DEADLINE, || {
        page(&cluster, 0, 1).0 == total
    });
    let info = nats
        .js_api(&format!("STREAM.INFO.{}", names.audit_stream()), &json!({}))
        .unwrap_or_else(|e| panic!("{e}"));
    let messages = info["state"]["messages"].as_u64().unwrap_or(0);
    assert!(
        (2..=6).contains(&messages),
        "{total} entries in {messages} messages: the queued ones were not batched\n{info}"
    );

    // One page of everything: each entry once, the old one oldest.
    let (t, all) = page(&cluster, 0, 1000);
    assert_eq!(t, total);
    let paths: Vec<&str> = all.iter().filter_map(|e| e["path"].as_str()).collect();
    assert_eq!(paths.len(), QUEUED + 1, "{paths:?}");
    assert_eq!(
        all.last(),
        Some(&legacy),
        "the old entry reads back as it was"
    );
    let want: BTreeSet<String> = (0..QUEUED).map(retry_path).collect();
    let got: BTreeSet<String> = paths[..QUEUED].iter().map(|p| p.to_string()).collect();
    assert_eq!(got, want);
    let ids: BTreeSet<&str> = all.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), QUEUED + 1, "ids are unique");

    // Small pages walk the same list, across batch boundaries, with the same total each time.
    let mut walked = Vec::new();
    for offset in (0..QUEUED + 5).step_by(7) {
        let (t, items) = page(&cluster, offset, 7);
        assert_eq!(t, total, "total at offset {offset}");
        walked.extend(items);
    }
    assert_eq!(walked, all, "pages of 7 = one page of all");
    let (_, past) = page(&cluster, QUEUED + 1, 10);
    assert!(past.is_empty(), "{past:?}");

    // The CLI's export: every entry once, oldest first.
    let dir = std::env::temp_dir().join(format!("osapi-audit-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("empty.yaml");
    std::fs::write(&config, "").expect("config");
    let out = dir.join("audit.jsonl");
    let exported = command("osapi")
        .env("OSAPI_URL", &base)
        .env("OSAPI_TOKEN", admin_token())
        .arg("--config")
        .arg(&config)
        .args(["audit", "export", "--out"])
        .arg(&out)
        .output()
        .expect("run osapi");
    assert!(exported.status.success(), "{exported:?}");
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .expect("export file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let mut oldest_first = all.clone();
    oldest_first.reverse();
    assert_eq!(lines, oldest_first);
}

#[test]
fn two_apis_appending_at_once_number_every_entry_once() {
    let cluster = Cluster::start(&[]);
    let other = osapi_tests::Api::start(&cluster.nats.url(), &Options::default());
    let bases = [cluster.api.base_url(), other.base_url()];
    const EACH: usize = 60;
    // Four clients, two on each API: both publishers append to the same stream at once, so each one's
    // numbering is overtaken by the other's writes again and again.
    std::thread::scope(|s| {
        for t in 0..4 {
            let base = &bases[t % 2];
            s.spawn(move || {
                for n in 0..EACH {
                    let refused =
                        request(base, "POST", &retry_path(t * EACH + n), None).expect("an answer");
                    assert_eq!(refused.status, 401, "{}", refused.text);
                }
            });
        }
    });
    let total = (4 * EACH) as u64;
    let mut last = 0;
    let started = std::time::Instant::now();
    while last < total && started.elapsed() < DEADLINE {
        last = page(&cluster, 0, 1).0;
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(
        last,
        total,
        "entries counted: {last} of {total}; {} listed\n{}\n{}",
        page(&cluster, 0, 1000).1.len(),
        cluster.api.log_tail(),
        other.log_tail()
    );
    let (t, all) = page(&cluster, 0, 1000);
    assert_eq!(t, total);
    let paths: BTreeSet<String> = all
        .iter()
        .filter_map(|e| e["path"].as_str().map(String::from))
        .collect();
    let want: BTreeSet<String> = (0..4 * EACH).map(retry_path).collect();
    assert_eq!(paths, want, "every entry once");
    assert_eq!(all.len(), 4 * EACH);
    let mut walked = Vec::new();
    for offset in (0..4 * EACH).step_by(50) {
        walked.extend(page(&cluster, offset, 50).1);
    }
    assert_eq!(walked, all, "pages of 50 = one page of all");
    assert!(
        !cluster.api.log_tail().contains("not written")
            && !other.log_tail().contains("not written"),
        "no entry lost to the race:\n{}\n{}",
        cluster.api.log_tail(),
        other.log_tail()
    );
}
