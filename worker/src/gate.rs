//! What a job must pass before this worker acts on any of its fields: a signature by a trusted key, the
//! id it was read as (a signed record copied under another key is a replay), an address that names this
//! host, and a deadline not yet passed when it first reaches this host. The rules
//! themselves are `osapi_common::trust`'s (pure, unit-tested); `run.rs` settles the message as decided.

use osapi_common::job::JobDef;
use osapi_common::trust::{self, Accepted, Form, Trust};
use std::collections::BTreeMap;

/// This worker's side of the checks.
pub struct Gate {
    /// `job.worker.trusted_job_keys` and `allow_unsigned_jobs`.
    pub trust: Trust,
    pub hostname: String,
    /// `job.worker.labels`: a label target must match one of them.
    pub labels: BTreeMap<String, String>,
}

/// What to do with a job.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Run,
    /// Not this host's (a notification on the wrong subject): ack, log, write nothing.
    Skip(String),
    /// Never run it: record `failed` with this error (`rejected: ...`, `expired: ...`) and ack.
    Refuse(String),
}

/// Checks `def`, read as `form` for job `id` (jobdef.rs), in order: signature first, then that the signed
/// id is `id`, then address, then (when the job has not yet started on this host: `first_here`) the
/// deadline. A retry in progress keeps its back-off schedule past the deadline.
///
/// The id check: the signature covers the record's `id`, not the key it is stored under, and this host's
/// state is kept under the key's id. Without it, a genuine signed record copied to `jobs.{new id}` by
/// anyone who can write the bucket would find no state there and run again before its deadline.
pub fn decide(
    gate: &Gate,
    id: &str,
    def: &JobDef,
    form: Form,
    first_here: bool,
    now_us: i64,
) -> Decision {
    match gate.trust.check_as(def, form) {
        Ok(Accepted::Verified { .. }) => {}
        Ok(Accepted::Unverified) => log::warn!(
            "job {} on {}: NOT VERIFIED, run because job.worker.allow_unsigned_jobs is on (development only)",
            def.id,
            gate.hostname
        ),
        Err(reason) => return Decision::Refuse(format!("rejected: {reason}")),
    }
    if def.id != id {
        return Decision::Refuse(format!(
            "rejected: the record read as job {id} was signed as job {}",
            def.id
        ));
    }
    if !trust::addressed_to(def, &gate.hostname, &gate.labels) {
        return Decision::Skip(format!(
            "reached {}, which it does not address",
            gate.hostname
        ));
    }
    if first_here {
        if let Some(error) = trust::expired(def, &gate.hostname, now_us) {
            return Decision::Refuse(error);
        }
    }
    Decision::Run
}

#[cfg(test)]
mod tests {
    use super::*;
    use osapi_common::job::Operation;
    use osapi_common::operation::OperationType;

    const ID: &str = "550e8400-e29b-41d4-a716-446655440000";

    fn def(target: &str) -> JobDef {
        JobDef {
            id: ID.into(),
            operation: Operation {
                op_type: OperationType::TestEchoDo,
                data: serde_json::json!({}),
            },
            target_hostname: target.into(),
            expected_hosts: vec![],
            created: String::new(),
            created_us: 1_000_000,
            timeout_ms: 1000,
            retry_of: None,
            submitted_by: String::new(),
            signature: None,
        }
    }

    #[test]
    fn signature_then_address_then_deadline_on_first_arrival_only() {
        let open = Gate {
            trust: Trust::new(vec![], true),
            hostname: "web1".into(),
            labels: BTreeMap::new(),
        };
        let late = 2_000_001;
        assert_eq!(
            decide(&open, ID, &def("web1"), Form::Whole, true, 1_500_000),
            Decision::Run
        );
        assert_eq!(
            decide(&open, ID, &def("web1"), Form::Whole, true, late),
            Decision::Refuse("expired: reached web1 after its deadline".into())
        );
        // A retry already under way here keeps its schedule.
        assert_eq!(
            decide(&open, ID, &def("web1"), Form::Whole, false, late),
            Decision::Run
        );
        assert!(matches!(
            decide(&open, ID, &def("web2"), Form::Whole, true, late),
            Decision::Skip(_)
        ));
        let strict = Gate {
            trust: Trust::new(vec![], false),
            ..open
        };
        // The signature comes first: an unsigned, misaddressed, late job is refused as unsigned.
        assert_eq!(
            decide(&strict, ID, &def("web2"), Form::Whole, true, late),
            Decision::Refuse("rejected: the job is not signed".into())
        );
    }

    #[test]
    fn a_record_read_under_another_id_is_refused_before_its_address_and_deadline() {
        let open = Gate {
            trust: Trust::new(vec![], true),
            hostname: "web1".into(),
            labels: BTreeMap::new(),
        };
        let other = "11111111-2222-3333-4444-555555555555";
        assert_eq!(
            decide(&open, other, &def("web2"), Form::Run, true, 2_000_001),
            Decision::Refuse(format!(
                "rejected: the record read as job {other} was signed as job {ID}"
            ))
        );
    }
}
