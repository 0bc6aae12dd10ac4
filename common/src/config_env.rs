//! `OSAPI_*` env overrides: which env variable names which key, and writing their values into the
//! YAML tree before it is decoded, so env wins over the file and goes through the same checks.

use super::ConfigError;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;

type Result<T> = std::result::Result<T, ConfigError>;

/// Every key env can override, in the order they are applied (`nats.auth` before its fields).
/// `true`: the env text is taken as is (strings, durations, enums); `false`: it is parsed as YAML
/// (numbers, and flow maps/lists such as `{group: web.dev}` or `[1s, 2s]`).
const LEAVES: &[(&str, bool)] = &[
    ("nats.url", true),
    ("nats.namespace", true),
    ("nats.auth", false),
    ("nats.auth.type", true),
    ("nats.auth.username", true),
    ("nats.auth.password", true),
    ("nats.auth.token", true),
    ("nats.connect_timeout", true),
    ("nats.request_timeout", true),
    ("nats.stream.name", true),
    ("nats.stream.max_age", true),
    ("nats.stream.max_msgs", false),
    ("nats.stream.storage", true),
    ("nats.stream.replicas", false),
    ("nats.stream.discard", true),
    ("nats.stream.max_consumers", false),
    ("nats.kv.bucket", true),
    ("nats.kv.response_bucket", true),
    ("nats.kv.workers_bucket", true),
    ("nats.kv.ttl", true),
    ("nats.kv.max_bytes", false),
    ("nats.kv.storage", true),
    ("nats.kv.replicas", false),
    ("nats.dlq.max_age", true),
    ("nats.dlq.max_msgs", false),
    ("nats.dlq.storage", true),
    ("nats.dlq.replicas", false),
    ("api.server.listen", true),
    ("api.server.max_body_bytes", false),
    ("api.server.max_connections", false),
    ("api.server.max_job_data_bytes", false),
    ("api.server.detail_cache_bytes", false),
    ("api.server.security.signing_key", true),
    ("api.server.security.roles", false),
    ("api.server.security.audience", true),
    ("api.client.url", true),
    ("api.client.bearer_token", true),
    ("api.metrics.listen", true),
    ("job.worker.max_jobs", false),
    ("job.worker.hostname", true),
    ("job.worker.labels", false),
    ("job.worker.heartbeat", true),
    ("job.worker.allow_operations", false),
    ("job.worker.shutdown_grace", true),
    ("job.worker.host_root", true),
    ("job.worker.consumer.name", true),
    ("job.worker.consumer.max_deliver", false),
    ("job.worker.consumer.ack_wait", true),
    ("job.worker.consumer.back_off", false),
    ("job.worker.consumer.max_ack_pending", false),
    ("job.worker.consumer.replicas", false),
    ("job.worker.metrics.listen", true),
    ("job.worker.conditions.memory_pressure_percent", false),
    ("job.worker.conditions.high_load_per_cpu", false),
    ("job.worker.conditions.disk_pressure_percent", false),
    ("audit.max_age", true),
    ("audit.max_bytes", false),
];

/// The env variable overriding a dotted key: `job.worker.max_jobs` -> `OSAPI_JOB_WORKER_MAX_JOBS`.
pub fn env_name(path: &str) -> String {
    format!("OSAPI_{}", path.to_ascii_uppercase().replace('.', "_"))
}

/// Writes env overrides into the YAML tree; returns dotted key -> env variable for error messages.
pub(super) fn apply_env(
    root: &mut Value,
    env: &[(String, String)],
) -> Result<BTreeMap<String, String>> {
    let mut sources = BTreeMap::new();
    for &(path, raw) in LEAVES {
        let name = env_name(path);
        let Some((_, text)) = env.iter().rev().find(|(n, _)| *n == name) else {
            continue;
        };
        let value = if raw {
            Value::String(text.clone())
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                ConfigError(format!(
                    "env {name} ({path}): invalid YAML value '{text}': {e}"
                ))
            })?
        };
        insert(root, path, value);
        sources.insert(path.to_string(), name);
    }
    Ok(sources)
}

/// Sets `path` in the tree, creating absent or null parent maps. A parent of another type is left
/// alone: decoding then reports it as the wrong type.
fn insert(root: &mut Value, path: &str, value: Value) {
    let mut node = root;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { return };
        let key = Value::String(segment.to_string());
        if segments.peek().is_none() {
            map.insert(key, value);
            return;
        }
        node = map.entry(key).or_insert(Value::Null);
    }
}
