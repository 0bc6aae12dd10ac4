//! The one YAML config of every osapi piece: typed structs with the contract's defaults, the loader
//! (file, then `OSAPI_*` env overrides, then validation) and the `--config` command-line parsing.
//!
//! Decoding walks the YAML tree by hand (not serde derive) so every error names the full dotted key.
//! The steps live beside this file: `config_env.rs` (env -> tree), `config_decode.rs` (tree -> structs,
//! with `config_sections.rs`: which key fills which field), `config_validate.rs` (limits and names); the
//! defaults are in `config_defaults.rs`, the command line in `config_cli.rs`. The only IO is
//! [`Config::load`] reading the file and env.

pub use cli::{parse_cli_args, CliArgs};
pub use env::env_name;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "config_cli.rs"]
mod cli;
#[path = "config_decode.rs"]
mod decode;
#[path = "config_defaults.rs"]
mod defaults;
#[path = "config_env.rs"]
mod env;
#[cfg(test)]
#[path = "config_env_tests.rs"]
mod env_tests;
#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
#[path = "config_validate.rs"]
mod validate;

/// Where the config is read from when neither `--config` nor `$OSAPI_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/osapi/osapi.yaml";
/// The env variable naming the config file.
pub const CONFIG_ENV: &str = "OSAPI_CONFIG";

/// The whole config: NATS, HTTP API (server and client) and worker settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub nats: NatsConfig,
    pub api: ApiConfig,
    pub job: JobConfig,
    pub audit: AuditConfig,
}

/// `audit.max_bytes` unless the config says otherwise: 256 MiB, some 300,000 entries.
pub const AUDIT_MAX_BYTES_DEFAULT: i64 = 256 * 1024 * 1024;
/// The smallest `audit.max_bytes` accepted: room for a few entries of the largest size.
pub const AUDIT_MAX_BYTES_MIN: i64 = 16 * 1024;

/// `audit.*`: the audit stream (`AUDIT`) of requests that change something, and of 401s and 403s.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    /// How long entries are kept.
    pub max_age: Duration,
    /// Most bytes the stream holds; past it the oldest entries go (discard old), so a flood of
    /// audited requests cannot fill the disk: the trail keeps the newest.
    pub max_bytes: i64,
}

/// `nats.*`: connection, auth and the JetStream resources.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsConfig {
    /// One server or several, comma-separated (a cluster).
    pub url: String,
    /// Prefix for subjects, stream and bucket names; empty means none.
    pub namespace: String,
    pub auth: NatsAuth,
    pub tls: TlsConfig,
    pub connect_timeout: Duration,
    /// Bound on every NATS call.
    pub request_timeout: Duration,
    pub stream: StreamConfig,
    pub kv: KvConfig,
    pub dlq: DlqConfig,
}

/// `nats.auth`: how to authenticate to NATS (`type: none | user_pass | token | nkey | creds`).
#[derive(Debug, Clone, PartialEq)]
pub enum NatsAuth {
    None,
    UserPass {
        username: String,
        password: String,
    },
    Token {
        token: String,
    },
    /// An NKey user: the file holds the seed (`SU...`), which never leaves the host.
    Nkey {
        nkey_seed_file: PathBuf,
    },
    /// NATS decentralized auth: a `.creds` file (user JWT and seed).
    Creds {
        creds_file: PathBuf,
    },
}

/// `nats.tls`: all empty = no client TLS settings (a `tls://` URL still uses the system roots).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsConfig {
    /// PEM CA certificate(s) the server's certificate must chain to.
    pub ca_file: String,
    /// PEM client certificate and its key, for servers that verify clients.
    pub cert_file: String,
    pub key_file: String,
}

/// JetStream storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    File,
    Memory,
}

impl Storage {
    /// The config spelling: `file` or `memory`.
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::File => "file",
            Storage::Memory => "memory",
        }
    }
}

/// What a full stream drops: the oldest messages or the new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    Old,
    New,
}

impl Discard {
    /// The config spelling: `old` or `new`.
    pub fn as_str(self) -> &'static str {
        match self {
            Discard::Old => "old",
            Discard::New => "new",
        }
    }
}

/// `nats.stream`: the stream holding job notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    pub name: String,
    pub max_age: Duration,
    /// -1 means unlimited.
    pub max_msgs: i64,
    pub storage: Storage,
    pub replicas: usize,
    pub discard: Discard,
    /// Most consumers the stream may hold, set explicitly: since nats-server 2.15 a stream without a
    /// limit (-1 or 0) gets the server's default of 1,000, about 330 hosts with one consumer per subject.
    pub max_consumers: usize,
}

/// `nats.kv`: the buckets holding jobs and their responses.
#[derive(Debug, Clone, PartialEq)]
pub struct KvConfig {
    pub bucket: String,
    pub response_bucket: String,
    /// Worker heartbeats, in a bucket of their own so a full job bucket cannot hide the fleet.
    pub workers_bucket: String,
    /// Zero means entries never expire.
    pub ttl: Duration,
    /// -1 means unlimited.
    pub max_bytes: i64,
    pub storage: Storage,
    pub replicas: usize,
}

/// `nats.dlq`: the dead-letter stream (`JOBS-DLQ`).
#[derive(Debug, Clone, PartialEq)]
pub struct DlqConfig {
    pub max_age: Duration,
    /// -1 means unlimited.
    pub max_msgs: i64,
    pub storage: Storage,
    pub replicas: usize,
}

/// `api.*`: the HTTP server and the settings of clients talking to it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    pub server: ServerConfig,
    pub client: ClientConfig,
    /// `api.metrics`: Prometheus `/metrics` (default `127.0.0.1:9090`).
    pub metrics: MetricsConfig,
}

/// `api.metrics`, `job.worker.metrics`: where `GET /metrics` is served, without a token.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// `HOST:PORT`; `''` turns the endpoint off.
    pub listen: String,
}

/// `api.server`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `HOST:PORT` to bind.
    pub listen: String,
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
    /// Open HTTP connections at most; past it the one waiting longest for a request is closed, or the
    /// newcomer gets 503 when all are busy.
    pub max_connections: usize,
    /// Larger `operation.data` (as JSON) gets 413: what one job may make the job bucket hold.
    pub max_job_data_bytes: usize,
    /// Bytes of recent jobs' KV records the API keeps to answer `GET /job/{id}` without a KV read
    /// (0 = off: every detail is read from KV).
    pub detail_cache_bytes: usize,
    pub security: SecurityConfig,
}

/// `api.server.security`.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityConfig {
    /// HS256 key; empty here, but required by osapi-api and `osapi token`.
    pub signing_key: String,
    /// Ed25519 private key (PEM PKCS#8) the API signs every job with; required by osapi-api.
    pub job_signing_key_file: String,
    /// Custom roles beside read/write/admin.
    pub roles: BTreeMap<String, RoleConfig>,
    /// When set, tokens must carry this `aud`; '' = `aud` accepted but not checked.
    pub audience: String,
}

/// One custom role: `{ permissions: [job:read, ...] }`.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleConfig {
    pub permissions: Vec<String>,
}

/// `api.client`: where the CLI sends requests.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub url: String,
    pub bearer_token: String,
}

/// `job.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    pub worker: WorkerConfig,
}

/// `job.worker`: one worker daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Size of the fixed thread pool.
    pub max_jobs: usize,
    /// Empty means the OS hostname.
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub heartbeat: Duration,
    /// Modify operations that are off by default, e.g. `system.reboot.execute`.
    pub allow_operations: Vec<String>,
    pub shutdown_grace: Duration,
    /// Where /proc, /etc, /sys are read and written.
    pub host_root: PathBuf,
    pub consumer: ConsumerConfig,
    /// `job.worker.metrics`: Prometheus `/metrics` (default `127.0.0.1:9091`).
    pub metrics: MetricsConfig,
    /// `job.worker.conditions`: thresholds of the node conditions in the heartbeat.
    pub conditions: crate::conditions::Thresholds,
    /// PEM public keys whose job signatures this worker accepts (two = rotation without downtime).
    pub trusted_job_keys: Vec<String>,
    /// Run unsigned jobs (development only; warned at start and on every job).
    pub allow_unsigned_jobs: bool,
}

/// `job.worker.consumer`: the JetStream consumer settings (redelivery and back-off).
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerConfig {
    pub name: String,
    pub max_deliver: i64,
    pub ack_wait: Duration,
    pub back_off: Vec<Duration>,
    pub max_ack_pending: i64,
    /// Copies each of this worker's own consumers keeps in a NATS cluster; 0: as many as the stream
    /// (`nats.stream.replicas`). The shared `_any` consumer always has the stream's. On a cluster with
    /// `replicas: 3` each consumer is its own replicated group whose upkeep the servers pay every second,
    /// so a fleet's idle cost grows with its hosts; 1 keeps a host's consumer on one node (a third of
    /// the upkeep), at a price: while that node is down the host gets no jobs but `_any` ones (they
    /// wait in the stream, none is lost). Read when a consumer is created.
    pub replicas: usize,
}

/// A config that cannot be used; the message names the key (and the env variable or file it came from).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Resolves the path: `explicit` (from `--config`/`-c`), else `$OSAPI_CONFIG`, else
    /// [`DEFAULT_CONFIG_PATH`]; reads it, applies `OSAPI_*` env overrides, validates.
    /// A missing file at the default path means defaults + env; a missing file that was named
    /// explicitly (flag or `$OSAPI_CONFIG`) is an error naming it.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let env = osapi_env()?;
        let from_env = env
            .iter()
            .find(|(name, value)| name == CONFIG_ENV && !value.is_empty())
            .map(|(_, value)| PathBuf::from(value));
        let (path, named) = match (explicit, from_env) {
            (Some(path), _) => (path.to_path_buf(), true),
            (None, Some(path)) => (path, true),
            (None, None) => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let yaml = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => String::new(),
            Err(e) => {
                return Err(ConfigError(format!(
                    "cannot read config file {}: {e}",
                    path.display()
                )))
            }
        };
        Config::from_yaml_with_env(&yaml, &env)
            .map_err(|e| ConfigError(format!("config {}: {}", path.display(), e.0)))
    }

    /// Pure core: YAML text (may be empty) plus env pairs -> a validated config.
    /// Env pairs that are not `OSAPI_*` leaf keys are ignored.
    pub fn from_yaml_with_env(yaml: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut root: Value = if yaml.trim().is_empty() {
            Value::Null
        } else {
            serde_yaml::from_str(yaml).map_err(|e| ConfigError(format!("invalid YAML: {e}")))?
        };
        if root.is_null() {
            root = Value::Mapping(Mapping::new());
        }
        let env_sources = env::apply_env(&mut root, env)?;
        let decoder = decode::Decoder { env_sources };
        let config = decoder.config(&root)?;
        decoder.validate(&config)?;
        Ok(config)
    }
}

/// The `OSAPI_*` variables of this process; a non-UTF-8 value is an error naming the variable.
fn osapi_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with("OSAPI_")) else {
            continue;
        };
        let value = value
            .into_string()
            .map_err(|_| ConfigError(format!("env {name}: value is not valid UTF-8")))?;
        out.push((name.to_string(), value));
    }
    Ok(out)
}
