//! The rules a decoded [`Config`] must satisfy before anything starts: limits, names, and what NATS
//! itself would refuse later (e.g. `max_deliver` vs `back_off`). Each error names the key.

use super::decode::Decoder;
use super::{Config, ConfigError, StreamConfig, AUDIT_MAX_BYTES_MIN};
use crate::duration::format_duration;
use std::time::Duration;

type Result<T> = std::result::Result<T, ConfigError>;

/// Upper and lower bounds of the contract, with their units.
const MAX_JOBS_MAX: usize = 1024;
const REPLICAS_MAX: usize = 5;
/// A stream's consumer limit: every host needs one or more, so a million is far beyond any fleet.
const MAX_CONSUMERS_MAX: usize = 1_000_000;
const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Each connection holds a thread and three descriptors; more belongs behind a proxy.
const CONNECTIONS_MAX: usize = 65_536;
/// The detail cache is a convenience beside the index; a gibibyte is far past any use of it.
const DETAIL_CACHE_BYTES_MAX: usize = 1024 * 1024 * 1024;
const NATS_TIMEOUT_MAX: Duration = Duration::from_secs(60);
const HEARTBEAT_MIN: Duration = Duration::from_millis(100);
const NAME_RULE: &str = "[A-Za-z0-9_-]+";

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_dotted_names(s: &str) -> bool {
    s.split('.').all(is_name)
}

fn is_hostname(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
}

impl Decoder {
    fn name(&self, path: &str, value: &str) -> Result<()> {
        if is_name(value) {
            return Ok(());
        }
        Err(self.err(path, format!("'{value}' must match {NAME_RULE}")))
    }

    fn range(&self, path: &str, value: usize, min: usize, max: usize) -> Result<()> {
        if (min..=max).contains(&value) {
            return Ok(());
        }
        Err(self.err(
            path,
            format!("must be between {min} and {max}, got {value}"),
        ))
    }

    fn at_least(&self, path: &str, value: i64, min: i64) -> Result<()> {
        if value >= min {
            return Ok(());
        }
        Err(self.err(path, format!("must be at least {min}, got {value}")))
    }

    /// NATS limits: -1 means unlimited, otherwise a positive count.
    fn limit(&self, path: &str, value: i64) -> Result<()> {
        if value == -1 || value >= 1 {
            return Ok(());
        }
        Err(self.err(
            path,
            format!("must be -1 (unlimited) or a positive integer, got {value}"),
        ))
    }

    fn not_empty(&self, path: &str, value: &str) -> Result<()> {
        if !value.trim().is_empty() {
            return Ok(());
        }
        Err(self.err(path, "must not be empty"))
    }

    fn nats_timeout(&self, path: &str, value: Duration) -> Result<()> {
        if !value.is_zero() && value <= NATS_TIMEOUT_MAX {
            return Ok(());
        }
        let max = format_duration(NATS_TIMEOUT_MAX);
        let got = format_duration(value);
        Err(self.err(
            path,
            format!("must be more than 0s and at most {max}, got {got}"),
        ))
    }

    fn positive(&self, path: &str, value: Duration) -> Result<()> {
        if !value.is_zero() {
            return Ok(());
        }
        Err(self.err(path, "must be more than 0s"))
    }

    fn stream(&self, path: &str, s: &StreamConfig) -> Result<()> {
        self.name(&format!("{path}.name"), &s.name)?;
        self.limit(&format!("{path}.max_msgs"), s.max_msgs)?;
        let consumers = format!("{path}.max_consumers");
        self.range(&consumers, s.max_consumers, 1, MAX_CONSUMERS_MAX)?;
        self.range(&format!("{path}.replicas"), s.replicas, 1, REPLICAS_MAX)
    }

    /// Checks every rule of the contract; the first broken one is the error.
    pub(super) fn validate(&self, c: &Config) -> Result<()> {
        let n = &c.nats;
        self.not_empty("nats.url", &n.url)?;
        if !n.namespace.is_empty() {
            self.name("nats.namespace", &n.namespace)?;
        }
        self.nats_timeout("nats.connect_timeout", n.connect_timeout)?;
        self.nats_timeout("nats.request_timeout", n.request_timeout)?;
        self.stream("nats.stream", &n.stream)?;
        self.name("nats.kv.bucket", &n.kv.bucket)?;
        self.name("nats.kv.response_bucket", &n.kv.response_bucket)?;
        if n.kv.bucket == n.kv.response_bucket {
            let msg = format!("'{}' must differ from nats.kv.bucket", n.kv.response_bucket);
            return Err(self.err("nats.kv.response_bucket", msg));
        }
        self.name("nats.kv.workers_bucket", &n.kv.workers_bucket)?;
        if [&n.kv.bucket, &n.kv.response_bucket].contains(&&n.kv.workers_bucket) {
            let msg = format!(
                "'{}' must differ from nats.kv.bucket and nats.kv.response_bucket",
                n.kv.workers_bucket
            );
            return Err(self.err("nats.kv.workers_bucket", msg));
        }
        if n.stream.discard == super::Discard::Old {
            let msg =
                "'old' would evict notifications of jobs already answered 201, which then never \
                       run; use 'new' (a full stream refuses new jobs with 503)";
            return Err(self.err("nats.stream.discard", msg));
        }
        self.limit("nats.kv.max_bytes", n.kv.max_bytes)?;
        self.range("nats.kv.replicas", n.kv.replicas, 1, REPLICAS_MAX)?;
        self.limit("nats.dlq.max_msgs", n.dlq.max_msgs)?;
        self.range("nats.dlq.replicas", n.dlq.replicas, 1, REPLICAS_MAX)?;

        let server = &c.api.server;
        let listen_ok = server
            .listen
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !listen_ok {
            let msg = format!("'{}' must be HOST:PORT, e.g. 127.0.0.1:8080", server.listen);
            return Err(self.err("api.server.listen", msg));
        }
        self.range(
            "api.server.max_body_bytes",
            server.max_body_bytes,
            1,
            BODY_BYTES_MAX,
        )?;
        self.range(
            "api.server.max_connections",
            server.max_connections,
            1,
            CONNECTIONS_MAX,
        )?;
        self.range(
            "api.server.max_job_data_bytes",
            server.max_job_data_bytes,
            2, // `{}`
            server.max_body_bytes,
        )?;
        self.range(
            "api.server.detail_cache_bytes",
            server.detail_cache_bytes,
            0,
            DETAIL_CACHE_BYTES_MAX,
        )?;
        for (role, cfg) in &server.security.roles {
            let path = format!("api.server.security.roles.{role}");
            self.name(&path, role)?;
            crate::permission::check_role(role, &cfg.permissions)
                .map_err(|msg| self.err(&path, msg))?;
        }
        self.not_empty("api.client.url", &c.api.client.url)?;

        let w = &c.job.worker;
        self.range("job.worker.max_jobs", w.max_jobs, 1, MAX_JOBS_MAX)?;
        if !is_hostname(&w.hostname) {
            let msg = format!(
                "'{}' must be empty or match [A-Za-z0-9_.-]+ without a leading or trailing '.' or '..'",
                w.hostname
            );
            return Err(self.err("job.worker.hostname", msg));
        }
        for (key, value) in &w.labels {
            let path = format!("job.worker.labels.{key}");
            if !is_name(key) {
                return Err(self.err(&path, format!("label key '{key}' must match {NAME_RULE}")));
            }
            if !is_dotted_names(value) {
                let msg =
                    format!("label value '{value}': dot-separated segments must match {NAME_RULE}");
                return Err(self.err(&path, msg));
            }
        }
        if w.heartbeat < HEARTBEAT_MIN {
            let msg = format!(
                "must be at least {}, got {}",
                format_duration(HEARTBEAT_MIN),
                format_duration(w.heartbeat)
            );
            return Err(self.err("job.worker.heartbeat", msg));
        }
        for (i, op) in w.allow_operations.iter().enumerate() {
            if !is_dotted_names(op) {
                let msg = format!("'{op}' must be an operation type like system.reboot.execute");
                return Err(self.err(&format!("job.worker.allow_operations[{i}]"), msg));
            }
        }
        self.not_empty("job.worker.host_root", &w.host_root.to_string_lossy())?;
        for (i, key) in w.trusted_job_keys.iter().enumerate() {
            self.not_empty(&format!("job.worker.trusted_job_keys[{i}]"), key)?;
        }
        let tls = &n.tls;
        if tls.cert_file.is_empty() != tls.key_file.is_empty() {
            return Err(self.err(
                "nats.tls",
                "cert_file and key_file go together: set both or neither",
            ));
        }
        self.positive("audit.max_age", c.audit.max_age)?;
        self.at_least("audit.max_bytes", c.audit.max_bytes, AUDIT_MAX_BYTES_MIN)?;

        let consumer = &w.consumer;
        self.name("job.worker.consumer.name", &consumer.name)?;
        self.at_least("job.worker.consumer.max_deliver", consumer.max_deliver, 1)?;
        let steps = consumer.back_off.len();
        if usize::try_from(consumer.max_deliver).is_ok_and(|max| max <= steps) {
            let msg = format!(
                "must be greater than the number of back_off steps ({steps}), as NATS requires; got {}",
                consumer.max_deliver
            );
            return Err(self.err("job.worker.consumer.max_deliver", msg));
        }
        self.positive("job.worker.consumer.ack_wait", consumer.ack_wait)?;
        for (i, step) in consumer.back_off.iter().enumerate() {
            self.positive(&format!("job.worker.consumer.back_off[{i}]"), *step)?;
        }
        self.at_least(
            "job.worker.consumer.max_ack_pending",
            consumer.max_ack_pending,
            1,
        )?;
        if consumer.replicas > n.stream.replicas {
            let msg = format!(
                "{} is more than nats.stream.replicas ({}): NATS refuses a consumer with more copies \
                 than its stream (0: as many as the stream)",
                consumer.replicas, n.stream.replicas
            );
            return Err(self.err("job.worker.consumer.replicas", msg));
        }
        Ok(())
    }
}
