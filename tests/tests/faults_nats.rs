//! NATS going away: while nats-server is down every endpoint answers 503 within `request_timeout` (2 s) plus
//! slack, never 201; both daemons reconnect by themselves; jobs accepted before the outage complete after it;
//! a restarted API finds every job again. With three clustered nats-servers and `replicas: 3`, losing one
//! node under load loses no accepted job; with a host's own consumers at one copy
//! (`job.worker.consumer.replicas: 1`), losing their node holds that host's jobs until it is back while
//! `_any` jobs go on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use osapi_tests::{
    admin_token, is_terminal, request_as, wait_until, Api, Cluster, ExtraConfig, NatsCluster,
    Options, Response, Worker,
};

/// `request_timeout` (2 s) plus slack for a loaded machine.
const OUTAGE_ANSWER_MAX: Duration = Duration::from_secs(3);
/// How long the daemons may take to notice that NATS is back and to work again.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

fn short_ack_wait() -> Options {
    Options {
        worker_yaml: vec![("consumer".into(), "{ ack_wait: '3s', back_off: [] }".into())],
        ..Options::default()
    }
}

fn status_of(cluster: &Cluster, path: &str) -> Option<u16> {
    cluster.try_http("GET", path).ok().map(|resp| resp.status)
}

/// Every job GET /job?limit=1000 lists, as id -> status.
fn all_jobs(cluster: &Cluster) -> BTreeMap<String, String> {
    let resp = cluster.http("GET", "/job?limit=1000", None);
    assert_eq!(resp.status, 200, "GET /job?limit=1000 -> {}", resp.text);
    let items = resp.body["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|job| {
            let id = job["id"].as_str().unwrap_or_default().to_string();
            (id, job["status"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[test]
fn a_nats_outage_is_503_at_once_and_loses_no_accepted_job() {
    let options = short_ack_wait();
    let mut cluster = Cluster::start_with(&[("busy", &[], 1)], &options);
    let seed = cluster.create_job("test.ping.do", json!({}), "busy");
    assert_eq!(
        cluster.wait_job(&seed, Duration::from_secs(30))["status"],
        "completed"
    );

    // A one-thread worker with a queue: one sleep runs, the others wait in JetStream.
    let queued: Vec<String> = (0..4)
        .map(|_| cluster.create_job("test.sleep.do", json!({"seconds": 1}), "busy"))
        .collect();
    wait_until("the first sleep to run", Duration::from_secs(20), || {
        cluster.job(&queued[0])["status"] == "running"
    });

    cluster.nats.stop();
    wait_until(
        "/health/ready to answer 503 after nats-server stopped",
        Duration::from_secs(10),
        || status_of(&cluster, "/health/ready") == Some(503),
    );
    let job_body =
        json!({"operation": {"type": "test.ping.do", "data": {}}, "target_hostname": "_any"})
            .to_string();
    let calls: Vec<(&str, String, Option<&str>)> = vec![
        ("POST", "/job".into(), Some(&job_body)),
        ("GET", "/job".into(), None),
        ("GET", "/job?status=completed&limit=1000".into(), None),
        ("GET", format!("/job/{seed}"), None),
        ("GET", format!("/job/{}?wait=10s", queued[3]), None),
        ("GET", "/job/status".into(), None),
        ("GET", "/job/workers".into(), None),
        ("DELETE", format!("/job/{seed}"), None),
        ("POST", format!("/job/{seed}/retry"), None),
        (
            "POST",
            format!("/job/{seed}/retry"),
            Some(r#"{"target_hostname": "busy"}"#),
        ),
        ("GET", "/health/ready".into(), None),
    ];
    for (method, path, body) in &calls {
        let asked = Instant::now();
        let resp = cluster.http_raw(method, path, *body);
        let took = asked.elapsed();
        assert_eq!(
            resp.status, 503,
            "{method} {path} without NATS: {}",
            resp.text
        );
        resp.assert_error(503);
        assert!(
            took < OUTAGE_ANSWER_MAX,
            "{method} {path} without NATS took {took:?}"
        );
    }
    assert_eq!(
        status_of(&cluster, "/health"),
        Some(200),
        "liveness does not need NATS"
    );

    cluster.nats.restart();
    wait_until(
        "/health/ready to answer 200 after nats-server restarted",
        RECOVERY_DEADLINE,
        || status_of(&cluster, "/health/ready") == Some(200),
    );
    wait_until("busy to be listed again", RECOVERY_DEADLINE, || {
        cluster.listed_workers().contains(&"busy".to_string())
    });
    let after = cluster.run_job("test.ping.do", json!({}), "busy");
    assert_eq!(after["status"], "completed", "{after:#}");
    for id in &queued {
        let job = cluster.wait_job(id, Duration::from_secs(60));
        assert_eq!(
            job["status"], "completed",
            "accepted before the outage: {job:#}"
        );
        let completed = job["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["event"] == "completed")
            .count();
        assert_eq!(completed, 1, "{job:#}");
    }
    assert_eq!(
        cluster.job(&seed)["status"],
        "completed",
        "the 503 DELETE deleted nothing"
    );

    // A new API process on the same NATS rebuilds its index from the bucket: nothing is lost.
    let before = all_jobs(&cluster);
    assert_eq!(before.len(), 1 + queued.len() + 1, "{before:?}");
    cluster.api.kill();
    cluster.api = Api::start(&cluster.nats.url(), &options);
    assert_eq!(
        all_jobs(&cluster),
        before,
        "the restarted API lists the same jobs"
    );
}

/// The worker sends a job's `completed` record and goes on without waiting for its ack; the ack settles
/// the job. Here the ack never comes (nats-server frozen as the record goes out): the job is not acked
/// but handed back at the request timeout, and once NATS answers again it ends `completed` with its
/// answer.
#[test]
fn a_completed_record_whose_ack_never_comes_is_handed_back_and_the_job_completes() {
    let cluster = Cluster::start_with(&[("w1", &[], 1)], &short_ack_wait());
    let id = cluster.create_job("test.sleep.do", json!({"seconds": 1}), "w1");
    wait_until("the sleep to run", Duration::from_secs(20), || {
        cluster.job(&id)["status"] == "running"
    });
    {
        let _paused = cluster.nats.paused();
        wait_until(
            "the worker to give up on the completed record's ack",
            Duration::from_secs(20),
            || {
                cluster.workers[0]
                    .log_tail()
                    .contains("writing the completed state failed")
            },
        );
    }
    let job = cluster.wait_job(&id, RECOVERY_DEADLINE);
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(
        job["responses"]["w1"]["data"]["slept_seconds"], 1.0,
        "{job:#}"
    );
}

/// One request as admin; a transport failure (no answer at all) fails the test.
fn call(base_url: &str, method: &str, path: &str, body: Option<&str>) -> Response {
    request_as(Some(&admin_token()), base_url, method, path, body)
        .unwrap_or_else(|err| panic!("no answer: {err}"))
}

/// GET a NATS monitoring endpoint as JSON.
fn monitor_json(url: &str) -> Value {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let resp = agent
        .get(url)
        .call()
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    resp.into_json()
        .unwrap_or_else(|err| panic!("GET {url}: not JSON: {err}"))
}

/// The names of the clients connected to a node (its `/connz`).
fn connected_clients(monitor_url: &str) -> Vec<String> {
    let connz = monitor_json(&format!("{monitor_url}/connz"));
    let conns = connz["connections"].as_array().cloned().unwrap_or_default();
    conns
        .iter()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect()
}

/// Polls `?wait=5s` until the job is terminal.
fn wait_job(base_url: &str, id: &str, deadline: Duration) -> Value {
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < deadline {
        let resp = call(base_url, "GET", &format!("/job/{id}?wait=5s"), None);
        if resp.status == 200 && resp.body["status"].as_str().is_some_and(is_terminal) {
            return resp.body;
        }
        last = resp.body;
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("job {id} not terminal after {deadline:?}; last seen: {last:#}");
}

/// The API and a worker per host on `nats`, with `replicas: 3` for the stream, the buckets and the DLQ and
/// `job_worker_yaml` for the workers; returns once every host is listed.
fn start_replicated(
    nats: &NatsCluster,
    hosts: &[&str],
    max_jobs: usize,
    job_worker_yaml: Vec<(String, String)>,
) -> (Api, Vec<Worker>) {
    let options = Options::default();
    let extra = ExtraConfig {
        nats_yaml: ["stream", "kv", "dlq"]
            .iter()
            .map(|key| (key.to_string(), "{ replicas: 3 }".to_string()))
            .collect(),
        job_worker_yaml,
        ..ExtraConfig::default()
    };
    let urls = nats.urls();
    let api = Api::start_extra(&urls, &options, &extra);
    let workers: Vec<Worker> = hosts
        .iter()
        .map(|host| Worker::start_extra(&urls, host, &[], max_jobs, &options, &extra))
        .collect();
    let base_url = api.base_url();
    wait_until(
        &format!("{hosts:?} to be listed"),
        Duration::from_secs(30),
        || {
            let resp = call(&base_url, "GET", "/job/workers", None);
            resp.body["total"] == hosts.len()
        },
    );
    (api, workers)
}

#[test]
fn losing_one_of_three_clustered_nats_servers_loses_no_accepted_job() {
    const JOBS: usize = 60;
    const STOP_AT: usize = 20;
    let mut nats = NatsCluster::start(3);
    let (api, mut workers) = start_replicated(&nats, &["c1", "c2"], 4, Vec::new());
    let base_url = api.base_url();

    // The hardest node to lose: the one the API is connected to (it must fail over to another).
    let victim = (0..nats.size())
        .find(|&index| {
            connected_clients(&nats.monitor_url(index))
                .iter()
                .any(|c| c == "osapi-api")
        })
        .unwrap_or_else(|| panic!("no node lists osapi-api among its clients"));
    let jsz = monitor_json(&format!(
        "{}/jsz?accounts=true&streams=true&config=true",
        nats.monitor_url(victim)
    ));
    let streams = jsz["account_details"][0]["stream_detail"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        streams.len(),
        8,
        "JOBS, JOBS-DLQ, AUDIT and five KV buckets (jobs, responses, heartbeats, idempotency keys, drain records): {jsz:#}"
    );
    for stream in &streams {
        assert_eq!(stream["config"]["num_replicas"], 3, "{stream:#}");
    }
    let led: Vec<&str> = streams
        .iter()
        .filter(|s| s["cluster"]["leader"] == nats.name(victim))
        .filter_map(|s| s["name"].as_str())
        .collect();
    eprintln!(
        "stopping {} (the API's server, leader of {led:?})",
        nats.name(victim)
    );

    let body =
        json!({"operation": {"type": "test.ping.do", "data": {}}, "target_hostname": "_any"})
            .to_string();
    // One thread submits a job every 100 ms; this one stops n1 once a third of them are in.
    let submitted = AtomicUsize::new(0);
    let (accepted, refused) = std::thread::scope(|scope| {
        let submitter = scope.spawn(|| {
            let mut accepted = Vec::new();
            let mut refused = 0;
            for _ in 0..JOBS {
                let resp = call(&base_url, "POST", "/job", Some(&body));
                match resp.status {
                    201 => {
                        accepted.push(resp.body["job_id"].as_str().unwrap_or_default().to_string())
                    }
                    503 => refused += 1,
                    other => panic!("POST /job during a node loss: {other} {}", resp.text),
                }
                submitted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
            (accepted, refused)
        });
        wait_until(
            "a third of the jobs to be submitted",
            Duration::from_secs(60),
            || submitted.load(Ordering::SeqCst) >= STOP_AT,
        );
        nats.stop(victim);
        submitter.join().expect("the submitting thread")
    });
    eprintln!(
        "{} accepted, {refused} refused with 503 while a node stopped",
        accepted.len()
    );
    assert!(
        accepted.len() >= JOBS / 2,
        "most submissions succeed: {} of {JOBS}",
        accepted.len()
    );

    let mut completed = 0;
    for id in &accepted {
        let job = wait_job(&base_url, id, Duration::from_secs(60));
        assert_eq!(job["status"], "completed", "{job:#}");
        completed += 1;
    }
    assert_eq!(completed, accepted.len(), "every accepted job completed");
    // A refused submission must not leave a job behind either (KV-first, removed when the publish fails).
    let listed = call(&base_url, "GET", "/job?limit=1000", None);
    let items = listed.body["items"].as_array().cloned().unwrap_or_default();
    let ghosts: Vec<&Value> = items
        .iter()
        .filter(|job| !accepted.iter().any(|id| job["id"] == id.as_str()))
        .collect();
    eprintln!("GHOSTS {}: {ghosts:#?}", ghosts.len());
    for worker in &mut workers {
        assert!(
            worker.exited().is_none(),
            "{} is still running",
            worker.hostname()
        );
    }
}

/// The consumers of the job stream (`JOBS`, under the test's namespace) one node keeps a copy of: name -> (its leader's node, copies).
fn job_consumers(monitor_url: &str) -> BTreeMap<String, (String, usize)> {
    let jsz = monitor_json(&format!(
        "{monitor_url}/jsz?accounts=true&streams=true&consumers=true&config=true"
    ));
    let streams = jsz["account_details"][0]["stream_detail"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let jobs = streams
        .iter()
        .find(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n == "JOBS" || n.ends_with("-JOBS"))
        })
        .unwrap_or_else(|| panic!("no stream JOBS: {jsz:#}"));
    let consumers = jobs["consumer_detail"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    consumers
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            let leader = c["cluster"]["leader"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let followers = c["cluster"]["replicas"].as_array().map_or(0, Vec::len);
            (name, (leader, 1 + followers))
        })
        .collect()
}

#[test]
fn a_hosts_single_copy_consumer_waits_for_its_node_and_loses_no_job() {
    let mut nats = NatsCluster::start(3);
    let one_copy = vec![("consumer".into(), "{ replicas: 1 }".into())];
    let (api, mut workers) = start_replicated(&nats, &["solo1", "solo2"], 2, one_copy);
    let base_url = api.base_url();

    // The consumer that carries a host's own jobs: `{base}-own-{host}-{hash}` on 2.10+ (which also
    // filters `_all` and labels), `{base}-host-{host}-{hash}` on 2.9 (beside `-all-` and `-label-` ones).
    let carries = |name: &str, host: &str| {
        name.contains(&format!("-own-{host}-")) || name.contains(&format!("-host-{host}-"))
    };
    let mut consumers = BTreeMap::new();
    wait_until(
        "both hosts' consumers to have leaders",
        Duration::from_secs(30),
        || {
            // A node lists only the consumers it keeps a copy of.
            consumers = (0..nats.size())
                .flat_map(|index| job_consumers(&nats.monitor_url(index)))
                .collect();
            ["solo1", "solo2"]
                .iter()
                .all(|host| consumers.keys().any(|name| carries(name, host)))
                && consumers.keys().any(|name| name.ends_with("-any"))
                && consumers.values().all(|(leader, _)| !leader.is_empty())
        },
    );
    // Each host's own consumers have one copy; the shared `_any` one keeps the stream's three.
    for (name, (_, copies)) in &consumers {
        let want = if name.ends_with("-any") { 3 } else { 1 };
        assert_eq!(*copies, want, "{name} ({consumers:#?})");
    }

    // Stop the node holding the consumer of solo1's own jobs.
    let holder = consumers
        .iter()
        .find(|(name, _)| carries(name, "solo1"))
        .map(|(_, (leader, _))| leader.clone())
        .unwrap_or_default();
    let victim = (0..nats.size())
        .find(|&index| nats.name(index) == holder)
        .unwrap_or_else(|| panic!("no node named {holder}"));
    eprintln!("stopping {holder}, which holds solo1's own consumer");
    nats.stop(victim);

    // A job for solo1 is accepted (the stream has two copies left) and waits for the node; `_any`
    // jobs go on meanwhile. Submissions may be refused with 503 while the cluster fails over.
    let submit = |target: &str| -> String {
        let body =
            json!({"operation": {"type": "test.ping.do", "data": {}}, "target_hostname": target})
                .to_string();
        let mut id = String::new();
        wait_until(
            &format!("a job for {target} to be accepted"),
            RECOVERY_DEADLINE,
            || {
                let resp = call(&base_url, "POST", "/job", Some(&body));
                match resp.status {
                    201 => {
                        id = resp.body["job_id"].as_str().unwrap_or_default().to_string();
                        true
                    }
                    503 => false,
                    other => panic!("POST /job for {target}: {other} {}", resp.text),
                }
            },
        );
        id
    };
    let waiting = submit("solo1");
    let any: Vec<String> = (0..4).map(|_| submit("_any")).collect();
    for id in &any {
        let job = wait_job(&base_url, id, RECOVERY_DEADLINE);
        assert_eq!(
            job["status"], "completed",
            "an _any job while a node is down: {job:#}"
        );
    }

    // Once a pull finds nothing answering (the long poll in flight when the node went may first run
    // out: 30 s), solo1 says so and counts as not subscribed; a broadcast then goes on without it.
    let solo1 = || -> Value {
        let workers = call(&base_url, "GET", "/job/workers", None).body;
        let items = workers["workers"].as_array().cloned().unwrap_or_default();
        items
            .into_iter()
            .find(|w| w["hostname"] == "solo1")
            .unwrap_or(Value::Null)
    };
    wait_until(
        "solo1 to say it cannot pull",
        Duration::from_secs(60),
        || solo1()["subscribed"] == false,
    );
    let listed = solo1();
    let problem = listed["problem"].as_str().unwrap_or_default();
    // The reason: the pull nothing answers, or the re-creation the cluster cannot carry out meanwhile.
    assert!(
        problem.contains("-solo1-"),
        "names solo1's consumer: {listed:#}"
    );
    // Only when every consumer of solo2 lives elsewhere (the cluster places each; often one of them
    // sits on the stopped node too, and then no host could answer a broadcast).
    let solo2_reachable = consumers
        .iter()
        .filter(|(name, _)| name.contains("-solo2-"))
        .all(|(_, (leader, _))| *leader != holder);
    if solo2_reachable {
        let broadcast = submit("_all");
        let job = wait_job(&base_url, &broadcast, RECOVERY_DEADLINE);
        assert_eq!(
            job["status"], "completed",
            "a broadcast without solo1: {job:#}"
        );
        assert_eq!(job["expected_hosts"], json!(["solo2"]), "{job:#}");
    } else {
        eprintln!("a consumer of solo2 is on {holder} too: no broadcast checked");
    }

    // The price of one copy: with its consumer's node down, solo1's job cannot have reached it.
    let meanwhile = call(&base_url, "GET", &format!("/job/{waiting}"), None);
    assert_eq!(meanwhile.status, 200, "{}", meanwhile.text);
    assert_ne!(
        meanwhile.body["status"], "completed",
        "{:#}",
        meanwhile.body
    );

    nats.restart(victim);
    let job = wait_job(&base_url, &waiting, Duration::from_secs(60));
    assert_eq!(
        job["status"], "completed",
        "solo1's job once its node is back: {job:#}"
    );
    assert_eq!(job["hostname"], "solo1", "{job:#}");
    wait_until("solo1 to be subscribed again", RECOVERY_DEADLINE, || {
        solo1()["subscribed"] == true
    });
    for worker in &mut workers {
        assert!(
            worker.exited().is_none(),
            "{} is still running",
            worker.hostname()
        );
    }
}
