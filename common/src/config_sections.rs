//! The config's layout, section by section: which keys each section accepts and which field of
//! [`Config`] each one fills, read with the typed readers of config_decode.rs.

use super::{Decoder, Result, Section};
use crate::config::{Config, NatsAuth, NatsConfig, RoleConfig, WorkerConfig};
use serde_yaml::Value;
use std::collections::BTreeMap;

impl Decoder {
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
    pub(in crate::config) fn config(&self, root: &Value) -> Result<Config> {
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
            "replicas",
        ];
        let c = self.child(&s, "consumer", &c_keys)?;
        self.string(&c, "name", &mut w.consumer.name)?;
        self.int(&c, "max_deliver", &mut w.consumer.max_deliver)?;
        self.duration(&c, "ack_wait", &mut w.consumer.ack_wait)?;
        self.duration_list(&c, "back_off", &mut w.consumer.back_off)?;
        self.int(&c, "max_ack_pending", &mut w.consumer.max_ack_pending)?;
        self.count(&c, "replicas", &mut w.consumer.replicas)
    }
}
