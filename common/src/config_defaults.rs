//! Every default of the contract in one place: what a config key holds when neither the file nor
//! the env sets it.

use super::{
    ApiConfig, AuditConfig, ClientConfig, Config, ConsumerConfig, Discard, DlqConfig, JobConfig,
    KvConfig, MetricsConfig, NatsAuth, NatsConfig, SecurityConfig, ServerConfig, Storage,
    StreamConfig, TlsConfig, WorkerConfig, AUDIT_MAX_BYTES_DEFAULT,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

impl Default for Config {
    fn default() -> Self {
        Config::default_config()
    }
}

impl Config {
    /// Every default of the contract.
    pub fn default_config() -> Config {
        let secs = Duration::from_secs;
        Config {
            nats: NatsConfig {
                url: "nats://127.0.0.1:4222".into(),
                namespace: String::new(),
                auth: NatsAuth::None,
                tls: TlsConfig::default(),
                connect_timeout: secs(2),
                request_timeout: secs(2),
                stream: StreamConfig {
                    name: "JOBS".into(),
                    max_age: secs(24 * 3600),
                    max_msgs: -1,
                    storage: Storage::File,
                    replicas: 1,
                    discard: Discard::New,
                    max_consumers: 10_000,
                },
                kv: KvConfig {
                    bucket: "job-queue".into(),
                    response_bucket: "job-responses".into(),
                    workers_bucket: "job-workers".into(),
                    ttl: secs(3600),
                    max_bytes: 104_857_600,
                    storage: Storage::File,
                    replicas: 1,
                },
                dlq: DlqConfig {
                    max_age: secs(7 * 86_400),
                    max_msgs: 1000,
                    storage: Storage::File,
                    replicas: 1,
                },
            },
            api: ApiConfig {
                server: ServerConfig {
                    listen: "127.0.0.1:8080".into(),
                    max_body_bytes: 1_048_576,
                    max_connections: 1024,
                    max_job_data_bytes: 65_536,
                    detail_cache_bytes: 262_144,
                    security: SecurityConfig {
                        signing_key: String::new(),
                        job_signing_key_file: String::new(),
                        roles: BTreeMap::new(),
                        audience: String::new(),
                    },
                },
                client: ClientConfig {
                    url: "http://127.0.0.1:8080".into(),
                    bearer_token: String::new(),
                },
                metrics: MetricsConfig {
                    listen: "127.0.0.1:9090".into(),
                },
            },
            job: JobConfig {
                worker: WorkerConfig {
                    max_jobs: 10,
                    hostname: String::new(),
                    labels: BTreeMap::new(),
                    heartbeat: secs(10),
                    allow_operations: Vec::new(),
                    shutdown_grace: secs(30),
                    host_root: PathBuf::from("/"),
                    consumer: ConsumerConfig {
                        name: "jobs-worker".into(),
                        max_deliver: 5,
                        ack_wait: secs(120),
                        back_off: vec![secs(30), secs(120), secs(300), secs(900)],
                        max_ack_pending: 1000,
                        replicas: 0,
                    },
                    metrics: MetricsConfig {
                        listen: "127.0.0.1:9091".into(),
                    },
                    conditions: crate::conditions::Thresholds::default(),
                    trusted_job_keys: Vec::new(),
                    allow_unsigned_jobs: false,
                },
            },
            audit: AuditConfig {
                max_age: secs(30 * 86_400),
                max_bytes: AUDIT_MAX_BYTES_DEFAULT,
            },
        }
    }
}
