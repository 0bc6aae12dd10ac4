//! `nats.auth.type: creds` against a real nats-server in operator mode (tests/src/operator.rs: an operator,
//! a system account and an application account with JetStream, made here, trusted through `resolver:
//! MEMORY`). The API and a worker connect with `.creds` files whose user JWTs carry the permissions
//! `osapi nats-permissions` prints for NKey users; a job runs to completion over HTTP, and the permissions
//! bind (web1's creds may write its own state, not web2's). From the attacker's side: no credentials, a
//! user of an account the server does not know, a user JWT naming the application account but signed by
//! another key, and a `.creds` file whose seed is not its JWT's are each refused, by the server (its log)
//! and to the client (the error names it); a worker holding one never gets in and says why in its log. A
//! worker whose creds file is missing stops at start, naming `nats.auth.creds_file`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nkeys::KeyPair;
use osapi_bus::Identity;
use osapi_common::names::{keys, Names};
use osapi_common::nats_permissions::{api, api_inbox_prefix, worker, worker_inbox_prefix};
use osapi_tests::operator::{user_jwt, Operator};
use osapi_tests::{
    echo_job_completed, request_as, wait_until, Api, Attacker, ExtraConfig, Options, Worker,
};

const DEADLINE: Duration = Duration::from_secs(30);
/// What nats-server answers (`-ERR`) to a connection whose credentials it does not accept.
const REFUSED: &str = "Authorization Violation";

fn names() -> Names {
    Names::new("t1", "JOBS", "job-queue", "job-responses", "jobs-worker")
}

/// The daemons' `nats.auth` for a `.creds` file.
fn creds_yaml(creds: &Path) -> ExtraConfig {
    ExtraConfig {
        nats_yaml: vec![(
            "auth".into(),
            format!("{{ type: creds, creds_file: '{}' }}", creds.display()),
        )],
        ..ExtraConfig::default()
    }
}

fn creds_identity(creds: &Path) -> Identity {
    Identity {
        creds_file: Some(creds.to_path_buf()),
        ..Identity::default()
    }
}

/// The API's and web1's `.creds`, their JWTs holding the permissions of `osapi nats-permissions`.
fn daemon_creds(trust: &Operator) -> (PathBuf, PathBuf) {
    let names = names();
    let api_creds = trust.user_creds("api", Some(&api(&names, &names.workers_bucket)));
    let web1 = worker(&names, &names.workers_bucket, "web1", &BTreeMap::new());
    (api_creds, trust.user_creds("web1", Some(&web1)))
}

#[test]
fn the_api_and_a_worker_connect_with_creds_files_and_run_a_job() {
    let trust = Operator::new();
    let nats = trust.start();
    let (api_creds, web1_creds) = daemon_creds(&trust);
    let options = Options::default();
    let api_proc = Api::start_extra(&nats.url(), &options, &creds_yaml(&api_creds));
    let api = api_proc.base_url();
    let _web1 = Worker::start_extra(
        &nats.url(),
        "web1",
        &[],
        2,
        &options,
        &creds_yaml(&web1_creds),
    );
    let admin = osapi_tests::admin_token();
    let get = |path: &str| request_as(Some(&admin), &api, "GET", path, None).expect("API answers");
    wait_until("web1 listed and subscribed", DEADLINE, || {
        let workers = get("/job/workers").body;
        workers["total"] == 1 && workers["workers"][0]["subscribed"] == true
    });
    // Its own host's consumer and the shared `_any` one (the API's).
    for target in ["web1", "_any"] {
        let detail = echo_job_completed(&admin, &api, target, DEADLINE);
        assert!(detail["worker_states"]["web1"].is_object(), "{detail:#}");
    }
    // They ran the whole pipeline inside their JWTs' permissions: the server refused them nothing.
    let log = std::fs::read_to_string(nats.dir().join("nats.log")).unwrap_or_default();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Violation") || l.contains("authentication error"))
        .collect();
    assert!(
        refusals.is_empty(),
        "the server refused a daemon:\n{refusals:#?}"
    );
    // The permissions on a user JWT bind like an NKey user's: web1's creds write its own state, not web2's.
    let names = names();
    let web1 = Attacker::connect_with_inbox(
        &nats.url(),
        "t1",
        creds_identity(&web1_creds),
        &worker_inbox_prefix(&names, "web1"),
    )
    .expect("web1's creds connect");
    let id = uuid::Uuid::new_v4().to_string();
    let put = |host: &str| {
        web1.bus
            .kv_put(&names.bucket, &keys::state(&id, host), b"{\"forged\":true}")
    };
    // Retried within a deadline: on a loaded machine one write may outlast the 2 s request timeout.
    wait_until("web1 to write its own state", DEADLINE, || {
        put("web1").is_ok()
    });
    let got = put("web2");
    assert!(got.is_err(), "web1 wrote web2's state: {got:?}");
}

#[test]
fn users_the_account_did_not_sign_and_mismatched_seeds_are_refused() {
    let trust = Operator::new();
    let nats = trust.start();
    let url = nats.url();
    let (api_creds, _) = daemon_creds(&trust);
    // The setup is sound: a user the account made gets in (with the API's permissions, on its inbox).
    let control = Attacker::connect_with_inbox(
        &url,
        "t1",
        creds_identity(&api_creds),
        &api_inbox_prefix(&names()),
    );
    assert!(
        control.is_ok(),
        "a user of the account was refused: {:?}",
        control.err()
    );

    let foreign = KeyPair::new_account();
    let app = trust.app_account();
    let (user, other) = (KeyPair::new_user(), KeyPair::new_user());
    let bad = [
        // An account the operator never signed (so the server does not know it) signs its own user.
        (
            "unknown-account",
            user_jwt(&foreign, &foreign.public_key(), &user, "stranger", None),
            &user,
        ),
        // The JWT names the application account as its issuer, but another key signed it.
        (
            "forged-issuer",
            user_jwt(&foreign, &app, &user, "forger", None),
            &user,
        ),
        // A genuine JWT of the account, with a seed that is not its subject's (a stolen JWT alone).
        (
            "mismatched-seed",
            trust.app_user_jwt(&user, "thief", None),
            &other,
        ),
    ];
    let mut refused: Vec<(&str, PathBuf)> = Vec::new();
    for (name, jwt, seed) in &bad {
        let creds = trust.write_creds(name, jwt, seed);
        let got = Attacker::connect(&url, "t1", creds_identity(&creds));
        match got {
            Ok(_) => panic!("{name}: connected"),
            Err(e) => assert!(e.contains(REFUSED), "{name}: {e}"),
        }
        refused.push((name, creds));
    }
    let none = Attacker::connect(&url, "t1", Identity::default());
    assert!(
        none.as_ref().err().is_some_and(|e| e.contains(REFUSED)),
        "no credentials: {:?}",
        none.err()
    );

    // A worker holding one of them never gets in, and its log says why.
    let options = Options::default();
    let workers: Vec<Worker> = refused
        .iter()
        .map(|(name, creds)| Worker::start_extra(&url, name, &[], 1, &options, &creds_yaml(creds)))
        .collect();
    for w in &workers {
        wait_until(
            &format!("{} to log the refusal", w.hostname()),
            DEADLINE,
            || w.log_tail().contains(REFUSED),
        );
    }
    // A creds file that is not there is a mistake in the config, not a network trouble: the worker stops
    // at once, naming the setting, instead of retrying for ever.
    let missing = trust.dir().join("missing.creds");
    let mut lost = Worker::start_extra(&url, "lost", &[], 1, &options, &creds_yaml(&missing));
    wait_until(
        "the worker without its creds file to exit",
        DEADLINE,
        || lost.exited().is_some(),
    );
    assert!(
        lost.log_tail().contains("nats.auth.creds_file"),
        "{}",
        lost.log_tail()
    );
    let api_proc = Api::start_extra(&url, &options, &creds_yaml(&api_creds));
    let listed = request_as(
        Some(&osapi_tests::admin_token()),
        &api_proc.base_url(),
        "GET",
        "/job/workers",
        None,
    )
    .expect("API answers");
    assert_eq!(listed.body["total"], 0, "{}", listed.text);
    // The server refused each for its credentials: four attacker connections (three creds files and
    // none) and each worker at least once. (2.9 names the client on the line, 2.10+ no longer does.)
    let log = std::fs::read_to_string(nats.dir().join("nats.log")).unwrap_or_default();
    let refusals = log
        .lines()
        .filter(|l| l.contains("authentication error"))
        .count();
    assert!(
        refusals >= bad.len() + 1 + workers.len(),
        "{refusals} refusals in the server log:\n{log}"
    );
}
