//! Least-privilege NATS identities, from the attacker's side: nats-server runs packaging/nats/nats-server.conf
//! with TLS (a CA, server and client certificates made by openssl here) and one NKey user per identity, the
//! blocks printed by `osapi nats-permissions`. The whole pipeline works under it; web1's credentials are
//! refused when writing web2's state, response, heartbeat or drain record, or any job definition, or pulling web2's
//! consumer, subscribing to web2's or the API's inbox, or creating or updating the shared `_any`
//! consumer, and the API's when writing a host's state.

use osapi_bus::Identity;
use osapi_common::names::{keys, Names};
use osapi_common::nats_permissions::{api_inbox_prefix, worker_inbox_prefix};
use osapi_tests::{command, wait_until, Api, Attacker, ExtraConfig, NatsServer, Options, Worker};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all P-256, in `dir`.
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=osapi test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca-key.pem", "-out", "ca.pem"]);
    run("openssl", &ca, dir);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).expect("ext file");
        let (key, csr, cert) = (
            format!("{name}-key.pem"),
            format!("{name}.csr"),
            format!("{name}-cert.pem"),
        );
        let subject = format!("/CN=osapi {name}");
        let mut req = vec!["req", "-subj", subject.as_str()];
        req.extend(ec);
        req.extend(["-keyout", key.as_str(), "-out", csr.as_str()]);
        run("openssl", &req, dir);
        let ext = format!("{name}.ext");
        let sign = [
            "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-days", "1", "-out", &cert, "-extfile", &ext,
        ];
        run("openssl", &sign, dir);
    }
}

/// A new NKey user: its seed in `dir/NAME.nk`, and its public key.
fn nkey(dir: &Path, name: &str) -> (PathBuf, String) {
    let pair = nkeys::KeyPair::new_user();
    let path = dir.join(format!("{name}.nk"));
    std::fs::write(&path, pair.seed().expect("seed")).expect("write seed");
    (path, pair.public_key())
}

/// `osapi nats-permissions ARGS` with a config naming the test namespace.
fn permissions(dir: &Path, args: &[&str]) -> String {
    let config = dir.join("cli.yaml");
    std::fs::write(&config, "nats: {namespace: t1}\n").expect("cli config");
    let mut full = vec![
        "-c",
        config.to_str().expect("utf-8 path"),
        "nats-permissions",
    ];
    full.extend(args);
    let out = command("osapi")
        .args(&full)
        .output()
        .expect("run osapi nats-permissions");
    assert!(out.status.success(), "osapi {full:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The TLS files and NKey of one identity, as the daemons' `nats:` config and as a bus identity.
struct Who {
    seed: PathBuf,
    dir: PathBuf,
}

impl Who {
    fn yaml(&self) -> ExtraConfig {
        let d = self.dir.display();
        ExtraConfig {
            nats_yaml: vec![
                ("auth".into(), format!("{{ type: nkey, nkey_seed_file: '{}' }}", self.seed.display())),
                ("tls".into(), format!("{{ ca_file: '{d}/ca.pem', cert_file: '{d}/client-cert.pem', key_file: '{d}/client-key.pem' }}")),
            ],
            ..ExtraConfig::default()
        }
    }

    fn identity(&self) -> Identity {
        Identity {
            nkey_seed_file: Some(self.seed.clone()),
            creds_file: None,
            ca_file: Some(self.dir.join("ca.pem")),
            client_cert: Some((
                self.dir.join("client-cert.pem"),
                self.dir.join("client-key.pem"),
            )),
        }
    }
}

#[test]
fn each_identity_holds_only_its_own_keys() {
    let dir = std::env::temp_dir().join(format!("osapi-nats-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    make_certs(&dir);
    let (api_seed, api_pub) = nkey(&dir, "api");
    let (web1_seed, web1_pub) = nkey(&dir, "web1");
    let (web2_seed, web2_pub) = nkey(&dir, "web2");
    let users = [
        permissions(&dir, &["--api", "--nkey", &api_pub]),
        permissions(&dir, &["--hostname", "web1", "--nkey", &web1_pub]),
        permissions(
            &dir,
            &[
                "--hostname",
                "web2",
                "--label",
                "group=web",
                "--nkey",
                &web2_pub,
            ],
        ),
    ];
    std::fs::write(
        dir.join("osapi-users.conf"),
        format!("users = [\n{}]\n", users.join("\n")),
    )
    .expect("users file");
    let packaged =
        std::fs::read_to_string(workspace_root().join("packaging/nats/nats-server.conf"))
            .expect("packaging/nats/nats-server.conf");
    let conf = dir.join("nats-server.conf");
    let here = format!("{}/", dir.display());
    // Paths become the test's own: certificates here, the store from the harness's `-sd`.
    let store_line = r#"store_dir: "/var/lib/nats/jetstream""#;
    assert!(packaged.contains(store_line) && packaged.contains("/etc/nats/ca.pem"));
    let local = packaged
        .replace("/etc/nats/", &here)
        .replace(store_line, "# store_dir: the test's -sd");
    std::fs::write(&conf, local).expect("server config");
    let nats = NatsServer::start_with_config(&conf, dir.join("store"));
    let url = format!("tls://127.0.0.1:{}", nats.port());

    let who = |seed: &PathBuf| Who {
        seed: seed.clone(),
        dir: dir.clone(),
    };
    let options = Options::default();
    let _api_proc = Api::start_extra(&url, &options, &who(&api_seed).yaml());
    let api = _api_proc.base_url();
    let _web1 = Worker::start_extra(&url, "web1", &[], 2, &options, &who(&web1_seed).yaml());
    let _web2 = Worker::start_extra(
        &url,
        "web2",
        &[("group", "web")],
        2,
        &options,
        &who(&web2_seed).yaml(),
    );
    let admin = osapi_tests::admin_token();
    let get = |path: &str| {
        osapi_tests::request_as(Some(&admin), &api, "GET", path, None).expect("API answers")
    };
    wait_until("web1 and web2 listed and subscribed", DEADLINE, || {
        let workers = get("/job/workers").body;
        let ready = workers["workers"].as_array().into_iter().flatten();
        workers["total"] == 2 && ready.filter(|w| w["subscribed"] == true).count() == 2
    });

    // The whole pipeline works: broadcast, any one host (the shared consumer the API made), label, host.
    for (target, hosts) in [("_all", 2), ("_any", 1), ("group:web", 1), ("web1", 1)] {
        let detail = osapi_tests::echo_job_completed(&admin, &api, target, DEADLINE);
        assert_eq!(
            detail["worker_states"].as_object().map(|m| m.len()),
            Some(hosts),
            "{detail:#}"
        );
    }
    let id = uuid::Uuid::new_v4().to_string();

    // web1's own credentials: its own state is writable (the identity works)...
    let names = Names::new("t1", "JOBS", "job-queue", "job-responses", "jobs-worker");
    let web1 = Attacker::connect_with_inbox(
        &url,
        "t1",
        who(&web1_seed).identity(),
        &worker_inbox_prefix(&names, "web1"),
    )
    .expect("web1 connects");
    let api_bus = Attacker::connect_with_inbox(
        &url,
        "t1",
        who(&api_seed).identity(),
        &api_inbox_prefix(&names),
    )
    .expect("api connects");
    let put =
        |a: &Attacker, bucket: &str, key: &str| a.bus.kv_put(bucket, key, b"{\"forged\":true}");
    // Its own writes are retried within a deadline: on a loaded machine one may outlast the 2 s timeout.
    let own = |key: String, bucket: &str| {
        wait_until(&format!("web1 to write its own {key}"), DEADLINE, || {
            put(&web1, bucket, &key).is_ok()
        })
    };
    own(keys::state(&id, "web1"), &names.bucket);
    // ...and every other host's records, and any job definition, are refused.
    let refused = [
        (names.bucket.clone(), keys::state(&id, "web2")),
        (names.response_bucket.clone(), keys::response(&id, "web2")),
        // Its answers go in its own state: the response bucket is closed to it, its own keys too.
        (names.response_bucket.clone(), keys::response(&id, "web1")),
        (names.workers_bucket.clone(), keys::worker("web2")),
        (names.drain_bucket.clone(), keys::drain("web2")),
        (names.bucket.clone(), keys::job(&id)),
    ];
    for (bucket, key) in &refused {
        let got = put(&web1, bucket, key);
        assert!(got.is_err(), "web1 wrote {bucket} {key}: {got:?}");
    }
    // Nor may it pull web2's jobs from web2's own consumer.
    let labels = [("group".to_string(), "web".to_string())].into();
    let web2_durable = names
        .worker_consumers("web2", &labels)
        .into_iter()
        .find(|c| c.durable.contains("-host-"))
        .map(|c| c.durable)
        .expect("web2's host consumer");
    let pull = format!("CONSUMER.MSG.NEXT.{}.{web2_durable}", names.stream);
    let got = web1
        .bus
        .js_api(&pull, &json!({"batch": 1, "expires": 500_000_000}));
    assert!(got.is_err(), "web1 pulled from {web2_durable}: {got:?}");
    // Nor may it create or update the shared `_any` consumer (the API's): not by its subject, nor by its
    // own consumer's subject naming `_any` in the body (the server holds the two equal), nor by 2.10's
    // CONSUMER.CREATE.
    let any = names.any_consumer().durable;
    let own_durable = names
        .worker_consumers("web1", &Default::default())
        .into_iter()
        .find(|c| !c.shared)
        .map(|c| c.durable)
        .expect("web1's own consumer");
    let stalled = json!({"stream_name": names.stream, "config": {
        "durable_name": any, "filter_subject": "t1.jobs.*._any", "ack_policy": "explicit",
        "deliver_policy": "all", "max_ack_pending": 1, "max_waiting": 1}});
    let creates = [
        format!("CONSUMER.DURABLE.CREATE.{}.{any}", names.stream),
        format!("CONSUMER.CREATE.{}.{any}", names.stream),
        format!("CONSUMER.DURABLE.CREATE.{}.{own_durable}", names.stream),
    ];
    for create in &creates {
        let got = web1.bus.js_api(create, &stalled);
        assert!(got.is_err(), "web1 sent {create} for {any}: {got:?}");
    }
    // A loaded machine can let one request's answer miss the bus's 2 s timeout: ask again until a deadline.
    let mut info = None;
    wait_until(
        "the API to read the shared consumer",
        Duration::from_secs(20),
        || {
            match api_bus
                .bus
                .js_api(&format!("CONSUMER.INFO.{}.{any}", names.stream), &json!({}))
            {
                Ok(answer) => info = Some(answer),
                Err(e) if e.is_transient() => {}
                Err(e) => panic!("the API reads the shared consumer: {e}"),
            }
            info.is_some()
        },
    );
    let info = info.expect("set when the wait ended");
    assert!(
        info["config"]["max_ack_pending"] != 1 && info["config"]["max_waiting"] != 1,
        "web1 changed {any}: {info:#}"
    );
    // Nor may it listen on web2's inbox (where web2's pulled jobs and their ack subjects arrive) or the
    // API's (its replies: audit pages, idempotency records): subscribed, nothing arrives.
    for prefix in [
        worker_inbox_prefix(&names, "web2"),
        api_inbox_prefix(&names),
    ] {
        let sub = web1
            .bus
            .subscribe(&format!("{prefix}.>"))
            .expect("subscribe is sent");
        // The server answers the refusal asynchronously; a PING round trip (a request) passes it.
        own(keys::state(&id, "web1"), &names.bucket);
        let probe = format!("{prefix}.probe");
        api_bus
            .bus
            .publish(&probe, b"x")
            .expect("the API publishes");
        assert_eq!(
            sub.next_subject(Duration::from_secs(1)),
            None,
            "web1 received on {prefix}"
        );
    }
    // Refused for what they are, not for a broken connection: web1 still writes its own.
    own(keys::state(&id, "web1"), &names.bucket);
    // The API's identity may not write a host's state either.
    let got = put(&api_bus, &names.bucket, &keys::state(&id, "web2"));
    assert!(got.is_err(), "the API wrote a host's state: {got:?}");
    // Nothing of it landed (read with the API's identity, which may read everything).
    for (bucket, key) in &refused {
        let entry = api_bus.bus.kv_get(bucket, key).expect("read back");
        let forged = entry.is_some_and(|e| e.value.windows(8).any(|w| w == b"\"forged\""));
        assert!(!forged, "{bucket} {key} holds the forged value");
    }
    // The server refused them for the permissions, naming the identity; and the daemons, which ran the
    // whole pipeline, never once touched a subject their lists leave out.
    let log = std::fs::read_to_string(nats.dir().join("nats.log")).unwrap_or_default();
    let violations: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
    for (bucket, key) in &refused {
        let subject = format!("Subject \"$KV.{bucket}.{key}\"");
        assert!(
            violations.iter().any(|l| l.contains("Publish Violation")
                && l.contains(&web1_pub)
                && l.contains(&subject)),
            "no violation logged for {subject}:\n{}",
            violations.join("\n")
        );
    }
    for prefix in [
        worker_inbox_prefix(&names, "web2"),
        api_inbox_prefix(&names),
    ] {
        let subject = format!("Subject \"{prefix}.>\"");
        assert!(
            violations
                .iter()
                .any(|l| l.contains("Subscription Violation")
                    && l.contains(&web1_pub)
                    && l.contains(&subject)),
            "no violation logged for subscribing to {subject}"
        );
    }
    let created = format!("Subject \"$JS.API.{}\"", creates[0]);
    assert!(
        violations
            .iter()
            .any(|l| l.contains(&web1_pub) && l.contains(&created)),
        "no violation logged for {created}"
    );
    let pulled = format!("Subject \"$JS.API.{pull}\"");
    assert!(
        violations
            .iter()
            .any(|l| l.contains(&web1_pub) && l.contains(&pulled)),
        "no violation logged for {pulled}"
    );
    let by_daemons: Vec<&&str> = violations
        .iter()
        .filter(|l| !l.contains(":attacker\""))
        .collect();
    assert!(
        by_daemons.is_empty(),
        "a daemon was refused:\n{by_daemons:#?}"
    );
    drop((_web1, _web2, _api_proc, nats));
    let _ = std::fs::remove_dir_all(&dir);
}
