//! Every NATS name the system uses (subjects, streams, buckets, consumers, KV keys), derived in one place
//! from the config and `nats.namespace`, so the API and the worker cannot disagree.

use crate::operation::Kind;
use crate::target::{label_prefixes, Target};

/// Names for one namespace. Build with [`Names::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Prefix for subjects: `""` or `"{namespace}."`.
    subject_prefix: String,
    /// Prefix for stream, bucket and consumer names: `""` or `"{namespace}-"`.
    name_prefix: String,
    /// Stream carrying job notifications.
    pub stream: String,
    /// Dead-letter stream capturing max-deliveries advisories of `stream`.
    pub dlq_stream: String,
    /// KV bucket of job definitions and per-host states.
    pub bucket: String,
    /// KV bucket of per-host results.
    pub response_bucket: String,
    /// KV bucket of worker heartbeats (`workers.{host}`): its own, so a full job bucket cannot hide the
    /// fleet. `{prefix}job-workers` unless [`Names::with_workers_bucket`] says otherwise.
    pub workers_bucket: String,
    /// KV bucket of `Idempotency-Key` records (`idem.{hash}`), 24 h TTL: `{prefix}job-idempotency`.
    pub idempotency_bucket: String,
    /// KV bucket of drain records (`drain.{host}`): `{prefix}job-drain`, with no TTL, so a drain lasts
    /// until undrain however long its host is down (the heartbeat bucket expires records after
    /// `nats.kv.ttl`).
    pub drain_bucket: String,
    consumer_base: String,
}

/// What a worker consumer listens to: its durable name and its subject filters (one on nats-server 2.9;
/// 2.10 and later allow several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub durable: String,
    pub filters: Vec<String>,
    /// True for the one consumer every worker shares (`_any`).
    pub shared: bool,
}

impl Names {
    /// `namespace` may be empty; the other names come from config (`nats.stream.name`, `nats.kv.*`,
    /// `job.worker.consumer.name`).
    pub fn new(
        namespace: &str,
        stream: &str,
        bucket: &str,
        response_bucket: &str,
        consumer: &str,
    ) -> Names {
        let (subject_prefix, name_prefix) = if namespace.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{namespace}."), format!("{namespace}-"))
        };
        Names {
            stream: format!("{name_prefix}{stream}"),
            dlq_stream: format!("{name_prefix}{stream}-DLQ"),
            bucket: format!("{name_prefix}{bucket}"),
            response_bucket: format!("{name_prefix}{response_bucket}"),
            workers_bucket: format!("{name_prefix}job-workers"),
            idempotency_bucket: format!("{name_prefix}job-idempotency"),
            drain_bucket: format!("{name_prefix}job-drain"),
            consumer_base: format!("{name_prefix}{consumer}"),
            subject_prefix,
            name_prefix,
        }
    }

    /// The same names with the heartbeat bucket `workers_bucket` (`nats.kv.workers_bucket`).
    pub fn with_workers_bucket(mut self, workers_bucket: &str) -> Names {
        self.workers_bucket = format!("{}{workers_bucket}", self.name_prefix);
        self
    }

    /// Subjects the job stream stores: `[prefix]jobs.>`.
    pub fn stream_subjects(&self) -> String {
        format!("{}jobs.>", self.subject_prefix)
    }

    /// The notification subject for a job: `[prefix]jobs.{query|modify}.{route}`.
    pub fn job_subject(&self, kind: Kind, target: &Target) -> String {
        format!(
            "{}jobs.{}.{}",
            self.subject_prefix,
            kind.as_str(),
            target.route()
        )
    }

    /// The advisory subject the dead-letter stream captures.
    pub fn dlq_subject(&self) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.*",
            self.stream
        )
    }

    /// The consumers one worker needs with one filter each (nats-server 2.9): the shared `_any` one, its
    /// own `_all` and host ones, and one per label prefix.
    pub fn worker_consumers(
        &self,
        hostname: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Vec<ConsumerSpec> {
        let base = &self.consumer_base;
        let host = durable_token(hostname);
        let mut out = vec![
            self.any_consumer(),
            ConsumerSpec {
                durable: format!("{base}-all-{host}"),
                filters: vec![format!("{}jobs.*._all", self.subject_prefix)],
                shared: false,
            },
            ConsumerSpec {
                durable: format!("{base}-host-{host}"),
                filters: vec![format!("{}jobs.*.host.{hostname}", self.subject_prefix)],
                shared: false,
            },
        ];
        for (key, value) in labels {
            for prefix in label_prefixes(value) {
                out.push(ConsumerSpec {
                    durable: format!(
                        "{base}-label-{host}-{}",
                        durable_token(&format!("{key}:{prefix}"))
                    ),
                    filters: vec![format!(
                        "{}jobs.*.label.{key}.{prefix}",
                        self.subject_prefix
                    )],
                    shared: false,
                });
            }
        }
        out
    }

    /// The consumers one worker needs where a consumer may filter several subjects (nats-server 2.10+):
    /// the shared `_any` one and one of its own over `_all`, its hostname and every label prefix.
    pub fn worker_consumers_merged(
        &self,
        hostname: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Vec<ConsumerSpec> {
        vec![
            self.any_consumer(),
            ConsumerSpec {
                durable: format!("{}-own-{}", self.consumer_base, durable_token(hostname)),
                filters: self.own_filters(hostname, labels),
                shared: false,
            },
        ]
    }

    /// The consumer every worker shares (`_any`); the API creates it with the layout.
    pub fn any_consumer(&self) -> ConsumerSpec {
        ConsumerSpec {
            durable: format!("{}-any", self.consumer_base),
            filters: vec![format!("{}jobs.*._any", self.subject_prefix)],
            shared: true,
        }
    }

    /// Every subject only this host (or its broadcast group) receives: `_all` first, then the hostname,
    /// then each label prefix.
    fn own_filters(
        &self,
        hostname: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Vec<String> {
        let p = &self.subject_prefix;
        let mut out = vec![
            format!("{p}jobs.*._all"),
            format!("{p}jobs.*.host.{hostname}"),
        ];
        for (key, value) in labels {
            for prefix in label_prefixes(value) {
                out.push(format!("{p}jobs.*.label.{key}.{prefix}"));
            }
        }
        out
    }

    /// The audit stream (`[prefix-]AUDIT`).
    pub fn audit_stream(&self) -> String {
        format!("{}AUDIT", self.name_prefix)
    }

    /// The one subject the audit stream stores: `[prefix.]audit.entries`.
    pub fn audit_subject(&self) -> String {
        format!("{}audit.entries", self.subject_prefix)
    }

    /// The namespace prefix for names (`""` or `"{ns}-"`).
    pub fn name_prefix(&self) -> &str {
        &self.name_prefix
    }
}

/// A durable-name-safe token for an arbitrary hostname or label: readable characters kept, anything else
/// replaced by `_`, plus a short hash of the original so `a.b` and `a_b` never share a durable.
pub(crate) fn durable_token(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{clean}-{:08x}", fnv1a(s.as_bytes()) as u32)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// KV keys in the job bucket and the response bucket.
pub mod keys {
    /// Immutable job definition.
    pub fn job(id: &str) -> String {
        format!("jobs.{id}")
    }
    /// The workers' copy of a broadcast job's definition: every field but `expected_hosts`, signed on its
    /// own (`trust::Form::Run`), so each of the fleet's hosts reads a record that does not grow with it.
    pub fn run(id: &str) -> String {
        format!("run.{id}")
    }
    /// One host's state of a job (status, attempts, events).
    pub fn state(id: &str, host: &str) -> String {
        format!("state.{id}.{host}")
    }
    /// Heartbeat record of a live worker.
    pub fn worker(host: &str) -> String {
        format!("workers.{host}")
    }
    /// A worker's drain record, in the drain bucket (`common::drain`).
    pub fn drain(host: &str) -> String {
        format!("drain.{host}")
    }
    /// A job's cancel request (`POST /job/{id}/cancel`).
    pub fn cancel(id: &str) -> String {
        format!("cancel.{id}")
    }
    /// One host's result, in the response bucket.
    pub fn response(id: &str, host: &str) -> String {
        format!("{id}.{host}")
    }

    /// What a key of the job bucket is about.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Parsed<'a> {
        Job(&'a str),
        State { id: &'a str, host: &'a str },
        Worker(&'a str),
        Cancel(&'a str),
        Other,
    }

    /// Classifies a job-bucket key (ids are 36-character UUIDs, hostnames may contain dots).
    pub fn parse(key: &str) -> Parsed<'_> {
        if let Some(id) = key.strip_prefix("jobs.") {
            return Parsed::Job(id);
        }
        if let Some(id) = key.strip_prefix("cancel.") {
            return Parsed::Cancel(id);
        }
        if let Some(rest) = key.strip_prefix("state.") {
            if rest.len() > 37 && rest.as_bytes()[36] == b'.' {
                return Parsed::State {
                    id: &rest[..36],
                    host: &rest[37..],
                };
            }
            return Parsed::Other;
        }
        if let Some(host) = key.strip_prefix("workers.") {
            return Parsed::Worker(host);
        }
        Parsed::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn namespaced_names() {
        let n = Names::new("t1", "JOBS", "job-queue", "job-responses", "jobs-worker");
        assert_eq!(n.stream, "t1-JOBS");
        assert_eq!(n.dlq_stream, "t1-JOBS-DLQ");
        assert_eq!(n.bucket, "t1-job-queue");
        assert_eq!(n.stream_subjects(), "t1.jobs.>");
        let t: Target = "group:web.dev".parse().unwrap_or(Target::Any);
        assert_eq!(
            n.job_subject(Kind::Query, &t),
            "t1.jobs.query.label.group.web.dev"
        );
        let plain = Names::new("", "JOBS", "b", "r", "c");
        assert_eq!(
            plain.job_subject(Kind::Modify, &Target::All),
            "jobs.modify._all"
        );
    }

    #[test]
    fn worker_consumers_cover_label_prefixes() {
        let n = Names::new("", "JOBS", "b", "r", "w");
        let labels: BTreeMap<String, String> = [("group".into(), "web.dev.us-east".into())].into();
        let specs = n.worker_consumers("web1.example", &labels);
        let filters: Vec<&str> = specs.iter().map(|s| s.filters[0].as_str()).collect();
        assert_eq!(
            filters,
            [
                "jobs.*._any",
                "jobs.*._all",
                "jobs.*.host.web1.example",
                "jobs.*.label.group.web",
                "jobs.*.label.group.web.dev",
                "jobs.*.label.group.web.dev.us-east",
            ]
        );
        assert!(specs.iter().all(|s| !s.durable.contains('.')));
        assert_eq!(specs.iter().filter(|s| s.shared).count(), 1);
        let a = n.worker_consumers("a.b", &BTreeMap::new());
        let b = n.worker_consumers("a_b", &BTreeMap::new());
        assert_ne!(a[1].durable, b[1].durable);
        assert!(specs.iter().all(|s| s.filters.len() == 1));
    }

    #[test]
    fn merged_consumers_cover_the_same_subjects_with_two() {
        let n = Names::new("ns", "JOBS", "b", "r", "w");
        let labels: BTreeMap<String, String> = [("group".into(), "web.dev".into())].into();
        let single = n.worker_consumers("web1", &labels);
        let merged = n.worker_consumers_merged("web1", &labels);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0], single[0], "the shared _any consumer is the same");
        let all_single: Vec<String> = single[1..].iter().flat_map(|s| s.filters.clone()).collect();
        assert_eq!(merged[1].filters, all_single);
        assert_eq!(merged[1].filters[0], "ns.jobs.*._all");
        assert!(!merged[1].shared);
        assert!(single.iter().all(|s| s.durable != merged[1].durable));
    }

    #[test]
    fn key_parsing() {
        let id = "550e8400-e29b-41d4-a716-446655440000";
        assert_eq!(keys::parse(&keys::job(id)), keys::Parsed::Job(id));
        assert_eq!(
            keys::parse(&keys::state(id, "web1.example")),
            keys::Parsed::State {
                id,
                host: "web1.example"
            }
        );
        assert_eq!(
            keys::parse(&keys::worker("db1")),
            keys::Parsed::Worker("db1")
        );
        assert_eq!(keys::parse("state.short.x"), keys::Parsed::Other);
        assert_eq!(keys::parse(&keys::cancel(id)), keys::Parsed::Cancel(id));
    }
}
