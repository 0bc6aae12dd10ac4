//! The real `osapi-api` and `osapi-worker` as child processes, each with its own temp dir holding its YAML config
//! and its log. Drop kills them; when a test panics, the tail of each log is printed first.

use std::process::{Child, ExitStatus};
use std::time::Duration;

use crate::http::request;
use crate::wait::{free_port, temp_dir, wait_until};

mod config;
mod process;

use config::{config_yaml, WorkerIdentity};
pub use config::{ExtraConfig, Options};
use process::Daemon;

/// How long the API may take to answer 200 on /health/ready.
const API_READY_DEADLINE: Duration = Duration::from_secs(15);
/// Attempts with a fresh port when the chosen one was taken meanwhile.
const START_ATTEMPTS_MAX: usize = 3;

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

    /// The process id, to read `/proc/PID` (threads).
    pub fn pid(&self) -> u32 {
        self.daemon.child.as_ref().map_or(0, Child::id)
    }

    /// The last lines of the worker's log.
    pub fn log_tail(&self) -> String {
        self.daemon.tail()
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
