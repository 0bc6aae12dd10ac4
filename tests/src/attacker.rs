//! The attacker's side of the trust tests: a NATS client with no API and no token that writes job records
//! and notifications straight into JetStream, as anyone who can reach NATS could (docs/security.md).

use osapi_bus::{Bus, ConnectOptions, Identity};
use osapi_common::names::{keys, Names};
use osapi_common::operation::OperationType;
use osapi_common::target::Target;
use serde_json::Value;
use std::time::Duration;

/// A NATS connection aimed at one test cluster's namespace.
pub struct Attacker {
    pub bus: Bus,
    pub names: Names,
}

impl Attacker {
    /// Connects to `nats_url` with `identity` (none: an unauthenticated server) for `namespace`'s names.
    pub fn connect(
        nats_url: &str,
        namespace: &str,
        identity: Identity,
    ) -> Result<Attacker, String> {
        Attacker::connect_with_inbox(nats_url, namespace, identity, "_INBOX")
    }

    /// As [`Attacker::connect`], receiving on `inbox_prefix` (a restricted identity may subscribe to its
    /// own prefix only).
    pub fn connect_with_inbox(
        nats_url: &str,
        namespace: &str,
        identity: Identity,
        inbox_prefix: &str,
    ) -> Result<Attacker, String> {
        let bus = Bus::connect(&ConnectOptions {
            url: nats_url.to_string(),
            user_pass: None,
            token: None,
            identity,
            request_timeout: Duration::from_secs(2),
            name: "attacker".into(),
            inbox_prefix: inbox_prefix.into(),
        })
        .map_err(|e| e.to_string())?;
        let names = Names::new(
            namespace,
            "JOBS",
            "job-queue",
            "job-responses",
            "jobs-worker",
        );
        Ok(Attacker { bus, names })
    }

    /// The stored `jobs.{id}` record, as JSON.
    pub fn read_job(&self, id: &str) -> Option<Value> {
        let entry = self.bus.kv_get(&self.names.bucket, &keys::job(id)).ok()??;
        serde_json::from_slice(&entry.value).ok()
    }

    /// What host `host` recorded for job `id` (`state.{id}.{host}`), as JSON; `Null` when nothing (yet):
    /// for jobs the API does not list.
    pub fn host_state(&self, id: &str, host: &str) -> Value {
        let entry = self
            .bus
            .kv_get(&self.names.bucket, &keys::state(id, host))
            .ok()
            .flatten();
        entry
            .and_then(|e| serde_json::from_slice(&e.value).ok())
            .unwrap_or(Value::Null)
    }

    /// Writes `def` as `jobs.{id}` (its `id` field) and publishes its id where its target's workers listen.
    pub fn forge(&self, def: &Value) -> Result<(), String> {
        self.forge_as(def["id"].as_str().ok_or("a job needs an id")?, def)
    }

    /// Writes `def` as `jobs.{id}` whatever its own `id` field says (a record copied under another
    /// key), and publishes `id` where its target's workers listen.
    pub fn forge_as(&self, id: &str, def: &Value) -> Result<(), String> {
        let bytes = serde_json::to_vec(def).map_err(|e| e.to_string())?;
        self.bus
            .kv_put(&self.names.bucket, &keys::job(id), &bytes)
            .map_err(|e| format!("writing the job: {e}"))?;
        let target = def["target_hostname"].as_str().ok_or("no target")?;
        self.notify(
            id,
            def["operation"]["type"].as_str().ok_or("no type")?,
            target,
        )
    }

    /// Publishes `id` on the subject of `target` (as if the job of type `op_type` were addressed there).
    pub fn notify(&self, id: &str, op_type: &str, target: &str) -> Result<(), String> {
        let op: OperationType = op_type.parse().map_err(|e: String| e)?;
        let target: Target = target.parse().map_err(|e: String| e)?;
        let subject = self.names.job_subject(op.kind(), &target);
        self.bus
            .js_publish(&subject, &format!("{id}-{subject}"), id.as_bytes())
            .map(|_| ())
            .map_err(|e| format!("publishing the notification: {e}"))
    }
}
