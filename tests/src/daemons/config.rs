//! The YAML config a test daemon starts with: what the API and the workers of a test cluster share
//! ([`Options`]), what one daemon adds ([`ExtraConfig`]), and the key files they name.

use std::fmt::Write as _;
use std::path::Path;

use crate::auth::{CUSTOM_ROLE, JOB_KEY, JOB_KEY_PUB, SIGNING_KEY};

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

pub(super) struct WorkerIdentity<'a> {
    pub(super) hostname: &'a str,
    pub(super) labels: &'a [(String, String)],
    pub(super) max_jobs: usize,
}

/// The YAML config for one daemon; `api_port` only for the API, `worker` only for a worker. Key files
/// go into `dir`, the daemon's own directory.
pub(super) fn config_yaml(
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
    pub(super) fn apply(&self, yaml: &str) -> String {
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
