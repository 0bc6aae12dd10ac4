//! The real `osapi-api` and `osapi-worker` as child processes, each with its own temp dir holding its YAML config
//! and its log. Drop kills them; when a test panics, the tail of each log is printed first.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::auth::{CUSTOM_ROLE, JOB_KEY, JOB_KEY_PUB, SIGNING_KEY};
use crate::bins::binary;
use crate::http::request;
use crate::wait::{free_port, keep_failed_dirs, log_tail, temp_dir, wait_until};

/// How long the API may take to answer 200 on /health/ready.
const API_READY_DEADLINE: Duration = Duration::from_secs(15);
/// Attempts with a fresh port when the chosen one was taken meanwhile.
const START_ATTEMPTS_MAX: usize = 3;
const LOG_TAIL_LINES: usize = 60;

/// Config shared by the API and the workers of a test cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// `nats.namespace`
    pub namespace: String,
    /// `job.worker.heartbeat`; short so that liveness shows within a test.
    pub heartbeat: String,
    /// More `job.worker` keys for the workers, as (key, YAML value), e.g. `("host_root", "'/tmp/x'")`.
    pub worker_yaml: Vec<(String, String)>,
    /// The API's job-signing key (PEM); empty = the API gets no `job_signing_key_file`.
    pub job_key: String,
    /// The public keys (PEM) the workers trust; written to files for `job.worker.trusted_job_keys`.
    pub trusted_job_keys: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: String::from("t1"),
            heartbeat: String::from("500ms"),
            worker_yaml: Vec::new(),
            job_key: JOB_KEY.to_string(),
            trusted_job_keys: vec![JOB_KEY_PUB.to_string()],
        }
    }
}

/// A running `osapi-api` listening on a free loopback port.
pub struct Api {
    daemon: Daemon,
    port: u16,
}

impl Api {
    /// Starts the API against `nats_url` and waits until GET /health/ready answers 200.
    pub fn start(nats_url: &str, options: &Options) -> Api {
        Api::start_extra(nats_url, options, &ExtraConfig::default())
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Some(status) once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.daemon.exited()
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// The process id, to read `/proc/PID/status` (threads, memory).
    pub fn pid(&self) -> u32 {
        self.daemon.child.as_ref().map_or(0, Child::id)
    }
}

fn ready(base_url: &str) -> bool {
    request(base_url, "GET", "/health/ready", None).is_ok_and(|resp| resp.status == 200)
}

/// A running `osapi-worker` with a fixed hostname and labels.
pub struct Worker {
    daemon: Daemon,
    hostname: String,
    labels: Vec<(String, String)>,
    max_jobs: usize,
}

impl Worker {
    /// Starts a worker. It does not wait: [`crate::Cluster::start`] waits for the heartbeats to show in the API.
    pub fn start(
        nats_url: &str,
        hostname: &str,
        labels: &[(&str, &str)],
        max_jobs: usize,
        options: &Options,
    ) -> Worker {
        Worker::start_extra(
            nats_url,
            hostname,
            labels,
            max_jobs,
            options,
            &ExtraConfig::default(),
        )
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }

    pub fn max_jobs(&self) -> usize {
        self.max_jobs
    }

    /// Some(status) once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.daemon.exited()
    }

    /// Kills the process with SIGKILL (no graceful shutdown) and reaps it.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// The last lines of the worker's log.
    pub fn log_tail(&self) -> String {
        self.daemon.tail()
    }
}

struct WorkerIdentity<'a> {
    hostname: &'a str,
    labels: &'a [(String, String)],
    max_jobs: usize,
}

/// The YAML config for one daemon; `api_port` only for the API, `worker` only for a worker. Key files
/// go into `dir`, the daemon's own directory.
fn config_yaml(
    nats_url: &str,
    options: &Options,
    api_port: Option<u16>,
    worker: Option<&WorkerIdentity<'_>>,
    dir: &Path,
) -> String {
    let mut yaml = String::new();
    let _ = writeln!(yaml, "nats:");
    let _ = writeln!(yaml, "  url: {}", quote(nats_url));
    let _ = writeln!(yaml, "  namespace: {}", quote(&options.namespace));
    if let Some(port) = api_port {
        let _ = writeln!(yaml, "api:");
        let _ = writeln!(yaml, "  server:");
        let _ = writeln!(yaml, "    listen: {}", quote(&format!("127.0.0.1:{port}")));
        let _ = writeln!(yaml, "    security:");
        let _ = writeln!(yaml, "      signing_key: {}", quote(SIGNING_KEY));
        if !options.job_key.is_empty() {
            let path = write_key(dir, "job.key", &options.job_key);
            let _ = writeln!(yaml, "      job_signing_key_file: {}", quote(&path));
        }
        let _ = writeln!(
            yaml,
            "      roles: {{ {CUSTOM_ROLE}: {{ permissions: [job:read] }} }}"
        );
        // Off by default: tests run in parallel and would fight over one port ([`ExtraConfig`]).
        let _ = writeln!(yaml, "{API_METRICS_OFF}");
    }
    let _ = writeln!(yaml, "job:");
    let _ = writeln!(yaml, "  worker:");
    let _ = writeln!(yaml, "    heartbeat: {}", quote(&options.heartbeat));
    if let Some(worker) = worker {
        let _ = writeln!(yaml, "    hostname: {}", quote(worker.hostname));
        let _ = writeln!(yaml, "    max_jobs: {}", worker.max_jobs);
        let _ = writeln!(yaml, "{WORKER_METRICS_OFF}");
        let trusted: Vec<String> = options
            .trusted_job_keys
            .iter()
            .enumerate()
            .map(|(i, pem)| quote(&write_key(dir, &format!("trusted-{i}.pub"), pem)))
            .collect();
        let _ = writeln!(yaml, "    trusted_job_keys: [{}]", trusted.join(", "));
        for (key, value) in &options.worker_yaml {
            let _ = writeln!(yaml, "    {key}: {value}");
        }
        if worker.labels.is_empty() {
            let _ = writeln!(yaml, "    labels: {{}}");
        } else {
            let _ = writeln!(yaml, "    labels:");
            for (key, value) in worker.labels {
                let _ = writeln!(yaml, "      {key}: {}", quote(value));
            }
        }
    }
    yaml
}

/// Writes a key file into `dir` and returns its path.
fn write_key(dir: &Path, name: &str, pem: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write key file");
    path.display().to_string()
}

/// A single-quoted YAML scalar.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A child process with a temp dir holding `config.yaml` and `daemon.log` (stdout and stderr).
struct Daemon {
    name: String,
    child: Option<Child>,
    dir: PathBuf,
}

impl Daemon {
    fn spawn(name: &str, yaml: &str, dir: PathBuf) -> Daemon {
        let program = name.split(' ').next().expect("a daemon name");
        let binary = binary(program);
        let config = dir.join("config.yaml");
        std::fs::write(&config, yaml).expect("write config file");
        let log = File::create(dir.join("daemon.log")).expect("create log file");
        let mut command = Command::new(&binary);
        command
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log);
        // Env wins over the config file: keep the developer's OSAPI_* settings away from the daemons.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OSAPI_") {
                command.env_remove(key);
            }
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", binary.display()));
        Daemon {
            name: name.to_string(),
            child: Some(child),
            dir,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    fn tail(&self) -> String {
        log_tail(&self.log_path(), LOG_TAIL_LINES)
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- {} log (tail, {}) ----\n{}",
                self.name,
                self.log_path().display(),
                self.tail()
            );
            if keep_failed_dirs() {
                return; // OSAPI_TEST_KEEP: keep it for a post-mortem
            }
        }
        let _ = std::fs::remove_dir_all(self.dir());
    }
}

/// More config for one daemon, beyond [`Options`]: keys under `nats:` (e.g. `("stream", "{ replicas: 3 }")`),
/// under `api.server:` (e.g. `("max_body_bytes", "4096")`), under `api.server.security:` (e.g.
/// `("audience", "'fleet'")`) and under `job.worker:` (for the API too, which reads the workers'
/// `consumer` settings), as (key, YAML value).
#[derive(Debug, Clone, Default)]
pub struct ExtraConfig {
    pub nats_yaml: Vec<(String, String)>,
    pub api_server_yaml: Vec<(String, String)>,
    pub api_security_yaml: Vec<(String, String)>,
    pub job_worker_yaml: Vec<(String, String)>,
    /// Keys under `audit:` (e.g. `("max_bytes", "65536")`).
    pub audit_yaml: Vec<(String, String)>,
    /// `api.metrics.listen` (off when empty).
    pub api_metrics_listen: String,
    /// `job.worker.metrics.listen` of every worker started with it (off when empty).
    pub worker_metrics_listen: String,
}

const API_METRICS_OFF: &str = "  metrics: { listen: '' }";
const WORKER_METRICS_OFF: &str = "    metrics: { listen: '' }";

impl ExtraConfig {
    /// `yaml` (as [`config_yaml`] writes it) with the extra keys inserted under `nats:` and `api.server:`.
    fn apply(&self, yaml: &str) -> String {
        let mut out = String::with_capacity(yaml.len() + 256);
        for line in yaml.lines() {
            if line == API_METRICS_OFF && !self.api_metrics_listen.is_empty() {
                let _ = writeln!(
                    out,
                    "  metrics: {{ listen: {} }}",
                    quote(&self.api_metrics_listen)
                );
                continue;
            }
            if line == WORKER_METRICS_OFF && !self.worker_metrics_listen.is_empty() {
                let _ = writeln!(
                    out,
                    "    metrics: {{ listen: {} }}",
                    quote(&self.worker_metrics_listen)
                );
                continue;
            }
            out.push_str(line);
            out.push('\n');
            if line == "nats:" {
                for (key, value) in &self.nats_yaml {
                    let _ = writeln!(out, "  {key}: {value}");
                }
            }
            if line == "  server:" {
                for (key, value) in &self.api_server_yaml {
                    let _ = writeln!(out, "    {key}: {value}");
                }
            }
            if line == "    security:" {
                for (key, value) in &self.api_security_yaml {
                    let _ = writeln!(out, "      {key}: {value}");
                }
            }
            if line == "  worker:" {
                for (key, value) in &self.job_worker_yaml {
                    let _ = writeln!(out, "    {key}: {value}");
                }
            }
        }
        if !self.audit_yaml.is_empty() {
            out.push_str("audit:\n");
            for (key, value) in &self.audit_yaml {
                let _ = writeln!(out, "  {key}: {value}");
            }
        }
        out
    }
}

/// How long a daemon may take to exit after SIGTERM in [`Api::terminate`] and [`Worker::terminate`].
const TERMINATE_DEADLINE: Duration = Duration::from_secs(30);

impl Api {
    /// [`Api::start`] with extra config keys (see [`ExtraConfig`]).
    pub fn start_extra(nats_url: &str, options: &Options, extra: &ExtraConfig) -> Api {
        for attempt in 1..=START_ATTEMPTS_MAX {
            let port = free_port();
            let dir = temp_dir();
            let yaml = extra.apply(&config_yaml(nats_url, options, Some(port), None, &dir));
            let mut daemon = Daemon::spawn("osapi-api", &yaml, dir);
            let base_url = format!("http://127.0.0.1:{port}");
            let mut exited = None;
            wait_until(
                &format!("osapi-api at {base_url} to answer 200 on /health/ready"),
                API_READY_DEADLINE,
                || {
                    exited = daemon.exited();
                    exited.is_some() || ready(&base_url)
                },
            );
            let Some(status) = exited else {
                return Api { daemon, port };
            };
            let port_taken = daemon.tail().contains("in use");
            assert!(
                port_taken && attempt < START_ATTEMPTS_MAX,
                "osapi-api exited during start-up ({status}); its log follows"
            );
        }
        unreachable!("the last attempt either returns or panics");
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends SIGTERM (graceful stop) without waiting.
    pub fn signal_term(&mut self) {
        self.daemon.signal(libc::SIGTERM);
    }

    /// Waits (30 s) until the process has exited after a signal; panics if it does not.
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.daemon.wait_exit(TERMINATE_DEADLINE)
    }

    /// SIGTERM, then waits (30 s) for the exit and returns its status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal_term();
        self.wait_exit()
    }

    /// The last lines of the API's log.
    pub fn log_tail(&self) -> String {
        self.daemon.tail()
    }
}

impl Worker {
    /// [`Worker::start`] with extra config keys (see [`ExtraConfig`]; `api_server_yaml` is ignored).
    pub fn start_extra(
        nats_url: &str,
        hostname: &str,
        labels: &[(&str, &str)],
        max_jobs: usize,
        options: &Options,
        extra: &ExtraConfig,
    ) -> Worker {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let identity = WorkerIdentity {
            hostname,
            labels: &labels,
            max_jobs,
        };
        let dir = temp_dir();
        let yaml = extra.apply(&config_yaml(nats_url, options, None, Some(&identity), &dir));
        Worker {
            daemon: Daemon::spawn(&format!("osapi-worker {hostname}"), &yaml, dir),
            hostname: hostname.to_string(),
            labels,
            max_jobs,
        }
    }

    /// A new process with this worker's hostname, labels and pool size (after [`Worker::kill`] or an exit).
    pub fn restart(&mut self, nats_url: &str, options: &Options) {
        self.kill();
        let labels: Vec<(&str, &str)> = self
            .labels
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let fresh = Worker::start(nats_url, &self.hostname, &labels, self.max_jobs, options);
        *self = fresh;
    }

    /// Sends SIGTERM (graceful stop) without waiting.
    pub fn signal_term(&mut self) {
        self.daemon.signal(libc::SIGTERM);
    }

    /// Waits (30 s) until the process has exited after a signal; panics if it does not.
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.daemon.wait_exit(TERMINATE_DEADLINE)
    }

    /// SIGTERM, then waits (30 s) for the exit and returns its status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal_term();
        self.wait_exit()
    }
}

impl Daemon {
    fn signal(&mut self, signal: libc::c_int) {
        if let Some(child) = self.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                // SAFETY: kill(2) on the pid of a child we own and have not reaped yet.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, signal);
                }
            }
        }
    }

    fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let mut status = None;
        let name = self.name.clone();
        wait_until(&format!("{name} to exit"), deadline, || {
            status = self.exited();
            status.is_some()
        });
        status.expect("wait_until returned, so the process has exited")
    }
}
