//! Which record a notification's job is read from. A broadcast (`_all`, a label target) is read from its
//! hosts' copy `run.{id}` (`trust::Form::Run`): the whole `jobs.{id}` lists every host the broadcast
//! expects, so with 1,000 hosts each would fetch, parse and verify 1,000 names it has no use for. The
//! whole record is read instead when there is no copy (a job from an API older than the copies, or a
//! deleted one: the whole record says which) and when the broadcast is older than this worker, since only
//! the list says whether it expected this host (`Runner::not_ours`). Which form a record is verified as
//! follows from the key it was read from, never from the record.
//!
//! The API sends a job's records and its notification at once, and nats-server stores writes to
//! different streams in either order: a fresh notification whose record is not there yet is read
//! again for up to half a second ([`read_again`]) before the job counts as gone.

use osapi_bus::{Bus, BusError, KvEntry};
use osapi_common::job::JobDef;
use osapi_common::names::{keys, Names};
use osapi_common::target::Target;
use osapi_common::trust::Form;

/// A job read and parsed as the form it was read in, or why it cannot be read.
pub type Parsed = Result<(JobDef, Form), String>;

/// The form a notification on `subject` is read in first: `Run` for a broadcast's subject.
pub fn form_of(names: &Names, subject: &str) -> Form {
    // `[prefix]jobs.>` less its `>`: what every job subject starts with, then `{kind}.{route}`.
    let stream = names.stream_subjects();
    let route = subject
        .strip_prefix(stream.trim_end_matches('>'))
        .and_then(|rest| rest.split_once('.'))
        .map(|(_, route)| route);
    match route {
        Some(r) if Target::is_broadcast_route(r) => Form::Run,
        _ => Form::Whole,
    }
}

/// The key job `id` is read from in `form`.
pub fn key(id: &str, form: Form) -> String {
    match form {
        Form::Whole => keys::job(id),
        Form::Run => keys::run(id),
    }
}

/// A first delivery stored at most this long ago (either way: the server's clock and ours) may have
/// come before its record. Older ones (a new consumer replaying the stream) are not waited for.
const FRESH_US: i64 = 60_000_000;
/// The pauses between reads of a record not there yet: 511 ms in all.
const AGAIN_MS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// Whether a notification whose job was not found may still see its record come: its first
/// delivery (`delivered`), stored (`stored_us`, the server's clock) close to `now_us`.
pub fn may_come(delivered: u64, stored_us: i64, now_us: i64) -> bool {
    delivered == 1 && now_us.saturating_sub(stored_us).saturating_abs() <= FRESH_US
}

/// Reads job `id` again, with growing pauses, until it is there or [`AGAIN_MS`] is used up (`None`:
/// the job is gone, or was never created).
pub fn read_again(
    bus: &Bus,
    bucket: &str,
    id: &str,
    form: Form,
    started_us: i64,
) -> Result<Option<Parsed>, BusError> {
    for pause in AGAIN_MS {
        std::thread::sleep(std::time::Duration::from_millis(pause));
        let got = bus.kv_get(bucket, &key(id, form))?;
        if let Some(parsed) = resolve(bus, bucket, id, form, got, started_us)? {
            return Ok(Some(parsed));
        }
    }
    Ok(None)
}

fn parse(entry: &KvEntry, form: Form) -> Parsed {
    serde_json::from_slice(&entry.value)
        .map(|def| (def, form))
        .map_err(|e| e.to_string())
}

/// The job to decide on, from `got` (what was read at [`key`]`(id, form)`), reading `jobs.{id}` when the
/// copy is missing or the broadcast was submitted before this worker started (`started_us`).
/// `None`: the job is gone.
pub fn resolve(
    bus: &Bus,
    bucket: &str,
    id: &str,
    form: Form,
    got: Option<KvEntry>,
    started_us: i64,
) -> Result<Option<Parsed>, BusError> {
    let whole = || -> Result<Option<Parsed>, BusError> {
        Ok(bus
            .kv_get(bucket, &keys::job(id))?
            .map(|e| parse(&e, Form::Whole)))
    };
    let Some(entry) = got else {
        return match form {
            Form::Run => whole(),
            Form::Whole => Ok(None),
        };
    };
    match parse(&entry, form) {
        Ok((def, Form::Run)) if def.created_us < started_us => whole(),
        parsed => Ok(Some(parsed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_fresh_first_delivery_waits_for_its_record() {
        let now = 1_800_000_000_000_000;
        assert!(may_come(1, now - 1_000, now));
        // The server's clock ahead of ours.
        assert!(may_come(1, now + 5_000_000, now));
        assert!(!may_come(2, now - 1_000, now), "a redelivery had its time");
        assert!(!may_come(1, now - 61_000_000, now), "a replayed old one");
        assert!(!may_come(1, 0, now));
    }

    #[test]
    fn broadcast_subjects_are_read_from_the_copy() {
        let plain = Names::new("", "JOBS", "job-queue", "job-responses", "jobs-worker");
        let spaced = Names::new("t1", "JOBS", "job-queue", "job-responses", "jobs-worker");
        assert_eq!(form_of(&plain, "jobs.query._all"), Form::Run);
        assert_eq!(form_of(&plain, "jobs.modify.label.group.web"), Form::Run);
        assert_eq!(form_of(&plain, "jobs.query._any"), Form::Whole);
        assert_eq!(form_of(&plain, "jobs.query.host.web1"), Form::Whole);
        // A host named like a route is still a host target.
        assert_eq!(form_of(&plain, "jobs.query.host._all"), Form::Whole);
        assert_eq!(form_of(&spaced, "t1.jobs.query._all"), Form::Run);
        assert_eq!(form_of(&spaced, "jobs.query._all"), Form::Whole);
        assert_eq!(form_of(&plain, ""), Form::Whole);
        assert_eq!(key("x", Form::Run), "run.x");
        assert_eq!(key("x", Form::Whole), "jobs.x");
    }
}
