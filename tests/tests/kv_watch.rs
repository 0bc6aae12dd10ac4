//! A bucket watch on the real nats-server (`.ci/run` runs this file against 2.9 and 2.15): its replay
//! consumer (the last record of each key) gives way, once the replay is done, to one that delivers every
//! record after the last one handed out, and nothing is lost or repeated on the way, not even the
//! records the replay consumer had already pushed and the watch had not read. The API's watches leave
//! no replay consumer behind. (nats-server 2.9.10 recounts a caught-up last-per-key consumer's pending
//! records over every key of the bucket at each record it delivers.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use osapi_bus::{Bus, KvEntry, KvWatch, StreamConfig, WatchApply};
use osapi_tests::{wait_until, Cluster, NatsServer};

const BUCKET: &str = "watched";

fn bucket(bus: &Bus) {
    let cfg = StreamConfig {
        max_age: Duration::ZERO,
        max_msgs: -1,
        max_bytes: -1,
        storage: "file".into(),
        replicas: 1,
        discard: "new".into(),
        max_consumers: -1,
    };
    bus.kv_ensure(BUCKET, &cfg)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A connection to `nats` whose bucket holds `k0` to `k9` (revisions 1 to 10).
fn ten_keys(nats: &NatsServer) -> Bus {
    let bus = nats.bus("kv watch test");
    bucket(&bus);
    for i in 0..10 {
        bus.kv_put(BUCKET, &format!("k{i}"), b"v1")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    bus
}

/// Every consumer of `stream`: `(name, config)`.
fn consumers(bus: &Bus, stream: &str) -> Vec<(String, Value)> {
    let list = bus
        .js_api(&format!("CONSUMER.LIST.{stream}"), &json!({}))
        .unwrap_or_else(|e| panic!("{e}"));
    list["consumers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("").to_string(),
                        c["config"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The next `n` records of the watch, each within 5 s.
fn read(watch: &mut KvWatch, n: usize) -> Vec<KvEntry> {
    let mut got = Vec::new();
    while got.len() < n {
        match watch.next(Duration::from_secs(5)) {
            Ok(Some(entry)) => got.push(entry),
            Ok(None) => panic!("no record within 5 s after {} of {n}", got.len()),
            Err(e) => panic!("watch failed after {} of {n}: {e}", got.len()),
        }
    }
    got
}

fn keys_and_revisions(entries: &[KvEntry]) -> Vec<(String, u64)> {
    entries
        .iter()
        .map(|e| (e.key.clone(), e.revision))
        .collect()
}

#[test]
fn a_replay_gives_way_to_a_consumer_from_its_last_record_and_loses_nothing() {
    let nats = NatsServer::start();
    let bus = ten_keys(&nats);
    let mut watch = bus.kv_watch(BUCKET, None).unwrap_or_else(|e| panic!("{e}"));
    let replayed = read(&mut watch, 10);
    assert!(watch.caught_up());
    let expected: Vec<(String, u64)> = (0..10).map(|i| (format!("k{i}"), i + 1)).collect();
    assert_eq!(keys_and_revisions(&replayed), expected);
    let stream = format!("KV_{BUCKET}");
    let before = consumers(&bus, &stream);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].1["deliver_policy"], "last_per_subject");

    // Written after the replay's last record: the replay consumer pushes them into the watch's inbox
    // before the watch reads on (and moves to its next consumer).
    for key in ["k10", "k11", "k12", "k0"] {
        bus.kv_put(BUCKET, key, b"v2")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let replay_consumer = before[0].0.clone();
    wait_until(
        "the replay consumer to push the 4 new records",
        Duration::from_secs(5),
        || {
            bus.js_api(
                &format!("CONSUMER.INFO.{stream}.{replay_consumer}"),
                &json!({}),
            )
            .map(|info| info["delivered"]["consumer_seq"] == 14)
            .unwrap_or(false)
        },
    );
    let after = read(&mut watch, 4);
    assert_eq!(
        keys_and_revisions(&after),
        vec![
            ("k10".to_string(), 11),
            ("k11".to_string(), 12),
            ("k12".to_string(), 13),
            ("k0".to_string(), 14)
        ],
        "each record once, in order"
    );
    let now = consumers(&bus, &stream);
    assert_eq!(now.len(), 1, "the replay consumer is gone: {now:?}");
    assert_eq!(now[0].1["deliver_policy"], "by_start_sequence", "{now:?}");
    assert_eq!(now[0].1["opt_start_seq"], 11, "{now:?}");
    assert!(watch.caught_up());

    bus.kv_delete(BUCKET, "k1")
        .unwrap_or_else(|e| panic!("{e}"));
    let deleted = read(&mut watch, 1);
    assert_eq!(keys_and_revisions(&deleted), vec![("k1".to_string(), 15)]);
    assert_eq!(deleted[0].op, osapi_bus::KvOp::Delete);
    assert!(
        matches!(watch.next(Duration::from_millis(300)), Ok(None)),
        "nothing more: no record came twice"
    );
    bus.kv_watch_verify(&watch)
        .unwrap_or_else(|e| panic!("the server sent no more than arrived: {e}"));
}

/// An applying watch (the API's) hands most records to its applier on the connection's reading thread;
/// what that thread may not apply at once (here every third record: the applier says it would have to
/// wait) waits for the watch's own thread, and every record after it too until that thread has caught
/// up: each record is applied once, in the stream's order, by one thread or the other. The bucket
/// keeps one record a key, so a record its key's next put replaced before the watch read it is gone
/// from the stream and never delivered (seen on nats-server 2.15.1 with four tests at once: four
/// records skipped 20 puts behind); what must hold is the order, no record twice, and each key's last
/// record applied.
#[test]
fn an_applying_watch_applies_records_once_in_order_on_either_thread_and_each_keys_last() {
    let nats = NatsServer::start();
    let bus = ten_keys(&nats);
    // (revision, applied on the reading thread)
    let applied: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
    let log = applied.clone();
    let mut offered = 0u64;
    let apply: WatchApply = Box::new(move |entry: &KvEntry, may_wait: bool| {
        if !may_wait {
            offered += 1;
            if offered.is_multiple_of(3) {
                return false;
            }
        }
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((entry.revision, !may_wait));
        true
    });
    let mut watch = bus
        .kv_watch_applying(BUCKET, None, apply)
        .unwrap_or_else(|e| panic!("{e}"));
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let own_thread = std::thread::spawn(move || {
        while !stopped.load(Ordering::SeqCst) {
            match watch.next(Duration::from_millis(100)) {
                Ok(None) => {}
                Ok(Some(entry)) => return Err(format!("handed out, not applied: {entry:?}")),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(watch)
    });
    let count = || applied.lock().unwrap_or_else(|p| p.into_inner()).len();
    wait_until("the replay applied", Duration::from_secs(5), || {
        count() == 10
    });
    for i in 0..300 {
        bus.kv_put(BUCKET, &format!("k{}", i % 20), b"v2")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let applied_last = || {
        applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .is_some_and(|(rev, _)| *rev == 310)
    };
    wait_until(
        "the last record applied",
        Duration::from_secs(10),
        applied_last,
    );
    stop.store(true, Ordering::SeqCst);
    let watch = match own_thread.join() {
        Ok(Ok(watch)) => watch,
        Ok(Err(e)) => panic!("the watch's thread: {e}"),
        Err(_) => panic!("the watch's thread panicked"),
    };
    bus.kv_watch_verify(&watch)
        .unwrap_or_else(|e| panic!("the server sent no more than arrived: {e}"));
    let got = applied.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let revisions: Vec<u64> = got.iter().map(|(rev, _)| *rev).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "each record once, in order: {revisions:?}"
    );
    // The replay (the ten keys' records) and the last put of each of the 20 keys.
    for rev in (1..=10).chain(291..=310) {
        assert!(
            revisions.contains(&rev),
            "record {rev} applied: {revisions:?}"
        );
    }
    let inline = got.iter().filter(|(_, inline)| *inline).count();
    let own = got
        .iter()
        .filter(|(rev, inline)| !inline && *rev > 10)
        .count();
    assert!(inline > 0, "the reading thread applied none");
    assert!(
        own > 0,
        "the watch's thread applied none of what the reading thread left"
    );
}

#[test]
fn a_watch_of_an_empty_bucket_leaves_its_replay_consumer_at_once() {
    let nats = NatsServer::start();
    let bus = nats.bus("kv watch test");
    bucket(&bus);
    let mut watch = bus.kv_watch(BUCKET, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(watch.caught_up(), "nothing to replay");
    assert!(matches!(watch.next(Duration::from_millis(100)), Ok(None)));
    let now = consumers(&bus, &format!("KV_{BUCKET}"));
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].1["deliver_policy"], "by_start_sequence", "{now:?}");
    bus.kv_put(BUCKET, "first", b"v")
        .unwrap_or_else(|e| panic!("{e}"));
    let got = read(&mut watch, 1);
    assert_eq!(keys_and_revisions(&got), vec![("first".to_string(), 1)]);
}

#[test]
fn the_apis_watches_keep_no_replay_consumer_once_ready() {
    let cluster = Cluster::start(&[("w1", &[], 2)]);
    let job = cluster.run_job("test.ping.do", json!({}), "w1");
    assert_eq!(job["status"], "completed");
    let bus = cluster.nats.bus("kv watch test");
    let names = bus
        .js_api("STREAM.NAMES", &json!({}))
        .unwrap_or_else(|e| panic!("{e}"));
    let buckets: Vec<String> = names["streams"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .filter(|s| s.starts_with("KV_"))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    assert!(buckets.len() >= 2, "the API's buckets: {names}");
    let watches: Vec<(String, Value)> = buckets
        .iter()
        .flat_map(|stream| consumers(&bus, stream))
        .collect();
    assert!(!watches.is_empty(), "the API watches its buckets");
    for (name, config) in &watches {
        assert_ne!(
            config["deliver_policy"], "last_per_subject",
            "consumer {name} outlived its replay: {config}"
        );
    }
}
