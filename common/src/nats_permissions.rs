//! Least-privilege NATS identities: the publish and subscribe permissions of the API and of one worker
//! host, and their blocks in nats-server's config syntax (`osapi nats-permissions`, packaging/nats/).
//!
//! A worker may read job definitions (and other KV records: reads are not the threat), create and pull
//! only its own consumers (and pull the shared `_any` one, which only the API creates), ack only what
//! they deliver, write only its own `state.*.HOST` (the final one carries its answer), `workers.HOST`
//! and `drain.HOST` keys (nothing in the response bucket, which only workers of before the answer went
//! into the final state wrote), and receive only on its own inbox prefix. The API may do everything else but write a host's
//! state, response or heartbeat, or settle a worker's messages, and receives only on its own prefix. Why
//! each subject is there: docs/security.md. Pure: names in, text out.

use crate::names::{durable_token, keys, Names};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One identity's permissions, as nats-server takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish_allow: Vec<String>,
    pub publish_deny: Vec<String>,
    pub subscribe_allow: Vec<String>,
}

/// The first token of every reply and delivery subject of the worker on `hostname`: its own, so no other
/// identity may subscribe to what JetStream sends it (its pulled jobs carry their ack subjects).
pub fn worker_inbox_prefix(names: &Names, hostname: &str) -> String {
    format!("_INBOX_{}{}", names.name_prefix(), durable_token(hostname))
}

/// The API's inbox prefix (a worker's always ends in `-` and a hash, so never equals it).
pub fn api_inbox_prefix(names: &Names) -> String {
    format!("_INBOX_{}API", names.name_prefix())
}

fn inbox(prefix: &str) -> String {
    format!("{prefix}.>")
}

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
        // Its own records: one state per job (the final one carries its answer), its heartbeat. No
        // response record: workers before the answer went into the final state wrote one.
        kv(&names.bucket, &keys::state("*", hostname)),
        kv(workers_bucket, &keys::worker(hostname)),
        // Its drain record (drain bucket, no TTL): it appends `cordoned` once drained and idle
        // (worker/src/drain.rs).
        kv(&names.drain_bucket, &keys::drain(hostname)),
        // Reading records (jobs.{id}, its earlier state, cancel.{id}; its drain record) and checking the
        // layout exists.
        format!("$JS.API.STREAM.MSG.GET.KV_{}", names.bucket),
        // The same reads as direct gets (one replica: docs/nats.md), the subject in the request's.
        format!("$JS.API.DIRECT.GET.KV_{}.>", names.bucket),
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
        // The shared one is the API's (layout): a worker that could create it could also update it
        // (2.10+: the same request) and stall `_any` for the fleet. It reads its info and pulls.
        let apis: &[&str] = if spec.shared {
            &["INFO", "MSG.NEXT"]
        } else {
            &["DURABLE.CREATE", "INFO", "MSG.NEXT", "DELETE"]
        };
        for api in apis {
            publish.push(format!("$JS.API.CONSUMER.{api}.{stream}.{durable}"));
        }
        // Ack, nak, in-progress and term go to the delivery's reply subject.
        publish.push(format!("$JS.ACK.{stream}.{durable}.>"));
    }
    Permissions {
        publish_allow: publish,
        publish_deny: Vec::new(),
        subscribe_allow: vec![
            inbox(&worker_inbox_prefix(names, hostname)),
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
        // Its replies and watches come to its own prefix; reading workers' would show it nothing it may
        // use, but there is no reason to allow it.
        subscribe_allow: vec![inbox(&api_inbox_prefix(names))],
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
        // Answers go in its final state: nothing of the response bucket.
        assert!(!p
            .publish_allow
            .iter()
            .any(|a| a.starts_with("$KV.job-responses.")));
        assert!(has("$KV.job-workers.workers.web1"));
        assert!(has("$KV.job-drain.drain.web1"));
        assert!(!has("$KV.job-drain.drain.*"));
        // Of the job bucket only its own states: never a definition (`jobs.*`) or a broadcast's copy (`run.*`).
        assert!(p
            .publish_allow
            .iter()
            .filter(|a| a.starts_with("$KV.job-queue."))
            .all(|a| a == "$KV.job-queue.state.*.web1"));
        assert!(has("$JS.API.STREAM.MSG.GET.KV_job-drain"));
        assert!(p
            .subscribe_allow
            .contains(&"$KV.job-queue.cancel.*".to_string()));
        assert!(p
            .subscribe_allow
            .contains(&"$KV.job-drain.drain.web1".to_string()));
        assert!(has("$JS.API.STREAM.MSG.GET.KV_job-queue"));
        assert!(has("$JS.API.DIRECT.GET.KV_job-queue.>"));
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
        // The shared one: info, pull and ack only; the API creates (and may update) it.
        assert!(!has("$JS.API.CONSUMER.DELETE.JOBS.jobs-worker-any"));
        assert!(!has("$JS.API.CONSUMER.DURABLE.CREATE.JOBS.jobs-worker-any"));
        assert!(!p
            .publish_allow
            .iter()
            .any(|s| s.contains("CONSUMER.CREATE")));
        assert!(has("$JS.API.CONSUMER.INFO.JOBS.jobs-worker-any"));
        assert!(has("$JS.ACK.JOBS.jobs-worker-any.>"));
        // 7 record/read subjects, 3 for the shared consumer, 5 for each of its 4 + 1 own consumers.
        assert_eq!(
            p.publish_allow.len(),
            7 + 3 + 5 * 5,
            "{:#?}",
            p.publish_allow
        );
        // Nothing with a wildcard over other hosts, no job definitions, no stream admin.
        for s in &p.publish_allow {
            // Reads of the job bucket (direct gets name the key's subject after the stream) are not writes.
            let read = s.starts_with("$JS.API.DIRECT.GET.KV_job-queue.");
            assert!(!s.contains(">") || s.starts_with("$JS.ACK.") || read, "{s}");
            assert!(!s.contains("jobs.*") && !s.contains("STREAM.CREATE"), "{s}");
            assert!(!s.contains("web2"), "{s}");
        }
        assert_eq!(
            p.subscribe_allow,
            [
                "_INBOX_web1-19ea4040.>",
                "$KV.job-queue.cancel.*",
                "$KV.job-drain.drain.web1"
            ]
        );
    }

    #[test]
    fn each_identity_receives_on_its_own_inbox_prefix_only() {
        let n = names();
        let (web1, web2) = (
            worker_inbox_prefix(&n, "web1"),
            worker_inbox_prefix(&n, "web2"),
        );
        let api_prefix = api_inbox_prefix(&n);
        assert_eq!(api_prefix, "_INBOX_API");
        assert!(web1.starts_with("_INBOX_web1-") && web1 != web2);
        // Hostnames that clean up alike still differ; dots never split the token.
        let (dotted, underscored) = (
            worker_inbox_prefix(&n, "a.b"),
            worker_inbox_prefix(&n, "a_b"),
        );
        assert!(dotted != underscored && !dotted.contains('.'), "{dotted}");
        let prod = Names::new("prod", "JOBS", "job-queue", "job-responses", "jobs-worker");
        assert_eq!(api_inbox_prefix(&prod), "_INBOX_prod-API");
        let p = worker(&n, "job-workers", "web1", &BTreeMap::new());
        assert_eq!(p.subscribe_allow[0], format!("{web1}.>"));
        assert!(!p.subscribe_allow.iter().any(|s| s.starts_with("_INBOX.")));
        assert_eq!(api(&n, "job-workers").subscribe_allow, ["_INBOX_API.>"]);
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
