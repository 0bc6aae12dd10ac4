//! Tests of the `OSAPI_*` env overrides of the config: each kind of key, env over the file, bad values naming
//! the key and the variable, and the names themselves.

use super::*;
use std::time::Duration;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn env_overrides_each_kind_of_key() {
    let e = env(&[
        ("OSAPI_JOB_WORKER_MAX_JOBS", "4"),
        ("OSAPI_NATS_STREAM_MAX_AGE", "1h"),
        ("OSAPI_NATS_URL", "nats://a:4222,nats://b:4222"),
        ("OSAPI_NATS_NAMESPACE", "123"),
        ("OSAPI_JOB_WORKER_LABELS", "{group: web.dev}"),
        ("OSAPI_JOB_WORKER_CONSUMER_BACK_OFF", "[1s, 2s]"),
        (
            "OSAPI_JOB_WORKER_ALLOW_OPERATIONS",
            "[system.reboot.execute]",
        ),
        ("OSAPI_API_SERVER_SECURITY_SIGNING_KEY", "true"),
        (
            "OSAPI_API_SERVER_SECURITY_ROLES",
            "{ops: {permissions: [job:read]}}",
        ),
        ("OSAPI_NATS_AUTH", "{type: user_pass, username: u}"),
        ("OSAPI_NATS_AUTH_PASSWORD", "s3cret: with colon"),
        ("OSAPI_NATS_KV_STORAGE", "memory"),
        ("OSAPI_AUDIT_MAX_BYTES", "65536"),
        ("OSAPI_AUDIT_MAX_AGE", "2d"),
        ("OSAPI_CONFIG", "/ignored.yaml"),
        ("OSAPI_NO_SUCH_KEY", "ignored"),
        ("PATH", "/bin"),
    ]);
    let c = Config::from_yaml_with_env("", &e).expect("env overrides");
    let w = &c.job.worker;
    assert_eq!(w.max_jobs, 4);
    assert_eq!(c.nats.stream.max_age, Duration::from_secs(3600));
    assert_eq!(c.nats.url, "nats://a:4222,nats://b:4222");
    assert_eq!(c.nats.namespace, "123", "string keys take the raw text");
    assert_eq!(c.api.server.security.signing_key, "true");
    assert_eq!(
        w.labels,
        BTreeMap::from([("group".to_string(), "web.dev".to_string())])
    );
    assert_eq!(
        w.consumer.back_off,
        [Duration::from_secs(1), Duration::from_secs(2)]
    );
    assert_eq!(w.allow_operations, ["system.reboot.execute"]);
    assert_eq!(c.api.server.security.roles["ops"].permissions, ["job:read"]);
    let password = "s3cret: with colon".to_string();
    assert_eq!(
        c.nats.auth,
        NatsAuth::UserPass {
            username: "u".into(),
            password
        }
    );
    assert_eq!(c.nats.kv.storage, Storage::Memory);
    assert_eq!(c.audit.max_bytes, 65_536);
    assert_eq!(c.audit.max_age, Duration::from_secs(2 * 86_400));
}

#[test]
fn env_wins_over_the_file() {
    let yaml = "nats: {url: 'nats://file:4222'}\njob: {worker: {max_jobs: 2, labels: {group: file}, heartbeat: 5s}}";
    let e = env(&[
        ("OSAPI_NATS_URL", "nats://env:4222"),
        ("OSAPI_JOB_WORKER_MAX_JOBS", "8"),
        ("OSAPI_JOB_WORKER_LABELS", "{zone: eu}"),
    ]);
    let c = Config::from_yaml_with_env(yaml, &e).expect("file + env");
    assert_eq!(c.nats.url, "nats://env:4222");
    assert_eq!(c.job.worker.max_jobs, 8);
    assert_eq!(
        c.job.worker.labels.keys().collect::<Vec<_>>(),
        ["zone"],
        "env replaces the whole map"
    );
    assert_eq!(
        c.job.worker.heartbeat,
        Duration::from_secs(5),
        "untouched file keys stay"
    );
}

#[test]
fn bad_env_values_name_the_key_and_the_variable() {
    let table: &[(&str, &str, &str)] = &[
        ("OSAPI_JOB_WORKER_MAX_JOBS", "ten", r#"job.worker.max_jobs: expected a positive integer, got "ten" (from env OSAPI_JOB_WORKER_MAX_JOBS)"#),
        ("OSAPI_JOB_WORKER_MAX_JOBS", "0", "job.worker.max_jobs: must be between 1 and 1024, got 0 (from env OSAPI_JOB_WORKER_MAX_JOBS)"),
        ("OSAPI_NATS_REQUEST_TIMEOUT", "30", "nats.request_timeout: bad duration '30': '30' has no unit"),
        ("OSAPI_JOB_WORKER_LABELS", "{group: 'web dev'}", "job.worker.labels.group: label value 'web dev': dot-separated segments must match [A-Za-z0-9_-]+ (from env OSAPI_JOB_WORKER_LABELS)"),
        ("OSAPI_JOB_WORKER_LABELS", "{group: [", "env OSAPI_JOB_WORKER_LABELS (job.worker.labels): invalid YAML value"),
        ("OSAPI_JOB_WORKER_CONSUMER_BACK_OFF", "[1s, x]", "job.worker.consumer.back_off[1]: bad duration 'x'"),
        ("OSAPI_NATS_AUTH_TYPE", "token", "nats.auth.token: required with auth type token"),
    ];
    for (name, value, want) in table {
        let err = Config::from_yaml_with_env("", &env(&[(name, value)]))
            .expect_err(name)
            .to_string();
        assert!(
            err.contains(want),
            "{name}={value}\n  got:  {err}\n  want: {want}"
        );
    }
}

#[test]
fn env_reaches_keys_under_null_sections_only() {
    let e = env(&[("OSAPI_NATS_STREAM_REPLICAS", "3")]);
    let c = Config::from_yaml_with_env("nats:\n  stream:\n", &e).expect("null sections");
    assert_eq!(c.nats.stream.replicas, 3);
    let err = Config::from_yaml_with_env("nats: 7", &e).expect_err("nats is not a map");
    assert!(err.0.contains("nats: expected a map, got 7"), "{err}");
}

#[test]
fn every_env_name_is_distinct() {
    assert_eq!(env_name("job.worker.max_jobs"), "OSAPI_JOB_WORKER_MAX_JOBS");
    assert_eq!(env_name("nats.stream.max_age"), "OSAPI_NATS_STREAM_MAX_AGE");
}
