//! Turns the config's YAML tree (already carrying the env overrides) into the typed [`Config`]:
//! merging over the defaults, with unknown-key and type checks. Every error names the dotted key
//! (and the env variable it came from).

use super::{
    Config, ConfigError, Discard, NatsAuth, NatsConfig, RoleConfig, Storage, WorkerConfig,
};
use crate::duration::parse_duration;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

type Result<T> = std::result::Result<T, ConfigError>;
/// An entry of a free-form map (labels, roles): its key, its dotted path, its value.
type Entry<'v> = (String, String, &'v Value);

/// A map in the tree at a dotted path; `map` is `None` when the key is absent or null (defaults apply).
struct Section<'v> {
    map: Option<&'v Mapping>,
    path: String,
}

impl<'v> Section<'v> {
    fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The value under `key`; a null value counts as absent.
    fn get(&self, key: &str) -> Option<&'v Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A value as an error message shows it: strings quoted, collections by kind.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a map".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// Decodes (here) and validates (config_validate.rs), knowing which keys came from env so errors can say so.
pub(super) struct Decoder {
    pub(super) env_sources: BTreeMap<String, String>,
}

/// Keys that once existed, with what replaces them, so an old config fails with a way forward.
const REMOVED_KEYS: &[(&str, &str)] = &[(
    "job.worker.queue_group",
    "removed; every worker shares the durable pull consumer '{job.worker.consumer.name}-any' for _any \
     jobs (each job to one worker): set job.worker.consumer.name instead",
)];

impl Decoder {
    /// " (from env VAR)" when `path` or one of its parents was set by env.
    fn source_note(&self, path: &str) -> String {
        self.env_sources
            .iter()
            .filter(|(p, _)| {
                path == p.as_str()
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.starts_with(['.', '[']))
            })
            .max_by_key(|(p, _)| p.len())
            .map(|(_, name)| format!(" (from env {name})"))
            .unwrap_or_default()
    }

    pub(super) fn err(&self, path: &str, msg: impl Display) -> ConfigError {
        let shown = if path.is_empty() { "config" } else { path };
        ConfigError(format!("{shown}: {msg}{}", self.source_note(path)))
    }

    fn section<'v>(
        &self,
        value: Option<&'v Value>,
        path: String,
        keys: &[&str],
    ) -> Result<Section<'v>> {
        let map = match value {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(m)) => Some(m),
            Some(other) => {
                return Err(self.err(&path, format!("expected a map, got {}", describe(other))))
            }
        };
        for key in map.into_iter().flat_map(Mapping::keys) {
            let Some(key) = key.as_str() else {
                return Err(self.err(
                    &path,
                    format!("keys must be strings, got {}", describe(key)),
                ));
            };
            if !keys.contains(&key) {
                let full = join(&path, key);
                let hint = REMOVED_KEYS
                    .iter()
                    .find(|(gone, _)| *gone == full)
                    .map(|(_, instead)| format!(": {instead}"))
                    .unwrap_or_default();
                return Err(ConfigError(format!(
                    "unknown config key '{full}'{hint}{}",
                    self.source_note(&full)
                )));
            }
        }
        Ok(Section { map, path })
    }

    fn child<'v>(&self, parent: &Section<'v>, key: &str, keys: &[&str]) -> Result<Section<'v>> {
        self.section(parent.get(key), parent.key(key), keys)
    }

    fn as_string(&self, v: &Value, path: &str) -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(_) | Value::Bool(_) => Err(self.err(
                path,
                format!("expected a string, got {} (quote it)", describe(v)),
            )),
            _ => Err(self.err(path, format!("expected a string, got {}", describe(v)))),
        }
    }

    fn as_duration(&self, v: &Value, path: &str) -> Result<Duration> {
        let Value::String(text) = v else {
            return Err(self.err(
                path,
                format!("expected a duration like '30s', got {}", describe(v)),
            ));
        };
        parse_duration(text).map_err(|e| self.err(path, format!("bad duration '{text}': {e}")))
    }

    fn string(&self, s: &Section, key: &str, out: &mut String) -> Result<()> {
        if let Some(v) = s.get(key) {
            *out = self.as_string(v, &s.key(key))?;
        }
        Ok(())
    }

    fn count(&self, s: &Section, key: &str, out: &mut usize) -> Result<()> {
        if let Some(v) = s.get(key) {
            *out = v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    self.err(
                        &s.key(key),
                        format!("expected a positive integer, got {}", describe(v)),
                    )
                })?;
        }
        Ok(())
    }

    fn int(&self, s: &Section, key: &str, out: &mut i64) -> Result<()> {
        if let Some(v) = s.get(key) {
            *out = v.as_i64().ok_or_else(|| {
                self.err(
                    &s.key(key),
                    format!("expected an integer, got {}", describe(v)),
                )
            })?;
        }
        Ok(())
    }

    fn duration(&self, s: &Section, key: &str, out: &mut Duration) -> Result<()> {
        if let Some(v) = s.get(key) {
            *out = self.as_duration(v, &s.key(key))?;
        }
        Ok(())
    }

    fn storage(&self, s: &Section, key: &str, out: &mut Storage) -> Result<()> {
        let mut text = out.as_str().to_string();
        self.string(s, key, &mut text)?;
        *out = match text.as_str() {
            "file" => Storage::File,
            "memory" => Storage::Memory,
            other => {
                return Err(self.err(
                    &s.key(key),
                    format!("expected file or memory, got '{other}'"),
                ))
            }
        };
        Ok(())
    }

    fn discard(&self, s: &Section, key: &str, out: &mut Discard) -> Result<()> {
        let mut text = out.as_str().to_string();
        self.string(s, key, &mut text)?;
        *out = match text.as_str() {
            "old" => Discard::Old,
            "new" => Discard::New,
            other => {
                return Err(self.err(&s.key(key), format!("expected old or new, got '{other}'")))
            }
        };
        Ok(())
    }

    /// The items of a list key with each item's path (`key[2]`), or `None` when absent.
    fn list<'v>(&self, s: &Section<'v>, key: &str) -> Result<Option<Vec<(String, &'v Value)>>> {
        let Some(v) = s.get(key) else { return Ok(None) };
        let path = s.key(key);
        let Value::Sequence(items) = v else {
            return Err(self.err(&path, format!("expected a list, got {}", describe(v))));
        };
        Ok(Some(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| (format!("{path}[{i}]"), item))
                .collect(),
        ))
    }

    fn string_list(&self, s: &Section, key: &str, out: &mut Vec<String>) -> Result<()> {
        if let Some(items) = self.list(s, key)? {
            *out = items
                .iter()
                .map(|(path, v)| self.as_string(v, path))
                .collect::<Result<_>>()?;
        }
        Ok(())
    }

    fn duration_list(&self, s: &Section, key: &str, out: &mut Vec<Duration>) -> Result<()> {
        if let Some(items) = self.list(s, key)? {
            *out = items
                .iter()
                .map(|(path, v)| self.as_duration(v, path))
                .collect::<Result<_>>()?;
        }
        Ok(())
    }

    /// A map with free-form keys (labels, roles): each entry with its key and path.
    fn entries<'v>(&self, s: &Section<'v>, key: &str) -> Result<Option<Vec<Entry<'v>>>> {
        let Some(v) = s.get(key) else { return Ok(None) };
        let path = s.key(key);
        let Value::Mapping(map) = v else {
            return Err(self.err(&path, format!("expected a map, got {}", describe(v))));
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, item) in map {
            let Some(k) = k.as_str() else {
                return Err(self.err(&path, format!("keys must be strings, got {}", describe(k))));
            };
            out.push((k.to_string(), join(&path, k), item));
        }
        Ok(Some(out))
    }

    fn flag(&self, s: &Section, key: &str, out: &mut bool) -> Result<()> {
        if let Some(v) = s.get(key) {
            *out = v.as_bool().ok_or_else(|| {
                self.err(
                    &s.key(key),
                    format!("expected true or false, got {}", describe(v)),
                )
            })?;
        }
        Ok(())
    }

    fn auth(&self, s: &Section, out: &mut NatsAuth) -> Result<()> {
        let fields = [
            "username",
            "password",
            "token",
            "nkey_seed_file",
            "creds_file",
        ];
        let mut keys = vec!["type"];
        keys.extend(fields);
        let a = self.child(s, "auth", &keys)?;
        if a.map.is_none() {
            return Ok(());
        }
        let mut kind = "none".to_string();
        self.string(&a, "type", &mut kind)?;
        let needed: &[&str] = match kind.as_str() {
            "none" => &[],
            "user_pass" => &["username", "password"],
            "token" => &["token"],
            "nkey" => &["nkey_seed_file"],
            "creds" => &["creds_file"],
            other => {
                return Err(self.err(
                    &a.key("type"),
                    format!("expected none, user_pass, token, nkey or creds, got '{other}'"),
                ))
            }
        };
        let mut values = BTreeMap::new();
        for field in fields {
            let mut value = String::new();
            self.string(&a, field, &mut value)?;
            let used = needed.contains(&field);
            if !used && a.get(field).is_some() {
                return Err(self.err(&a.key(field), format!("not used with auth type {kind}")));
            }
            if used && value.is_empty() {
                return Err(self.err(&a.key(field), format!("required with auth type {kind}")));
            }
            values.insert(field, value);
        }
        let mut take = |field| values.remove(field).unwrap_or_default();
        *out = match kind.as_str() {
            "user_pass" => NatsAuth::UserPass {
                username: take("username"),
                password: take("password"),
            },
            "token" => NatsAuth::Token {
                token: take("token"),
            },
            "nkey" => NatsAuth::Nkey {
                nkey_seed_file: take("nkey_seed_file").into(),
            },
            "creds" => NatsAuth::Creds {
                creds_file: take("creds_file").into(),
            },
            _ => NatsAuth::None,
        };
        Ok(())
    }

    /// Decodes the tree over the defaults: what the tree does not set keeps its default.
    pub(super) fn config(&self, root: &Value) -> Result<Config> {
        let mut c = Config::default_config();
        let top = self.section(Some(root), String::new(), &["nats", "api", "job", "audit"])?;
        let audit = self.child(&top, "audit", &["max_age", "max_bytes"])?;
        self.duration(&audit, "max_age", &mut c.audit.max_age)?;
        self.int(&audit, "max_bytes", &mut c.audit.max_bytes)?;
        self.nats(&top, &mut c.nats)?;

        let api = self.child(&top, "api", &["server", "client", "metrics"])?;
        let metrics = self.child(&api, "metrics", &["listen"])?;
        self.string(&metrics, "listen", &mut c.api.metrics.listen)?;
        let server = self.child(
            &api,
            "server",
            &[
                "listen",
                "max_body_bytes",
                "max_connections",
                "max_job_data_bytes",
                "detail_cache_bytes",
                "security",
            ],
        )?;
        let out = &mut c.api.server;
        self.string(&server, "listen", &mut out.listen)?;
        self.count(&server, "max_body_bytes", &mut out.max_body_bytes)?;
        self.count(&server, "max_connections", &mut out.max_connections)?;
        self.count(&server, "max_job_data_bytes", &mut out.max_job_data_bytes)?;
        self.count(&server, "detail_cache_bytes", &mut out.detail_cache_bytes)?;
        let security = self.child(
            &server,
            "security",
            &["signing_key", "job_signing_key_file", "roles", "audience"],
        )?;
        self.string(&security, "signing_key", &mut out.security.signing_key)?;
        self.string(&security, "audience", &mut out.security.audience)?;
        self.string(
            &security,
            "job_signing_key_file",
            &mut out.security.job_signing_key_file,
        )?;
        if let Some(entries) = self.entries(&security, "roles")? {
            out.security.roles.clear();
            for (name, path, value) in entries {
                let role = self.section(Some(value), path, &["permissions"])?;
                let mut permissions = Vec::new();
                self.string_list(&role, "permissions", &mut permissions)?;
                out.security.roles.insert(name, RoleConfig { permissions });
            }
        }
        let client = self.child(&api, "client", &["url", "bearer_token"])?;
        self.string(&client, "url", &mut c.api.client.url)?;
        self.string(&client, "bearer_token", &mut c.api.client.bearer_token)?;

        let job = self.child(&top, "job", &["worker"])?;
        self.worker(&job, &mut c.job.worker)?;
        Ok(c)
    }

    fn nats(&self, top: &Section, n: &mut NatsConfig) -> Result<()> {
        let keys = [
            "url",
            "namespace",
            "auth",
            "tls",
            "connect_timeout",
            "request_timeout",
            "stream",
            "kv",
            "dlq",
        ];
        let s = self.child(top, "nats", &keys)?;
        self.string(&s, "url", &mut n.url)?;
        self.string(&s, "namespace", &mut n.namespace)?;
        self.auth(&s, &mut n.auth)?;
        let tls = self.child(&s, "tls", &["ca_file", "cert_file", "key_file"])?;
        self.string(&tls, "ca_file", &mut n.tls.ca_file)?;
        self.string(&tls, "cert_file", &mut n.tls.cert_file)?;
        self.string(&tls, "key_file", &mut n.tls.key_file)?;
        self.duration(&s, "connect_timeout", &mut n.connect_timeout)?;
        self.duration(&s, "request_timeout", &mut n.request_timeout)?;

        let st = self.child(
            &s,
            "stream",
            &[
                "name",
                "max_age",
                "max_msgs",
                "storage",
                "replicas",
                "discard",
                "max_consumers",
            ],
        )?;
        self.string(&st, "name", &mut n.stream.name)?;
        self.duration(&st, "max_age", &mut n.stream.max_age)?;
        self.int(&st, "max_msgs", &mut n.stream.max_msgs)?;
        self.storage(&st, "storage", &mut n.stream.storage)?;
        self.count(&st, "replicas", &mut n.stream.replicas)?;
        self.discard(&st, "discard", &mut n.stream.discard)?;
        self.count(&st, "max_consumers", &mut n.stream.max_consumers)?;

        let kv_keys = [
            "bucket",
            "response_bucket",
            "workers_bucket",
            "ttl",
            "max_bytes",
            "storage",
            "replicas",
        ];
        let kv = self.child(&s, "kv", &kv_keys)?;
        self.string(&kv, "bucket", &mut n.kv.bucket)?;
        self.string(&kv, "response_bucket", &mut n.kv.response_bucket)?;
        self.string(&kv, "workers_bucket", &mut n.kv.workers_bucket)?;
        self.duration(&kv, "ttl", &mut n.kv.ttl)?;
        self.int(&kv, "max_bytes", &mut n.kv.max_bytes)?;
        self.storage(&kv, "storage", &mut n.kv.storage)?;
        self.count(&kv, "replicas", &mut n.kv.replicas)?;

        let dlq = self.child(&s, "dlq", &["max_age", "max_msgs", "storage", "replicas"])?;
        self.duration(&dlq, "max_age", &mut n.dlq.max_age)?;
        self.int(&dlq, "max_msgs", &mut n.dlq.max_msgs)?;
        self.storage(&dlq, "storage", &mut n.dlq.storage)?;
        self.count(&dlq, "replicas", &mut n.dlq.replicas)
    }

    fn worker(&self, job: &Section, w: &mut WorkerConfig) -> Result<()> {
        let keys = [
            "max_jobs",
            "hostname",
            "labels",
            "heartbeat",
            "allow_operations",
            "shutdown_grace",
            "host_root",
            "consumer",
            "metrics",
            "conditions",
            "trusted_job_keys",
            "allow_unsigned_jobs",
        ];
        let s = self.child(job, "worker", &keys)?;
        let c_keys = [
            "memory_pressure_percent",
            "high_load_per_cpu",
            "disk_pressure_percent",
        ];
        let conditions = self.child(&s, "conditions", &c_keys)?;
        let t = &mut w.conditions;
        for (key, out) in c_keys.iter().zip([
            &mut t.memory_pressure_percent,
            &mut t.high_load_per_cpu,
            &mut t.disk_pressure_percent,
        ]) {
            let mut n = *out as usize;
            self.count(&conditions, key, &mut n)?;
            *out = n as u64;
        }
        let metrics = self.child(&s, "metrics", &["listen"])?;
        self.string(&metrics, "listen", &mut w.metrics.listen)?;
        self.count(&s, "max_jobs", &mut w.max_jobs)?;
        self.string(&s, "hostname", &mut w.hostname)?;
        if let Some(entries) = self.entries(&s, "labels")? {
            w.labels.clear();
            for (key, path, value) in entries {
                w.labels.insert(key, self.as_string(value, &path)?);
            }
        }
        self.duration(&s, "heartbeat", &mut w.heartbeat)?;
        self.string_list(&s, "allow_operations", &mut w.allow_operations)?;
        self.duration(&s, "shutdown_grace", &mut w.shutdown_grace)?;
        let mut host_root = w.host_root.to_string_lossy().into_owned();
        self.string(&s, "host_root", &mut host_root)?;
        w.host_root = host_root.into();
        self.string_list(&s, "trusted_job_keys", &mut w.trusted_job_keys)?;
        self.flag(&s, "allow_unsigned_jobs", &mut w.allow_unsigned_jobs)?;

        let c_keys = [
            "name",
            "max_deliver",
            "ack_wait",
            "back_off",
            "max_ack_pending",
        ];
        let c = self.child(&s, "consumer", &c_keys)?;
        self.string(&c, "name", &mut w.consumer.name)?;
        self.int(&c, "max_deliver", &mut w.consumer.max_deliver)?;
        self.duration(&c, "ack_wait", &mut w.consumer.ack_wait)?;
        self.duration_list(&c, "back_off", &mut w.consumer.back_off)?;
        self.int(&c, "max_ack_pending", &mut w.consumer.max_ack_pending)
    }
}
