//! Table-driven tests of the config loader: defaults, merging, every validation error, CLI args, loading a
//! file (the env overrides are in `config_env_tests.rs`).

use super::*;
use std::time::Duration;

fn load(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml_with_env(yaml, &[])
}

fn args(list: &[&str]) -> Vec<String> {
    std::iter::once("osapi")
        .chain(list.iter().copied())
        .map(String::from)
        .collect()
}

#[test]
fn empty_text_and_empty_sections_give_the_defaults() {
    for yaml in [
        "",
        "  \n",
        "# only a comment\n",
        "nats:\napi:\njob:\n",
        "job: {worker: {}}",
    ] {
        assert_eq!(load(yaml), Ok(Config::default()), "{yaml:?}");
    }
    let c = Config::default_config();
    assert_eq!(c.nats.url, "nats://127.0.0.1:4222");
    assert_eq!(c.nats.stream.max_age, Duration::from_secs(86_400));
    assert_eq!(c.nats.dlq.max_age, Duration::from_secs(7 * 86_400));
    assert_eq!(c.nats.kv.max_bytes, 104_857_600);
    assert_eq!(c.job.worker.consumer.back_off.len(), 4);
    assert_eq!(c.job.worker.host_root, PathBuf::from("/"));
    assert_eq!(
        (c.nats.kv.storage.as_str(), c.nats.stream.discard.as_str()),
        ("file", "new")
    );
}

#[test]
fn the_shipped_configs_load() {
    let sample = load(include_str!("../../config/osapi.yaml")).expect("config/osapi.yaml");
    assert_eq!(
        sample,
        Config::default(),
        "the sample must list exactly the defaults"
    );
    let dev = load(include_str!("../../config/dev.yaml")).expect("config/dev.yaml");
    assert_eq!(dev.nats.url, "nats://127.0.0.1:4222");
    assert_eq!(dev.api.server.listen, "127.0.0.1:8080");
}

#[test]
fn a_partial_file_merges_over_the_defaults() {
    let c = load("job: {worker: {max_jobs: 4}}").expect("partial");
    let mut want = Config::default();
    want.job.worker.max_jobs = 4;
    assert_eq!(c, want);

    let yaml = "nats:\n  stream: {storage: memory, discard: new}\n  auth: {type: token, token: t0k}\n\
                api: {server: {security: {roles: {ops: {permissions: [job:read, health:read]}}}}}\n\
                job: {worker: {labels: {group: web.dev}, consumer: {back_off: ['1s'], max_deliver: 2}}}";
    let c = load(yaml).expect("several sections");
    assert_eq!(c.nats.stream.storage, Storage::Memory);
    assert_eq!(c.nats.stream.discard, Discard::New);
    assert_eq!(c.nats.stream.name, "JOBS");
    assert_eq!(
        c.nats.auth,
        NatsAuth::Token {
            token: "t0k".into()
        }
    );
    assert_eq!(
        c.api.server.security.roles["ops"].permissions,
        ["job:read", "health:read"]
    );
    assert_eq!(c.job.worker.labels["group"], "web.dev");
    assert_eq!(c.job.worker.consumer.back_off, [Duration::from_secs(1)]);
    assert_eq!(c.job.worker.consumer.ack_wait, Duration::from_secs(120));
}

#[test]
fn bad_files_name_the_key() {
    // (yaml, text the error must contain)
    let table: &[(&str, &str)] = &[
        (
            "job: {worker: {max_job: 4}}",
            "unknown config key 'job.worker.max_job'",
        ),
        ("jobs: {}", "unknown config key 'jobs'"),
        (
            "nats: {stream: {nam: X}}",
            "unknown config key 'nats.stream.nam'",
        ),
        (
            "api: {server: {security: {roles: {ops: {perms: []}}}}}",
            "unknown config key 'api.server.security.roles.ops.perms'",
        ),
        (
            "nats: {auth: {type: none, user: x}}",
            "unknown config key 'nats.auth.user'",
        ),
        (
            "job: {worker: {max_jobs: ten}}",
            r#"job.worker.max_jobs: expected a positive integer, got "ten""#,
        ),
        (
            "job: {worker: {max_jobs: -2}}",
            "job.worker.max_jobs: expected a positive integer, got -2",
        ),
        ("nats: {url: 5}", "nats.url: expected a string, got 5"),
        (
            "nats: {stream: {max_msgs: many}}",
            "nats.stream.max_msgs: expected an integer",
        ),
        (
            "nats: {request_timeout: fast}",
            "nats.request_timeout: bad duration 'fast': ",
        ),
        (
            "nats: {request_timeout: 5}",
            "nats.request_timeout: expected a duration like '30s', got 5",
        ),
        (
            "job: {worker: {consumer: {back_off: [1s, soon]}}}",
            "job.worker.consumer.back_off[1]: bad duration 'soon'",
        ),
        (
            "job: {worker: {consumer: {back_off: 1s}}}",
            "job.worker.consumer.back_off: expected a list",
        ),
        (
            "job: {worker: {labels: [a]}}",
            "job.worker.labels: expected a map",
        ),
        (
            "job: {worker: {allow_operations: [1]}}",
            "job.worker.allow_operations[0]: expected a string",
        ),
        ("nats: 3", "nats: expected a map, got 3"),
        ("- a", "config: expected a map"),
        ("nats: {url: [", "invalid YAML"),
    ];
    for (yaml, want) in table {
        let err = load(yaml).expect_err(yaml).to_string();
        assert!(err.contains(want), "{yaml}\n  got:  {err}\n  want: {want}");
    }
}

#[test]
fn impossible_values_name_the_key() {
    let table: &[(&str, &str)] = &[
        ("job: {worker: {max_jobs: 0}}", "job.worker.max_jobs: must be between 1 and 1024, got 0"),
        ("job: {worker: {max_jobs: 1025}}", "job.worker.max_jobs: must be between 1 and 1024"),
        ("nats: {stream: {replicas: 0}}", "nats.stream.replicas: must be between 1 and 5"),
        ("nats: {stream: {max_consumers: 0}}", "nats.stream.max_consumers: must be between 1 and 1000000, got 0"),
        ("nats: {stream: {max_consumers: -1}}", "nats.stream.max_consumers: expected a positive integer, got -1"),
        ("nats: {kv: {replicas: 6}}", "nats.kv.replicas: must be between 1 and 5"),
        ("nats: {dlq: {replicas: 9}}", "nats.dlq.replicas: must be between 1 and 5"),
        ("nats: {kv: {storage: disk}}", "nats.kv.storage: expected file or memory, got 'disk'"),
        ("nats: {stream: {discard: all}}", "nats.stream.discard: expected old or new, got 'all'"),
        ("nats: {stream: {name: 'JO BS'}}", "nats.stream.name: 'JO BS' must match [A-Za-z0-9_-]+"),
        ("nats: {kv: {bucket: 'a.b'}}", "nats.kv.bucket: 'a.b' must match"),
        ("nats: {kv: {response_bucket: ''}}", "nats.kv.response_bucket: '' must match"),
        ("nats: {kv: {response_bucket: job-queue}}", "nats.kv.response_bucket: 'job-queue' must differ"),
        ("job: {worker: {consumer: {name: 'a/b'}}}", "job.worker.consumer.name: 'a/b' must match"),
        ("job: {worker: {queue_group: 'x'}}", "unknown config key 'job.worker.queue_group': removed; every worker shares"),
        ("nats: {stream: {discard: old}}", "nats.stream.discard: 'old' would evict"),
        ("nats: {kv: {workers_bucket: job-responses}}", "nats.kv.workers_bucket: 'job-responses' must differ"),
        ("nats: {namespace: 'dev env'}", "nats.namespace: 'dev env' must match"),
        ("nats: {url: ' '}", "nats.url: must not be empty"),
        ("api: {client: {url: ''}}", "api.client.url: must not be empty"),
        ("nats: {request_timeout: 0s}", "nats.request_timeout: must be more than 0s and at most 1m, got 0s"),
        ("nats: {connect_timeout: 61s}", "nats.connect_timeout: must be more than 0s and at most 1m, got 61s"),
        ("nats: {stream: {max_msgs: 0}}", "nats.stream.max_msgs: must be -1 (unlimited) or a positive integer"),
        ("nats: {kv: {max_bytes: -5}}", "nats.kv.max_bytes: must be -1 (unlimited)"),
        ("job: {worker: {heartbeat: 50ms}}", "job.worker.heartbeat: must be at least 100ms, got 50ms"),
        ("api: {server: {max_body_bytes: 0}}", "api.server.max_body_bytes: must be between 1 and 67108864"),
        ("api: {server: {max_body_bytes: 67108865}}", "api.server.max_body_bytes: must be between"),
        ("api: {server: {listen: '8080'}}", "api.server.listen: '8080' must be HOST:PORT"),
        ("api: {server: {security: {roles: {'a b': {}}}}}", "api.server.security.roles.a b: 'a b' must match"),
        ("api: {server: {security: {roles: {admin: {permissions: [job:read]}}}}}", "api.server.security.roles.admin: custom role 'admin' reuses a built-in role name"),
        ("api: {server: {security: {roles: {ops: {permissions: [job:reed]}}}}}", "api.server.security.roles.ops: role 'ops': unknown permission 'job:reed'"),
        ("api: {server: {max_connections: 0}}", "api.server.max_connections: must be between 1 and 65536"),
        ("api: {server: {max_job_data_bytes: 2000000}}", "api.server.max_job_data_bytes: must be between 2 and 1048576"),
        ("job: {worker: {labels: {'a b': web}}}", "job.worker.labels.a b: label key 'a b' must match"),
        ("job: {worker: {labels: {group: 'web dev'}}}", "job.worker.labels.group: label value 'web dev': dot-separated segments must match [A-Za-z0-9_-]+"),
        ("job: {worker: {labels: {group: 'web..dev'}}}", "job.worker.labels.group: label value 'web..dev'"),
        ("job: {worker: {labels: {group: 12}}}", "job.worker.labels.group: expected a string, got 12 (quote it)"),
        ("job: {worker: {hostname: 'a..b'}}", "job.worker.hostname: 'a..b' must be empty or match"),
        ("job: {worker: {hostname: '.a'}}", "job.worker.hostname: '.a'"),
        ("job: {worker: {hostname: 'a b'}}", "job.worker.hostname: 'a b'"),
        ("job: {worker: {allow_operations: ['reboot now']}}", "job.worker.allow_operations[0]: 'reboot now'"),
        ("job: {worker: {host_root: ''}}", "job.worker.host_root: must not be empty"),
        ("job: {worker: {consumer: {max_deliver: 4}}}", "job.worker.consumer.max_deliver: must be greater than the number of back_off steps (4), as NATS requires; got 4"),
        ("job: {worker: {consumer: {max_deliver: 0, back_off: []}}}", "job.worker.consumer.max_deliver: must be at least 1, got 0"),
        ("job: {worker: {consumer: {ack_wait: 0s}}}", "job.worker.consumer.ack_wait: must be more than 0s"),
        ("job: {worker: {consumer: {replicas: 3}}}", "job.worker.consumer.replicas: 3 is more than nats.stream.replicas (1): NATS refuses"),
        ("{nats: {stream: {replicas: 3}}, job: {worker: {consumer: {replicas: 5}}}}", "job.worker.consumer.replicas: 5 is more than nats.stream.replicas (3)"),
        ("job: {worker: {consumer: {replicas: -1}}}", "job.worker.consumer.replicas: expected a positive integer, got -1"),
        ("job: {worker: {consumer: {back_off: [0s]}}}", "job.worker.consumer.back_off[0]: must be more than 0s"),
        ("job: {worker: {consumer: {max_ack_pending: 0}}}", "job.worker.consumer.max_ack_pending: must be at least 1"),
        ("nats: {auth: {type: kerberos}}", "nats.auth.type: expected none, user_pass, token, nkey or creds, got 'kerberos'"),
        ("nats: {auth: {type: nkey}}", "nats.auth.nkey_seed_file: required with auth type nkey"),
        ("nats: {auth: {type: creds, nkey_seed_file: f}}", "nats.auth.nkey_seed_file: not used with auth type creds"),
        ("nats: {tls: {cert_file: c}}", "nats.tls: cert_file and key_file go together"),
        ("nats: {tls: {verify: true}}", "unknown config key 'nats.tls.verify'"),
        ("job: {worker: {allow_unsigned_jobs: 'yes'}}", "job.worker.allow_unsigned_jobs: expected true or false, got \"yes\""),
        ("job: {worker: {trusted_job_keys: ['']}}", "job.worker.trusted_job_keys[0]: must not be empty"),
        ("job: {worker: {trusted_job_keys: '/k.pub'}}", "job.worker.trusted_job_keys: expected a list"),
        ("audit: {max_age: 0s}", "audit.max_age: must be more than 0s"),
        ("audit: {max_bytes: -1}", "audit.max_bytes: must be at least 16384, got -1"),
        ("audit: {max_bytes: 1k}", "audit.max_bytes: expected an integer"),
        ("audit: {stream: AUDIT}", "unknown config key 'audit.stream'"),
        ("nats: {auth: {type: user_pass, username: u}}", "nats.auth.password: required with auth type user_pass"),
        ("nats: {auth: {type: token}}", "nats.auth.token: required with auth type token"),
        ("nats: {auth: {type: token, token: t, username: u}}", "nats.auth.username: not used with auth type token"),
    ];
    for (yaml, want) in table {
        let err = load(yaml).expect_err(yaml).to_string();
        assert!(err.contains(want), "{yaml}\n  got:  {err}\n  want: {want}");
    }
}

#[test]
fn trust_keys_decode() {
    let c = load(
        "nats: {auth: {type: nkey, nkey_seed_file: /etc/osapi/web1.nk}, tls: {ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem}}
api: {server: {security: {job_signing_key_file: /etc/osapi/job.key}}}
job: {worker: {trusted_job_keys: [/a.pub, /b.pub], allow_unsigned_jobs: true}}
audit: {max_age: 7d, max_bytes: 1048576}",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.nats.auth,
        NatsAuth::Nkey {
            nkey_seed_file: "/etc/osapi/web1.nk".into()
        }
    );
    assert_eq!(c.nats.tls.ca_file, "/ca.pem");
    assert_eq!(c.nats.tls.key_file, "/k.pem");
    assert_eq!(
        c.api.server.security.job_signing_key_file,
        "/etc/osapi/job.key"
    );
    assert_eq!(c.job.worker.trusted_job_keys, ["/a.pub", "/b.pub"]);
    assert!(c.job.worker.allow_unsigned_jobs);
    assert_eq!(c.audit.max_age, Duration::from_secs(7 * 86_400));
    assert_eq!(c.audit.max_bytes, 1_048_576);
    let creds =
        load("nats: {auth: {type: creds, creds_file: /x.creds}}").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        creds.nats.auth,
        NatsAuth::Creds {
            creds_file: "/x.creds".into()
        }
    );
    let defaults = load("").unwrap_or_else(|e| panic!("{e}"));
    assert!(!defaults.job.worker.allow_unsigned_jobs);
    assert_eq!(defaults.audit.max_age, Duration::from_secs(30 * 86_400));
    assert_eq!(defaults.audit.max_bytes, 256 * 1024 * 1024);
}

#[test]
fn good_edge_values_are_accepted() {
    let table: &[&str] = &[
        "nats: {namespace: ''}",
        "nats: {namespace: prod_1}",
        "nats: {stream: {max_msgs: -1}, kv: {ttl: 0s}}",
        "nats: {request_timeout: 60s, connect_timeout: 500ms}",
        "job: {worker: {max_jobs: 1024, heartbeat: 100ms, hostname: web-01.example.com}}",
        "job: {worker: {consumer: {back_off: [], max_deliver: 1}}}",
        "{nats: {stream: {replicas: 3}}, job: {worker: {consumer: {replicas: 1}}}}",
        "{nats: {stream: {replicas: 3}}, job: {worker: {consumer: {replicas: 3}}}}",
        "job: {worker: {labels: {group: web.dev.us-east, rack_no: r-12}}}",
        "nats: {auth: {type: user_pass, username: u, password: p}}",
        "nats: {auth: {type: none}}",
        "api: {server: {listen: '[::1]:0', max_body_bytes: 67108864}}",
    ];
    for yaml in table {
        if let Err(e) = load(yaml) {
            panic!("{yaml}: {e}");
        }
    }
}

#[test]
fn cli_args() {
    let run = |p: Option<&str>| CliArgs::Run {
        config: p.map(PathBuf::from),
    };
    let ok: &[(&[&str], CliArgs)] = &[
        (&[], run(None)),
        (&["--config", "a.yaml"], run(Some("a.yaml"))),
        (&["-c", "/etc/x.yaml"], run(Some("/etc/x.yaml"))),
        (&["--config=b.yaml"], run(Some("b.yaml"))),
        (&["--help"], CliArgs::Help),
        (&["-h", "--bogus"], CliArgs::Help),
        (&["-c", "a.yaml", "-h"], CliArgs::Help),
    ];
    for (list, want) in ok {
        assert_eq!(parse_cli_args(&args(list)).as_ref(), Ok(want), "{list:?}");
    }
    let bad: &[(&[&str], &str)] = &[
        (&["--bogus"], "unknown argument '--bogus'"),
        (&["a.yaml"], "unknown argument 'a.yaml'"),
        (&["--config"], "--config needs a PATH"),
        (&["-c"], "-c needs a PATH"),
        (&["--config="], "the config PATH is empty"),
        (&["-c", "a", "-c", "b"], "given more than once"),
    ];
    for (list, want) in bad {
        let err = parse_cli_args(&args(list)).expect_err(want).to_string();
        assert!(err.contains(want), "{list:?}: {err}");
    }
}

#[test]
fn load_reads_an_explicit_file_and_names_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("osapi-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("osapi.yaml");
    std::fs::write(&path, "job: {worker: {max_jobs: 3}}\n").expect("write config");
    let loaded = Config::load(Some(&path));
    let missing = dir.join("missing.yaml");
    let err = Config::load(Some(&missing)).expect_err("missing explicit file");
    let _ = std::fs::remove_dir_all(&dir);
    // The process env may carry OSAPI_* overrides; only assert what they cannot change here.
    if std::env::var_os("OSAPI_JOB_WORKER_MAX_JOBS").is_none() {
        assert_eq!(loaded.map(|c| c.job.worker.max_jobs), Ok(3));
    }
    assert!(err.0.contains("missing.yaml"), "{err}");
}
