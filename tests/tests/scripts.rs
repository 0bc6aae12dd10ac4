//! The curl + jq scripts in `scripts/` (job-create, job-wait, job-list, job-retry) run with bash against a
//! live cluster, as a user would: their output, their exit codes, and the server's messages on errors.
//! They need curl and jq; CI installs both, so a missing one fails these tests rather than skipping them.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use osapi_tests::{admin_token, token, Cluster};

/// Bound on one script run; the scripts bound their own requests and waits, this only stops a hang.
const RUN_DEADLINE: Duration = Duration::from_secs(60);
const SCRIPTS: [&str; 5] = [
    "job-create.sh",
    "job-wait.sh",
    "job-list.sh",
    "job-retry.sh",
    "job-cancel.sh",
];

/// How a script run ended.
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

    /// stdout as a job id.
    fn id(&self) -> String {
        let id = self.stdout.trim();
        uuid::Uuid::parse_str(id).unwrap_or_else(|err| panic!("not a job id ({err}): {self:#?}"));
        id.to_string()
    }
}

/// The scripts, run against one API with one token (`OSAPI_URL`, `OSAPI_TOKEN`).
struct Scripts {
    url: String,
    token: String,
}

impl Scripts {
    fn new(url: &str, token: &str) -> Scripts {
        Scripts {
            url: url.to_string(),
            token: token.to_string(),
        }
    }

    /// Runs `bash scripts/SCRIPT ARGS...`.
    fn run(&self, script: &str, args: &[&str]) -> Run {
        let mut command = Command::new("bash");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OSAPI_") {
                command.env_remove(key);
            }
        }
        command
            .env("OSAPI_URL", &self.url)
            .env("OSAPI_TOKEN", &self.token)
            .arg(scripts_dir().join(script))
            .args(args);
        run(command)
    }

    /// [`Scripts::run`], asserting the exit code.
    fn expect(&self, code: i32, script: &str, args: &[&str]) -> Run {
        let run = self.run(script, args);
        assert_eq!(run.code, code, "{script} {args:?}: {run:#?}");
        run
    }
}

fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
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

/// The scripts need curl and jq: say so plainly when one is missing.
fn assert_tools() {
    for tool in ["curl", "jq"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        assert!(
            found,
            "{tool} is missing: the scripts need it (apt-get install {tool})"
        );
    }
}

fn one_worker() -> Cluster {
    assert_tools();
    Cluster::start(&[("w1", &[], 2)])
}

#[test]
fn create_wait_list_retry() {
    let cluster = one_worker();
    let scripts = Scripts::new(&cluster.api.base_url(), &admin_token());

    let id = scripts.expect(0, "job-create.sh", &["test.ping.do"]).id();
    let job = scripts
        .expect(0, "job-wait.sh", &[&id, "--timeout", "30s"])
        .json();
    assert_eq!(job["id"], id.as_str(), "{job:#}");
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(job["result"]["pong"], true, "{job:#}");

    let data = r#"{"word": "hi"}"#;
    let args = [
        "test.echo.do",
        "--target",
        "w1",
        "--data",
        data,
        "--timeout",
        "20s",
    ];
    let echo = scripts.expect(0, "job-create.sh", &args).id();
    let echoed = scripts.expect(0, "job-wait.sh", &[&echo]).json();
    assert_eq!(echoed["result"]["word"], "hi", "{echoed:#}");
    assert_eq!(echoed["target_hostname"], "w1", "{echoed:#}");

    let listed = scripts.expect(0, "job-list.sh", &[]);
    let want = format!("{id}\tcompleted\ttest.ping.do\t_any");
    assert!(
        listed.stdout.lines().any(|l| l == want),
        "{want:?} in {listed:#?}"
    );
    let newest = scripts.expect(0, "job-list.sh", &["--limit", "1"]);
    assert_eq!(newest.stdout.lines().count(), 1, "{newest:#?}");
    assert!(
        newest.stdout.starts_with(&echo),
        "newest first: {newest:#?}"
    );
    let skipped = scripts.expect(
        0,
        "job-list.sh",
        &["--offset", "1", "--status", "completed"],
    );
    assert!(skipped.stdout.starts_with(&id), "{skipped:#?}");
    let none = scripts.expect(0, "job-list.sh", &["--status", "failed"]);
    assert_eq!(none.stdout, "", "{none:#?}");

    let retried = scripts.expect(0, "job-retry.sh", &[&id]).id();
    assert_ne!(retried, id);
    let again = scripts.expect(0, "job-wait.sh", &[&retried]).json();
    assert_eq!(again["status"], "completed", "{again:#}");
    assert_eq!(again["retry_of"], id.as_str(), "{again:#}");
    let moved = scripts
        .expect(0, "job-retry.sh", &[&id, "--target", "w1"])
        .id();
    assert_eq!(cluster.job(&moved)["target_hostname"], "w1");
}

#[test]
fn job_wait_exit_codes() {
    let cluster = one_worker();
    let scripts = Scripts::new(&cluster.api.base_url(), &admin_token());

    let failing = scripts.expect(0, "job-create.sh", &["test.fail.do"]).id();
    let failed = scripts.expect(1, "job-wait.sh", &[&failing]).json();
    assert_eq!(failed["status"], "failed", "{failed:#}");

    // The job sleeps 5 s; job-wait gives up after its 1 s and prints the job as it stands.
    let data = r#"{"seconds": 5}"#;
    let sleeping = scripts
        .expect(0, "job-create.sh", &["test.sleep.do", "--data", data])
        .id();
    let late = scripts.expect(3, "job-wait.sh", &[&sleeping, "--timeout", "1s"]);
    let status = late.json()["status"].clone();
    assert!(status == "running" || status == "pending", "{late:#?}");
    assert!(late.stderr.contains("still"), "{late:#?}");

    let unknown = "00000000-0000-4000-8000-000000000000";
    let missing = scripts.expect(1, "job-wait.sh", &[unknown]);
    assert!(missing.stderr.contains("HTTP 404"), "{missing:#?}");
    scripts.expect(2, "job-wait.sh", &[&failing, "--timeout", "soon"]);
}

#[test]
fn errors_show_the_servers_message() {
    let cluster = one_worker();
    let url = cluster.api.base_url();
    let scripts = Scripts::new(&url, &admin_token());

    let unknown = scripts.expect(1, "job-create.sh", &["test.nope.do"]);
    assert!(unknown.stderr.contains("HTTP 400"), "{unknown:#?}");
    assert!(unknown.stderr.contains("test.nope.do"), "{unknown:#?}");
    scripts.expect(2, "job-create.sh", &["test.ping.do", "--data", "{not json"]);
    scripts.expect(2, "job-create.sh", &[]);
    scripts.expect(2, "job-list.sh", &["--limit", "many"]);
    scripts.expect(2, "job-retry.sh", &["--bogus"]);

    let reader = Scripts::new(&url, &token(&["read"], None));
    reader.expect(0, "job-list.sh", &[]);
    let refused = reader.expect(1, "job-create.sh", &["test.ping.do"]);
    assert!(refused.stderr.contains("HTTP 403"), "{refused:#?}");
    assert!(refused.stderr.contains("job:write"), "{refused:#?}");
    let anonymous = Scripts::new(&url, "");
    let missing = anonymous.expect(1, "job-list.sh", &[]);
    assert!(missing.stderr.contains("HTTP 401"), "{missing:#?}");

    let nowhere = Scripts::new("http://127.0.0.1:1", &admin_token());
    for (script, args) in [
        ("job-create.sh", &["test.ping.do"][..]),
        ("job-wait.sh", &["00000000-0000-4000-8000-000000000000"][..]),
        ("job-list.sh", &[][..]),
        (
            "job-retry.sh",
            &["00000000-0000-4000-8000-000000000000"][..],
        ),
    ] {
        let unreachable = nowhere.expect(3, script, args);
        assert!(
            unreachable.stderr.contains("cannot reach"),
            "{unreachable:#?}"
        );
    }
}

#[test]
fn every_script_has_help() {
    assert_tools();
    let scripts = Scripts::new("http://127.0.0.1:1", "");
    for script in SCRIPTS {
        let help = scripts.expect(0, script, &["--help"]);
        assert!(help.stdout.starts_with("Usage:"), "{help:#?}");
        assert!(help.stdout.contains("OSAPI_URL"), "{help:#?}");
        let read =
            |name: &str| std::fs::read_to_string(scripts_dir().join(name)).expect("read script");
        let text = read(script);
        assert!(text.contains("set -euo pipefail"), "{script}");
        // The curl call they share lives in the file they source.
        let shared = "lib/job-common.sh";
        let calls = if text.contains(shared) {
            read(shared)
        } else {
            text
        };
        assert!(calls.contains("--max-time"), "{script} bounds its requests");
    }
}

#[test]
fn each_run_has_its_own_idempotency_key_and_a_given_one_replays() {
    let cluster = one_worker();
    let scripts = Scripts::new(&cluster.api.base_url(), &admin_token());
    let keyed = ["test.ping.do", "--idempotency-key", "nightly-1"];
    let first = scripts.expect(0, "job-create.sh", &keyed).id();
    assert_eq!(scripts.expect(0, "job-create.sh", &keyed).id(), first);
    let fresh = scripts.expect(0, "job-create.sh", &["test.ping.do"]).id();
    let fresh_again = scripts.expect(0, "job-create.sh", &["test.ping.do"]).id();
    assert_ne!(
        fresh, fresh_again,
        "runs without --idempotency-key are new jobs"
    );
    assert_ne!(fresh, first);
    let retry = [first.as_str(), "--idempotency-key", "retry-1"];
    let retried = scripts.expect(0, "job-retry.sh", &retry).id();
    assert_eq!(scripts.expect(0, "job-retry.sh", &retry).id(), retried);
    let reused = scripts.expect(
        1,
        "job-create.sh",
        &["test.echo.do", "--idempotency-key", "nightly-1"],
    );
    assert!(reused.stderr.contains("HTTP 422"), "{reused:#?}");
}

#[test]
fn job_cancel_stops_a_job_and_says_why_it_cannot() {
    let cluster = one_worker();
    let scripts = Scripts::new(&cluster.api.base_url(), &admin_token());
    let id = scripts
        .expect(
            0,
            "job-create.sh",
            &[
                "test.sleep.do",
                "--data",
                r#"{"seconds": 60}"#,
                "--target",
                "w1",
            ],
        )
        .id();
    let status = scripts.expect(0, "job-cancel.sh", &[&id]);
    assert!(
        ["cancelled", "running"].contains(&status.stdout.trim()),
        "{status:#?}"
    );
    let waited = scripts.expect(1, "job-wait.sh", &[&id, "--timeout", "20s"]);
    assert_eq!(waited.json()["status"], "cancelled", "{waited:#?}");
    let again = scripts.expect(1, "job-cancel.sh", &[&id]);
    assert!(again.stderr.contains("HTTP 409"), "{again:#?}");
    let listed = scripts.expect(0, "job-list.sh", &["--status", "cancelled"]);
    assert!(listed.stdout.contains(&id), "{listed:#?}");
    scripts.expect(2, "job-cancel.sh", &[]);
}
