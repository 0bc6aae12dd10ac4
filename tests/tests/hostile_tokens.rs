//! Token rules from the attacker's side, against the real binaries: keys too short to resist guessing and
//! confusing role definitions stop the API at start-up; `nbf` and `aud` are honoured; and the curl scripts
//! never put a token where `ps` shows it to every local user.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use osapi_tests::{
    admin_token, binary, claims, request_as, sign, Api, Cluster, ExtraConfig, NatsServer, Options,
    SIGNING_KEY,
};

/// How long a refused start may take (it fails before connecting to NATS).
const REFUSAL_DEADLINE: Duration = Duration::from_secs(10);

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("osapi-tokens-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// Runs `osapi-api` with `security` (YAML flow map) as `api.server.security`; returns (exit code, stderr)
/// once it exits, or panics if it is still running after [`REFUSAL_DEADLINE`].
fn start_refused(security: &str) -> (i32, String) {
    let dir = temp_dir();
    let config = dir.join("osapi.yaml");
    let yaml = format!(
        "nats: {{ url: 'nats://127.0.0.1:1' }}\napi: {{ server: {{ listen: '127.0.0.1:0', security: {security} }} }}\n"
    );
    std::fs::write(&config, yaml).expect("write the config");
    let mut command = Command::new(binary("osapi-api"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OSAPI_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).expect("stderr file"))
        .spawn()
        .expect("run osapi-api");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for osapi-api") {
            break status;
        }
        if started.elapsed() > REFUSAL_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("osapi-api with security {security} still running after {REFUSAL_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn short_keys_and_confusing_roles_stop_the_api_at_start() {
    let good_key = format!("'{SIGNING_KEY}'");
    let cases = [
        (
            "a 31-byte key".to_string(),
            format!("{{ signing_key: '{}' }}", "k".repeat(31)),
            "is 31 bytes long; an HS256 key must have at least 32",
        ),
        (
            "a custom role named admin".to_string(),
            format!("{{ signing_key: {good_key}, roles: {{ admin: {{ permissions: [job:read] }} }} }}"),
            "api.server.security.roles.admin: custom role 'admin' reuses a built-in role name",
        ),
        (
            "a custom role named read".to_string(),
            format!("{{ signing_key: {good_key}, roles: {{ read: {{ permissions: ['*'] }} }} }}"),
            "custom role 'read'",
        ),
        (
            "an unknown permission".to_string(),
            format!("{{ signing_key: {good_key}, roles: {{ ops: {{ permissions: [job:read, jobs:write] }} }} }}"),
            "role 'ops': unknown permission 'jobs:write'",
        ),
    ];
    for (what, security, want) in cases {
        let (code, stderr) = start_refused(&security);
        assert_eq!(code, 1, "{what}: {stderr}");
        assert!(stderr.contains(want), "{what}: {stderr}");
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `GET /job/status` with a token made of `claims` changed by `edit`; returns (status, error text).
fn status_with(base_url: &str, edit: impl Fn(&mut serde_json::Value)) -> (u16, String) {
    let mut c = claims(&["read"], None);
    edit(&mut c);
    let token = sign(&c, SIGNING_KEY);
    let resp = request_as(Some(&token), base_url, "GET", "/job/status", None)
        .unwrap_or_else(|e| panic!("{e}"));
    (resp.status, resp.text)
}

#[test]
fn nbf_is_honoured_and_aud_is_accepted_then_checked_when_configured() {
    let nats = NatsServer::start();
    let open = Api::start(&nats.url(), &Options::default());
    let options = Options {
        namespace: "t2".into(),
        ..Options::default()
    };
    let extra = ExtraConfig {
        api_security_yaml: vec![("audience".into(), "'fleet-a'".into())],
        ..ExtraConfig::default()
    };
    let strict = Api::start_extra(&nats.url(), &options, &extra);
    let (open, strict) = (open.base_url(), strict.base_url());

    // (API, what, claims edit, status, text the answer contains)
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, &str, Edit, u16, &str)> = vec![
        (&open, "no aud", Box::new(|_| {}), 200, ""),
        (
            &open,
            "aud (OSAPI's tokens carry one)",
            Box::new(|c| c["aud"] = json!("osapi")),
            200,
            "",
        ),
        (
            &open,
            "nbf an hour ahead",
            Box::new(|c| c["nbf"] = json!(now_s() + 3600)),
            401,
            "not valid yet",
        ),
        (
            &open,
            "nbf a minute ago",
            Box::new(|c| c["nbf"] = json!(now_s() - 60)),
            200,
            "",
        ),
        (
            &strict,
            "aud = the configured audience",
            Box::new(|c| c["aud"] = json!("fleet-a")),
            200,
            "",
        ),
        (
            &strict,
            "aud of another fleet",
            Box::new(|c| c["aud"] = json!("fleet-b")),
            401,
            "audience",
        ),
        (&strict, "no aud", Box::new(|_| {}), 401, "aud"),
        (
            &strict,
            "nbf ahead, right aud",
            Box::new(|c| {
                c["aud"] = json!("fleet-a");
                c["nbf"] = json!(now_s() + 600);
            }),
            401,
            "not valid yet",
        ),
    ];
    for (api, what, edit, want, text) in cases {
        let (status, body) = status_with(api, edit);
        assert_eq!(status, want, "{what} at {api}: {body}");
        assert!(body.contains(text), "{what} at {api}: {body}");
    }
}

#[test]
fn the_scripts_never_put_the_token_on_a_command_line() {
    let cluster = Cluster::start(&[("w1", &[], 2)]);
    let token = admin_token();
    let dir = temp_dir();
    // A curl in front of the real one that records its arguments: what `ps` would show.
    let real = Command::new("sh")
        .args(["-c", "command -v curl"])
        .output()
        .expect("look for curl");
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    assert!(!real.is_empty(), "curl is missing: the scripts need it");
    let argv_log = dir.join("argv");
    let wrapper = dir.join("curl");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\nexec '{real}' \"$@\"\n",
            argv_log.display()
        ),
    )
    .expect("write the curl wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod the wrapper");
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let run = |script: &str, args: &[&str]| {
        let out = Command::new("bash")
            .arg(scripts.join(script))
            .args(args)
            .env("PATH", &path)
            .env("OSAPI_URL", cluster.api.base_url())
            .env("OSAPI_TOKEN", &token)
            .stdin(Stdio::null())
            .output()
            .expect("run the script");
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success(),
            "{script} {args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let id = run("job-create.sh", &["test.ping.do", "--target", "w1"]);
    run("job-wait.sh", &[&id, "--timeout", "30s"]);
    run("job-list.sh", &["--limit", "5"]);
    run("job-retry.sh", &[&id]);
    let argv = std::fs::read_to_string(&argv_log).expect("the wrapper ran");
    assert!(argv.lines().count() > 10, "curl ran: {argv}");
    assert!(
        !argv.contains(&token),
        "a script passed the token as an argument:\n{argv}"
    );
    // The scripts refuse a "token" that would break out of curl's config quoting.
    let out = Command::new("bash")
        .arg(scripts.join("job-list.sh"))
        .env("PATH", &path)
        .env("OSAPI_URL", cluster.api.base_url())
        .env("OSAPI_TOKEN", "x\"\nurl = \"http://elsewhere")
        .stdin(Stdio::null())
        .output()
        .expect("run the script");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
