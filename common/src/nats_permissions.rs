//! Least-privilege NATS identities: the publish and subscribe permissions of the API and of one worker
//! host, and their blocks in nats-server's config syntax (`osapi nats-permissions`, packaging/nats/).
//!
//! A worker may read job definitions (and other KV records: reads are not the threat), create and pull
//! only its own consumers (and the shared `_any` one), ack only what they deliver, and write only its own
//! `state.*.HOST`, `workers.HOST`, `drain.HOST` and `*.HOST` response keys. The API may do everything
//! else but write a host's state, response or heartbeat, or settle a worker's messages. Why each subject is there:
//! docs/security.md. Pure: names in, text out.

use crate::names::{keys, Names};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One identity's permissions, as nats-server takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish_allow: Vec<String>,
    pub publish_deny: Vec<String>,
    pub subscribe_allow: Vec<String>,
}

/// Replies to every request come back on the client's inbox (`_INBOX.<random>.*`).
const INBOX: &str = "_INBOX.>";

fn kv(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

/// The worker on `hostname` with `labels`; `workers_bucket` holds the heartbeats (`workers.{host}`).
pub fn worker(
    names: &Names,
    workers_bucket: &str,
    hostname: &str,
    labels: &BTreeMap<String, String>,
) -> Permissions {
    let stream = &names.stream;
    let mut publish = vec![
        // Its own records: one state per job, one response per job, its heartbeat.
        kv(&names.bucket, &keys::state("*", hostname)),
        kv(&names.response_bucket, &keys::response("*", hostname)),
        kv(workers_bucket, &keys::worker(hostname)),
        // Its drain record (drain bucket, no TTL): it appends `cordoned` once drained and idle
        // (worker/src/drain.rs).
        kv(&names.drain_bucket, &keys::drain(hostname)),
        // Reading records (jobs.{id}, its earlier state, cancel.{id}; its drain record) and checking the
        // layout exists.
        format!("$JS.API.STREAM.MSG.GET.KV_{}", names.bucket),
        format!("$JS.API.STREAM.MSG.GET.KV_{}", names.drain_bucket),
        "$JS.API.STREAM.INFO.*".to_string(),
    ];
    // Both plans: one-filter consumers (nats-server 2.9) and merged ones (2.10+); a worker uses one and
    // removes its own of the other after an upgrade. The shared `_any` one is in both, listed once.
    let mut specs = names.worker_consumers_merged(hostname, labels);
    for spec in names.worker_consumers(hostname, labels) {
        if !specs.iter().any(|s| s.durable == spec.durable) {
            specs.push(spec);
        }
    }
    for spec in specs {
        let durable = &spec.durable;
        for api in ["DURABLE.CREATE", "INFO", "MSG.NEXT"] {
            publish.push(format!("$JS.API.CONSUMER.{api}.{stream}.{durable}"));
        }
        if !spec.shared {
            publish.push(format!("$JS.API.CONSUMER.DELETE.{stream}.{durable}"));
        }
        // Ack, nak, in-progress and term go to the delivery's reply subject.
        publish.push(format!("$JS.ACK.{stream}.{durable}.>"));
    }
    Permissions {
        publish_allow: publish,
        publish_deny: Vec::new(),
        subscribe_allow: vec![
            INBOX.to_string(),
            // Live notices of a cancel (any job: it may run here) and of its own drain record.
            kv(&names.bucket, &keys::cancel("*")),
            kv(&names.drain_bucket, &keys::drain(hostname)),
        ],
    }
}

/// The API: lays out streams and buckets, writes job definitions and notifications, reads and watches
/// everything; never writes what only a host may write, never settles a worker's deliveries.
pub fn api(names: &Names, workers_bucket: &str) -> Permissions {
    Permissions {
        publish_allow: vec![">".to_string()],
        publish_deny: vec![
            kv(&names.bucket, "state.>"),
            kv(&names.response_bucket, ">"),
            kv(workers_bucket, "workers.>"),
            "$JS.ACK.>".to_string(),
            format!("$JS.API.CONSUMER.MSG.NEXT.{}.>", names.stream),
        ],
        subscribe_allow: vec![">".to_string()],
    }
}

fn list(out: &mut String, indent: &str, name: &str, items: &[String]) {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    let _ = writeln!(out, "{indent}{name}: [");
    for q in quoted {
        let _ = writeln!(out, "{indent}  {q}");
    }
    let _ = writeln!(out, "{indent}]");
}

/// One entry of `authorization { users = [...] }`: `identity` is its first line, e.g. `nkey: "U..."`;
/// `comment` says whose it is.
pub fn user_block(comment: &str, identity: &str, p: &Permissions) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {comment}");
    let _ = writeln!(out, "{{");
    let _ = writeln!(out, "  {identity}");
    let _ = writeln!(out, "  permissions: {{");
    let _ = writeln!(out, "    publish: {{");
    list(&mut out, "      ", "allow", &p.publish_allow);
    if !p.publish_deny.is_empty() {
        list(&mut out, "      ", "deny", &p.publish_deny);
    }
    let _ = writeln!(out, "    }}");
    let _ = writeln!(out, "    subscribe: {{");
    list(&mut out, "      ", "allow", &p.subscribe_allow);
    let _ = writeln!(out, "    }}");
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names::new("", "JOBS", "job-queue", "job-responses", "jobs-worker")
    }

    #[test]
    fn a_worker_writes_only_its_own_keys_and_uses_only_its_own_consumers() {
        let labels: BTreeMap<String, String> = [("group".into(), "web.dev".into())].into();
        let p = worker(&names(), "job-workers", "web1", &labels);
        let has = |s: &str| p.publish_allow.iter().any(|a| a == s);
        assert!(has("$KV.job-queue.state.*.web1"));
        assert!(has("$KV.job-responses.*.web1"));
        assert!(has("$KV.job-workers.workers.web1"));
        assert!(has("$KV.job-drain.drain.web1"));
        assert!(!has("$KV.job-drain.drain.*"));
        assert!(has("$JS.API.STREAM.MSG.GET.KV_job-drain"));
        assert!(p
            .subscribe_allow
            .contains(&"$KV.job-queue.cancel.*".to_string()));
        assert!(p
            .subscribe_allow
            .contains(&"$KV.job-drain.drain.web1".to_string()));
        assert!(has("$JS.API.STREAM.MSG.GET.KV_job-queue"));
        assert!(has("$JS.API.CONSUMER.MSG.NEXT.JOBS.jobs-worker-any"));
        // Per consumer of either plan: create, info, pull, ack; delete only its own, never the shared one.
        let single = names().worker_consumers("web1", &labels);
        let merged = names().worker_consumers_merged("web1", &labels);
        assert_eq!(
            (single.len(), merged.len()),
            (5, 2),
            "{single:?} {merged:?}"
        );
        for spec in single.iter().chain(&merged).filter(|c| !c.shared) {
            let d = &spec.durable;
            for api in ["DURABLE.CREATE", "INFO", "MSG.NEXT", "DELETE"] {
                assert!(
                    has(&format!("$JS.API.CONSUMER.{api}.JOBS.{d}")),
                    "{api} {d}"
                );
            }
            assert!(has(&format!("$JS.ACK.JOBS.{d}.>")), "{d}");
        }
        assert!(!has("$JS.API.CONSUMER.DELETE.JOBS.jobs-worker-any"));
        // 7 record/read subjects, 4 for the shared consumer, 5 for each of its 4 + 1 own consumers.
        assert_eq!(
            p.publish_allow.len(),
            7 + 4 + 5 * 5,
            "{:#?}",
            p.publish_allow
        );
        // Nothing with a wildcard over other hosts, no job definitions, no stream admin.
        for s in &p.publish_allow {
            assert!(!s.contains(">") || s.starts_with("$JS.ACK."), "{s}");
            assert!(!s.contains("jobs.*") && !s.contains("STREAM.CREATE"), "{s}");
            assert!(!s.contains("web2"), "{s}");
        }
        assert_eq!(
            p.subscribe_allow,
            [
                "_INBOX.>",
                "$KV.job-queue.cancel.*",
                "$KV.job-drain.drain.web1"
            ]
        );
    }

    #[test]
    fn namespaces_prefix_every_name() {
        let n = Names::new("prod", "JOBS", "job-queue", "job-responses", "jobs-worker");
        let p = worker(&n, "prod-job-workers", "db1", &BTreeMap::new());
        assert!(p
            .publish_allow
            .contains(&"$KV.prod-job-queue.state.*.db1".to_string()));
        assert!(p
            .publish_allow
            .contains(&"$JS.API.CONSUMER.MSG.NEXT.prod-JOBS.prod-jobs-worker-any".to_string()));
        let a = api(&n, "prod-job-workers");
        assert!(a
            .publish_deny
            .contains(&"$KV.prod-job-queue.state.>".to_string()));
    }

    #[test]
    fn blocks_in_nats_server_syntax() {
        let text = user_block("api", "nkey: \"UABC\"", &api(&names(), "job-workers"));
        assert!(
            text.starts_with("# api\n{\n  nkey: \"UABC\"\n  permissions: {\n"),
            "{text}"
        );
        assert!(
            text.contains("      deny: [\n        \"$KV.job-queue.state.>\"\n"),
            "{text}"
        );
        assert!(text.trim_end().ends_with('}'));
        let opens = text.matches(['{', '[']).count();
        let closes = text.matches(['}', ']']).count();
        assert_eq!(opens, closes, "{text}");
    }
}
