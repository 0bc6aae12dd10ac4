//! Targets: `_any` reaches exactly one worker and spreads the load, `_all` every worker, a hostname that worker,
//! `KEY:VALUE` every worker whose label matches at a dot boundary.
//! Fleet: web1 {group: web.dev.us-east}, web2 {group: web.prod}, db1 {group: db.dev}.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use osapi_tests::Cluster;

/// The keys of `responses` (hosts that answered), sorted.
fn responders(job: &Value) -> Vec<String> {
    keys(&job["responses"])
}

fn keys(value: &Value) -> Vec<String> {
    match value.as_object() {
        Some(map) => map
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        None => Vec::new(),
    }
}

fn expected_hosts(job: &Value) -> Vec<String> {
    let hosts = job["expected_hosts"].as_array();
    let hosts = hosts.unwrap_or_else(|| panic!("expected_hosts must be a list: {job:#}"));
    let mut hosts: Vec<String> = hosts
        .iter()
        .map(|h| h.as_str().expect("hostnames are strings").to_string())
        .collect();
    hosts.sort();
    hosts
}

/// Runs `test.ping.do` on `target`, asserts it completed on exactly `hosts` and each answered `{pong: true}`.
fn assert_reaches(cluster: &Cluster, target: &str, hosts: &[&str]) {
    let job = cluster.run_job("test.ping.do", json!({}), target);
    let mut want: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    want.sort();
    assert_eq!(job["status"], "completed", "{target}: {job:#}");
    assert_eq!(responders(&job), want, "{target} answered by: {job:#}");
    // The API records expected_hosts for broadcast targets (`_all`, labels) only.
    if target == "_all" || target.contains(':') {
        assert_eq!(
            expected_hosts(&job),
            want,
            "{target} expected_hosts: {job:#}"
        );
    }
    for host in hosts {
        let response = &job["responses"][*host];
        assert_eq!(
            response["status"], "completed",
            "{target} on {host}: {job:#}"
        );
        assert_eq!(
            response["data"],
            json!({"pong": true}),
            "{target} on {host}: {job:#}"
        );
        assert_eq!(
            job["worker_states"][*host]["status"], "completed",
            "{target} on {host}: {job:#}"
        );
    }
}

#[test]
fn any_runs_on_exactly_one_worker_and_spreads_the_load() {
    let cluster = Cluster::fleet();
    let mut used = BTreeSet::new();
    for round in 0..12 {
        let job = cluster.run_job("test.ping.do", json!({}), "_any");
        assert_eq!(job["status"], "completed", "round {round}: {job:#}");
        let hosts = responders(&job);
        assert_eq!(
            hosts.len(),
            1,
            "round {round}: _any must run on one host: {job:#}"
        );
        assert!(
            ["web1", "web2", "db1"].contains(&hosts[0].as_str()),
            "round {round}: unknown host: {job:#}"
        );
        assert_eq!(job["hostname"], hosts[0].as_str(), "round {round}: {job:#}");
        assert_eq!(
            job["result"],
            json!({"pong": true}),
            "round {round}: {job:#}"
        );
        used.insert(hosts[0].clone());
    }
    assert!(
        used.len() >= 2,
        "12 `_any` jobs all ran on {used:?}: no load balancing"
    );
}

#[test]
fn all_reaches_every_worker() {
    let cluster = Cluster::fleet();
    assert_reaches(&cluster, "_all", &["web1", "web2", "db1"]);
}

#[test]
fn hostname_reaches_only_that_worker() {
    let cluster = Cluster::fleet();
    assert_reaches(&cluster, "web2", &["web2"]);
    assert_reaches(&cluster, "db1", &["db1"]);
}

#[test]
fn label_matches_at_dot_boundaries() {
    let cluster = Cluster::fleet();
    assert_reaches(&cluster, "group:web.dev", &["web1"]);
    assert_reaches(&cluster, "group:web.dev.us-east", &["web1"]);
    assert_reaches(&cluster, "group:web", &["web1", "web2"]);
    assert_reaches(&cluster, "group:db", &["db1"]);
}

#[test]
fn label_matching_nobody_expects_no_host() {
    let cluster = Cluster::fleet();
    // `group:we` is a prefix of `web` but not at a dot boundary: it matches nobody either.
    for target in ["group:nothere", "group:we"] {
        let id = cluster.create_job("test.ping.do", json!({}), target);
        let job = cluster.job(&id);
        assert_eq!(
            expected_hosts(&job),
            Vec::<String>::new(),
            "{target}: {job:#}"
        );
        assert_eq!(responders(&job), Vec::<String>::new(), "{target}: {job:#}");
    }
}
