//! The `osapi` CLI as a user runs it: the real binary against a live cluster (one worker), checking exit
//! codes (0 completed, 1 failed, 2 usage, 3 unreachable or timed out), `--json` output that parses, and
//! the server's own messages on errors. `token generate|validate` round trip through a config file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use osapi_tests::{admin_token, binary, request_as, token, Cluster, SIGNING_KEY};

/// Bound on one CLI run; the CLI bounds its own requests and waits, this only stops a hang.
const RUN_DEADLINE: Duration = Duration::from_secs(60);
const JOB_DEADLINE: Duration = Duration::from_secs(30);

/// A cluster with one worker, `w1`.
fn one_worker() -> Cluster {
    Cluster::start(&[("w1", &[], 2)])
}

/// A temp dir removed on drop, holding the config files the CLI reads.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("osapi-cli-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Writes `name` with `text` and returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a CLI run ended.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {self:#?}"))
    }
}

/// The CLI, talking to one API with one token, and reading an explicit (possibly empty) config file so
/// that neither `/etc/osapi/osapi.yaml` nor the caller's `OSAPI_*` variables play a part.
struct Cli {
    url: String,
    token: String,
    config: PathBuf,
}

impl Cli {
    fn new(url: &str, token: &str, config: &Path) -> Cli {
        Cli {
            url: url.to_string(),
            token: token.to_string(),
            config: config.to_path_buf(),
        }
    }

    /// Runs `osapi --config CONFIG ARGS...` with OSAPI_URL and OSAPI_TOKEN set.
    fn run(&self, args: &[&str]) -> Run {
        let mut command = Command::new(binary("osapi"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OSAPI_") {
                command.env_remove(key);
            }
        }
        command
            .env("OSAPI_URL", &self.url)
            .env("OSAPI_TOKEN", &self.token)
            .arg("--config")
            .arg(&self.config)
            .args(args);
        run(command)
    }

    /// [`Cli::run`], asserting the exit code.
    fn expect(&self, code: i32, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, code, "osapi {args:?}: {run:#?}");
        run
    }
}

/// Runs `command` to the end (killing it after [`RUN_DEADLINE`]) and collects its output.
fn run(mut command: Command) -> Run {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let Ok(output) = finished.recv_timeout(RUN_DEADLINE) else {
        // SAFETY: kill(2) on our own child, which has not been reaped (its waiter is still blocked).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
        panic!("{command:?} still running after {RUN_DEADLINE:?}");
    };
    let output = output.unwrap_or_else(|err| panic!("waiting for {command:?}: {err}"));
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn assert_uuid(text: &str, what: &str) -> String {
    let id = text.trim();
    uuid::Uuid::parse_str(id).unwrap_or_else(|err| panic!("{what} '{id}' is no UUID: {err}"));
    id.to_string()
}

#[test]
fn job_run_exit_codes_follow_the_job() {
    let cluster = one_worker();
    let dir = TempDir::new();
    let cli = Cli::new(
        &cluster.api.base_url(),
        &admin_token(),
        &dir.file("empty.yaml", ""),
    );

    let ok = cli.expect(0, &["job", "run", "test.ping.do"]);
    assert!(ok.stdout.contains("completed"), "{ok:#?}");
    assert!(ok.stdout.contains("pong"), "the result is shown: {ok:#?}");

    let failed = cli.expect(1, &["job", "run", "test.fail.do"]);
    assert!(failed.stdout.contains("failed"), "{failed:#?}");
    assert!(failed.stderr.contains("failed"), "{failed:#?}");

    // The job sleeps 5 s; the CLI waits its 1 s timeout (plus a short grace) and gives up with 3.
    let args = ["job", "run", "test.sleep.do", "--data", r#"{"seconds": 5}"#];
    let late = cli.expect(3, &[&args[..], &["--timeout", "1s"]].concat());
    assert!(late.stderr.contains("still"), "{late:#?}");

    let json = cli.expect(
        0,
        &[
            "job",
            "run",
            "test.echo.do",
            "--data",
            r#"{"a": 1}"#,
            "--json",
        ],
    );
    let job = json.json();
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(job["result"]["a"], 1, "{job:#}");
}

#[test]
fn job_commands_print_json_that_parses() {
    let cluster = one_worker();
    let dir = TempDir::new();
    let cli = Cli::new(
        &cluster.api.base_url(),
        &admin_token(),
        &dir.file("empty.yaml", ""),
    );

    let added = cli
        .expect(0, &["job", "add", "test.ping.do", "--json"])
        .json();
    let id = added["job_id"].as_str().unwrap_or_default();
    let id = assert_uuid(id, "job add --json job_id");
    cluster.wait_job(&id, JOB_DEADLINE);

    let plain = cli.expect(0, &["job", "add", "test.ping.do"]);
    assert_uuid(&plain.stdout, "job add's output");

    let job = cli.expect(0, &["job", "get", &id, "--json"]).json();
    assert_eq!(job["id"], id.as_str(), "{job:#}");
    assert_eq!(job["status"], "completed", "{job:#}");

    let list = cli.expect(0, &["job", "list", "--json"]).json();
    assert!(list["total_items"].as_u64() >= Some(2), "{list:#}");
    let items = list["items"].as_array().expect("items");
    assert!(items.iter().any(|j| j["id"] == id.as_str()), "{list:#}");
    let table = cli.expect(0, &["job", "list", "--status", "completed"]);
    assert!(table.stdout.contains(&id), "{table:#?}");

    let status = cli.expect(0, &["job", "status", "--json"]).json();
    assert!(status["total_jobs"].as_u64() >= Some(2), "{status:#}");
    let workers = cli.expect(0, &["job", "workers", "--json"]).json();
    let hosts: Vec<&str> = workers["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|w| w["hostname"].as_str())
        .collect();
    assert_eq!(hosts, ["w1"], "{workers:#}");

    let retried = cli.expect(0, &["job", "retry", &id]);
    let new_id = assert_uuid(&retried.stdout, "job retry's output");
    assert_ne!(new_id, id);
    assert_eq!(cluster.job(&new_id)["retry_of"], id.as_str());

    cli.expect(0, &["job", "delete", &id]);
    let gone = cli.expect(1, &["job", "get", &id]);
    assert!(gone.stderr.contains("404"), "{gone:#?}");
    assert!(gone.stderr.contains("not found"), "{gone:#?}");
}

#[test]
fn errors_have_their_exit_codes_and_the_servers_message() {
    let cluster = one_worker();
    let dir = TempDir::new();
    let empty = dir.file("empty.yaml", "");
    let url = cluster.api.base_url();
    let cli = Cli::new(&url, &admin_token(), &empty);

    let usage = cli.expect(2, &["job", "nope"]);
    assert!(usage.stderr.contains("unknown command"), "{usage:#?}");
    cli.expect(2, &["job", "add", "test.ping.do", "--data", "{not json"]);

    let nowhere = Cli::new("http://127.0.0.1:1", &admin_token(), &empty);
    let unreachable = nowhere.expect(3, &["job", "list"]);
    assert!(
        unreachable.stderr.contains("cannot reach"),
        "{unreachable:#?}"
    );

    let read_token = token(&["read"], None);
    let reader = Cli::new(&url, &read_token, &empty);
    reader.expect(0, &["job", "list", "--json"]).json();
    let refused = reader.expect(1, &["job", "add", "test.ping.do"]);
    let body = r#"{"operation": {"type": "test.ping.do", "data": {}}}"#;
    let direct = request_as(Some(&read_token), &url, "POST", "/job", Some(body))
        .unwrap_or_else(|err| panic!("{err}"));
    direct.assert_error(403);
    let message = direct.body["error"].as_str().unwrap_or_default();
    assert!(refused.stderr.contains("403"), "{refused:#?}");
    assert!(
        refused.stderr.contains(message),
        "the server's '{message}': {refused:#?}"
    );

    // A token made by `osapi token generate` with the API's key is accepted by the API.
    let keyed = dir.file("keyed.yaml", &signing_key_yaml(SIGNING_KEY));
    let generated =
        Cli::new(&url, "", &keyed).expect(0, &["token", "generate", "-r", "read", "-u", "ci"]);
    let mine = Cli::new(&url, generated.stdout.trim(), &empty);
    mine.expect(0, &["job", "status", "--json"]).json();
}

#[test]
fn token_generate_and_validate_round_trip() {
    let dir = TempDir::new();
    let config = dir.file(
        "k.yaml",
        &signing_key_yaml("cli-test-signing-key-of-32-bytes-or-more"),
    );
    let other = dir.file(
        "other.yaml",
        &signing_key_yaml("another key, also of 32 bytes or more"),
    );
    let cli = Cli::new("http://127.0.0.1:1", "", &config);

    let args = ["token", "generate", "-r", "write", "-u", "alice"];
    let generated = cli.expect(0, &[&args[..], &["-p", "job:read", "--ttl", "1h"]].concat());
    let token = generated.stdout.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {generated:#?}");

    let claims = cli.expect(0, &["token", "validate", token]).json();
    assert_eq!(claims["sub"], "alice", "{claims:#}");
    assert_eq!(claims["roles"], serde_json::json!(["write"]), "{claims:#}");
    assert_eq!(
        claims["permissions"],
        serde_json::json!(["job:read"]),
        "{claims:#}"
    );
    assert_eq!(claims["iss"], "osapi", "{claims:#}");
    let lifetime = claims["exp"].as_u64().zip(claims["iat"].as_u64());
    assert_eq!(
        lifetime.map(|(exp, iat)| exp - iat),
        Some(3600),
        "{claims:#}"
    );

    let wrong_key = Cli::new("http://127.0.0.1:1", "", &other);
    let rejected = wrong_key.expect(1, &["token", "validate", token]);
    assert!(rejected.stderr.contains("signature"), "{rejected:#?}");
    let unknown_role = cli.expect(2, &["token", "generate", "-r", "boss", "-u", "alice"]);
    assert!(unknown_role.stderr.contains("boss"), "{unknown_role:#?}");
}

/// A config holding only `api.server.security.signing_key`.
fn signing_key_yaml(key: &str) -> String {
    format!(
        "api: {{server: {{security: {{signing_key: '{}'}}}}}}\n",
        key.replace('\'', "''")
    )
}
