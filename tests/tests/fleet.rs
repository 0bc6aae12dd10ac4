//! A fleet's consumers on the real nats-server (`.ci/run` runs this file against 2.9 and 2.15): a worker
//! whose consumers the stream's `max_consumers` does not allow is listed but not routed to, says why, and
//! joins once the limit is raised; on nats-server 2.10+ each worker holds one consumer of its own (several
//! filters) beside the shared `_any` one, on 2.9 one per subject, label broadcasts reach the right
//! workers either way, a worker removes the consumers of the other plan (after a server upgrade), and a
//! worker waits for the shared `_any` consumer, which only the API makes.

use std::time::Duration;

use serde_json::{json, Value};

use osapi_bus::Bus;
use osapi_common::names::Names;
use osapi_tests::{wait_until, Api, Cluster, ExtraConfig, NatsServer, Options, Worker};

/// How long a worker may take to create its consumers, or to retry (back-off 1, 2, 4, 8 s) after a change.
const SUBSCRIBED_WITHIN: Duration = Duration::from_secs(30);

/// The names the daemons of [`Options::default`] use (namespace `t1`).
fn names() -> Names {
    Names::new("t1", "JOBS", "job-queue", "job-responses", "jobs-worker")
}

fn multi_filter(bus: &Bus) -> bool {
    let version = bus.server_version().unwrap_or_else(|e| panic!("{e}"));
    osapi_bus::version_at_least(&version, (2, 10))
}

fn extra(max_consumers: usize) -> ExtraConfig {
    ExtraConfig {
        nats_yaml: vec![(
            "stream".into(),
            format!("{{max_consumers: {max_consumers}}}"),
        )],
        ..ExtraConfig::default()
    }
}

/// The entry of `host` in GET /job/workers.
fn listed(cluster: &Cluster, host: &str) -> Option<Value> {
    let resp = cluster.http("GET", "/job/workers", None);
    assert_eq!(resp.status, 200, "GET /job/workers -> {}", resp.text);
    resp.body["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["hostname"] == host).cloned())
}

#[test]
fn a_worker_the_consumer_limit_shuts_out_is_listed_not_routed_and_joins_when_raised() {
    let options = Options::default();
    let nats = NatsServer::start();
    // Room for the shared `_any` consumer only: the worker's own cannot be created.
    let api = Api::start_extra(&nats.url(), &options, &extra(1));
    let worker = Worker::start_extra(&nats.url(), "w1", &[], 2, &options, &extra(1));
    let cluster = Cluster {
        workers: vec![worker],
        api,
        nats,
    };

    let mut entry = Value::Null;
    wait_until(
        "w1 listed as not subscribed, with the reason",
        SUBSCRIBED_WITHIN,
        || {
            entry = listed(&cluster, "w1").unwrap_or(Value::Null);
            entry["subscribed"] == false
                && entry["problem"]
                    .as_str()
                    .is_some_and(|p| p.contains("10026"))
        },
    );
    let problem = entry["problem"].as_str().unwrap_or_default();
    for words in [
        "maximum consumers",
        "nats.stream.max_consumers",
        "holds 1 of 1",
    ] {
        assert!(
            problem.contains(words),
            "problem lacks '{words}': {entry:#}"
        );
    }
    let log = cluster.workers[0].log_tail();
    assert!(
        log.contains("ERROR") && log.contains("not created"),
        "the worker logs the failure as an error:\n{log}"
    );
    assert!(
        log.contains("of 1 consumers and this worker needs"),
        "the start-up check saw there is no room:\n{log}"
    );

    // Not routable: a broadcast does not count on it.
    let id = cluster.create_job("test.ping.do", json!({}), "_all");
    let job = cluster.http("GET", &format!("/job/{id}"), None);
    assert_eq!(job.body["expected_hosts"], json!([]), "{:#}", job.body);

    // A daemon started with a larger limit updates the stream; the worker's retries then succeed.
    // nats-server 2.9 refuses to change a stream's MaxConsumers (2.15 allows it): the daemon says so.
    let bigger = Api::start_extra(&cluster.nats.url(), &options, &extra(100));
    let bus = cluster.nats.bus("fleet test");
    let room = bus
        .stream_consumers(&names().stream)
        .unwrap_or_else(|e| panic!("{e}"));
    if room.limit == 1 {
        let log = bigger.log_tail();
        assert!(
            !multi_filter(&bus) && log.contains("keeps its consumer limit of 1"),
            "only 2.9 keeps the limit, and the daemon warns: {room:?}\n{log}"
        );
        return;
    }
    assert_eq!(room.limit, 100, "the stream's limit was raised: {room:?}");
    drop(bigger);
    wait_until(
        "w1 subscribed after the limit was raised",
        SUBSCRIBED_WITHIN,
        || {
            listed(&cluster, "w1")
                .is_some_and(|w| w["subscribed"] == true && w["problem"].is_null())
        },
    );
    let job = cluster.run_job("test.ping.do", json!({}), "_all");
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(job["expected_hosts"], json!(["w1"]), "{job:#}");
    assert_eq!(job["responses"]["w1"]["status"], "completed", "{job:#}");
}

#[test]
fn label_broadcasts_reach_the_right_workers_with_the_fewest_consumers_the_server_allows() {
    let cluster = Cluster::start(&osapi_tests::FLEET);
    let bus = cluster.nats.bus("fleet test");
    let multi = multi_filter(&bus);
    let names = names();

    for (target, hosts) in [
        ("group:web", json!(["web1", "web2"])),
        ("group:web.dev", json!(["web1"])),
        ("group:db", json!(["db1"])),
        ("_all", json!(["db1", "web1", "web2"])),
    ] {
        let job = cluster.run_job("test.ping.do", json!({}), target);
        assert_eq!(job["status"], "completed", "{target}: {job:#}");
        let mut answered: Vec<&String> = job["responses"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        answered.sort();
        assert_eq!(json!(answered), hosts, "{target} answered by: {job:#}");
    }

    let mut wanted = 1; // the shared `_any` consumer
    for worker in &cluster.workers {
        let labels = worker.labels().iter().cloned().collect();
        let merged = names.worker_consumers_merged(worker.hostname(), &labels);
        let single = names.worker_consumers(worker.hostname(), &labels);
        let (used, unused) = if multi {
            (merged, single)
        } else {
            (single, merged)
        };
        wanted += used.len() - 1;
        for spec in &used {
            assert!(
                bus.consumer_exists(&names.stream, &spec.durable) == Ok(true),
                "{} has consumer {}",
                worker.hostname(),
                spec.durable
            );
        }
        for spec in unused.iter().filter(|s| !s.shared) {
            assert!(
                bus.consumer_exists(&names.stream, &spec.durable) == Ok(false),
                "{} has no consumer {} of the other plan",
                worker.hostname(),
                spec.durable
            );
        }
        if multi {
            assert_eq!(used.len(), 2, "{used:?}");
            assert!(used[1].filters.len() >= 3, "{used:?}");
        }
    }
    let room = bus
        .stream_consumers(&names.stream)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(room.used, wanted as u64, "consumers on the stream");
    assert_eq!(room.limit, 10_000, "the configured default limit");
}

#[test]
fn a_worker_removes_its_consumers_of_the_other_plan_after_a_server_upgrade() {
    let nats = NatsServer::start();
    let bus = nats.bus("fleet test");
    if !multi_filter(&bus) {
        // 2.9 cannot hold the 2.10+ plan's consumer in the first place; .ci/run runs this on 2.15 too.
        return;
    }
    let options = Options::default();
    let names = names();
    let labels = [("group".to_string(), "web.dev".to_string())].into();
    // What the worker left behind on 2.9: one consumer per subject (the shared one is the API's).
    let api = Api::start(&nats.url(), &options);
    for spec in names
        .worker_consumers("web1", &labels)
        .into_iter()
        .filter(|s| !s.shared)
    {
        let consumer = osapi_bus::ConsumerConfig {
            durable: spec.durable.clone(),
            filters: spec.filters.clone(),
            ack_wait: Duration::from_secs(60),
            max_deliver: 3,
            back_off: vec![],
            max_ack_pending: 100,
            max_waiting: 512,
            replicas: 0,
        };
        bus.consumer_ensure(&names.stream, &consumer)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let worker = Worker::start(&nats.url(), "web1", &[("group", "web.dev")], 2, &options);
    let cluster = Cluster {
        workers: vec![worker],
        api,
        nats,
    };
    wait_until("web1 subscribed", SUBSCRIBED_WITHIN, || {
        listed(&cluster, "web1").is_some_and(|w| w["subscribed"] == true)
    });
    let merged = names.worker_consumers_merged("web1", &labels);
    for spec in &merged {
        assert_eq!(bus.consumer_exists(&names.stream, &spec.durable), Ok(true));
    }
    for spec in names
        .worker_consumers("web1", &labels)
        .iter()
        .filter(|s| !s.shared)
    {
        assert_eq!(
            bus.consumer_exists(&names.stream, &spec.durable),
            Ok(false),
            "{} removed",
            spec.durable
        );
    }
    let room = bus
        .stream_consumers(&names.stream)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(room.used, 2, "{room:?}");
    let job = cluster.run_job("test.ping.do", json!({}), "group:web");
    assert_eq!(job["responses"]["web1"]["status"], "completed", "{job:#}");
}

#[test]
fn a_worker_waits_for_the_shared_consumer_the_api_makes() {
    let options = Options::default();
    let nats = NatsServer::start();
    let api = Api::start(&nats.url(), &options);
    // The API laid out NATS, the shared consumer with it; gone, a worker may not make it (a
    // least-privilege worker may only pull from it: docs/security.md), so it waits and says why.
    let bus = nats.bus("fleet test");
    let any = names().any_consumer().durable;
    assert_eq!(bus.consumer_exists(&names().stream, &any), Ok(true));
    bus.consumer_delete(&names().stream, &any)
        .unwrap_or_else(|e| panic!("{e}"));
    let worker = Worker::start(&nats.url(), "w1", &[], 2, &options);
    let cluster = Cluster {
        workers: vec![worker],
        api,
        nats,
    };
    let mut entry = Value::Null;
    wait_until(
        "w1 listed as not subscribed, naming the shared consumer",
        SUBSCRIBED_WITHIN,
        || {
            entry = listed(&cluster, "w1").unwrap_or(Value::Null);
            entry["subscribed"] == false
                && entry["problem"]
                    .as_str()
                    .is_some_and(|p| p.contains(&any) && p.contains("the API creates"))
        },
    );
    assert_eq!(
        bus.consumer_exists(&names().stream, &any),
        Ok(false),
        "the worker did not make it"
    );
    // An API start lays out NATS again; the worker's retries then find the consumer and it takes jobs.
    let again = Api::start(&cluster.nats.url(), &options);
    wait_until(
        "w1 subscribed once the API made _any",
        SUBSCRIBED_WITHIN,
        || {
            listed(&cluster, "w1")
                .is_some_and(|w| w["subscribed"] == true && w["problem"].is_null())
        },
    );
    drop(again);
    let job = cluster.run_job("test.ping.do", json!({}), "_any");
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(job["responses"]["w1"]["status"], "completed", "{job:#}");
}
