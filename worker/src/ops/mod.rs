//! The operations this worker runs: one registry line per operation type, each pointing at a function in
//! a file per family (`system.rs` with `disk.rs`, `dns.rs` with `resolv_conf.rs`, `ping.rs`, `power.rs`,
//! `test.rs`). A function takes the job's data (parsed into a typed request with [`parse`]) and returns a JSON
//! result or an [`OpError`] classified once, where it arises. Host files are read and written only under
//! `host_root` (`host.rs`); host programs run without a shell, bounded in time (`command.rs`).
//!
//! Adding an operation: write its function in the family's file and add one line to [`handler`].

mod command;
mod disk;
mod dns;
mod host;
mod ping;
mod power;
mod resolv_conf;
pub(crate) mod system;
mod test;
#[cfg(test)]
mod tests_support;

use osapi_common::operation::OperationType;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::path::PathBuf;

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Timeout, resource temporarily unavailable: redelivered with back-off.
    Transient,
    /// Bad input, unsupported, refused: failed at once, never retried.
    Permanent,
}

/// An operation's failure, with the message the user sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub kind: ErrorKind,
    pub message: String,
}

impl OpError {
    pub fn permanent(message: impl Into<String>) -> OpError {
        OpError {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> OpError {
        OpError {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What an operation may know about the host it runs on.
#[derive(Debug, Clone)]
pub struct OpContext {
    /// The worker's hostname (configured or the OS one).
    pub hostname: String,
    /// Where /proc, /etc, /sys are read and written (tests point it at a fixture tree).
    pub host_root: PathBuf,
    /// Modify operations that are off by default but enabled in this worker's config.
    pub allow_operations: Vec<String>,
}

type Handler = fn(&Value, &OpContext) -> Result<Value, OpError>;

/// The registry: one line per supported operation.
fn handler(op: OperationType) -> Option<Handler> {
    use OperationType as Op;
    match op {
        Op::SystemHostnameGet => Some(system::hostname_get),
        Op::SystemUptimeGet => Some(system::uptime_get),
        Op::SystemOsGet => Some(system::os_get),
        Op::SystemLoadGet => Some(system::load_get),
        Op::SystemMemoryGet => Some(system::memory_get),
        Op::SystemDiskGet => Some(system::disk_get),
        Op::SystemStatusGet => Some(system::status_get),
        Op::NetworkDnsGet => Some(dns::dns_get),
        Op::NetworkDnsUpdate => Some(dns::dns_update),
        Op::NetworkPingDo => Some(ping::ping_do),
        Op::SystemRebootExecute => Some(power::reboot_execute),
        Op::SystemShutdownExecute => Some(power::shutdown_execute),
        Op::TestPingDo => Some(test::ping),
        Op::TestEchoDo => Some(test::echo),
        Op::TestSleepDo => Some(test::sleep),
        Op::TestFailDo => Some(test::fail),
    }
}

/// Runs `op` with `data` on this host.
pub fn execute(op: OperationType, data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    match handler(op) {
        Some(run) => run(data, ctx),
        None => Err(OpError::permanent(format!(
            "operation {op} is not supported by this worker"
        ))),
    }
}

/// The operations this worker runs, in catalogue order (advertised in its heartbeat).
pub fn supported() -> Vec<OperationType> {
    OperationType::ALL
        .iter()
        .copied()
        .filter(|op| handler(*op).is_some())
        .collect()
}

/// Parses `data` into an operation's typed request (declare it with `#[serde(deny_unknown_fields)]`).
/// Every error is permanent and names the field: serde already names unknown and missing fields; for a
/// wrong type we find the field by parsing each one alone.
pub fn parse<T: DeserializeOwned>(op: &str, data: &Value) -> Result<T, OpError> {
    let err = match serde_json::from_value::<T>(data.clone()) {
        Ok(request) => return Ok(request),
        Err(e) => e.to_string(),
    };
    let Some(fields) = data.as_object() else {
        return Err(OpError::permanent(format!(
            "{op}: data must be a JSON object: {err}"
        )));
    };
    if err.starts_with("unknown field") || err.starts_with("missing field") {
        return Err(OpError::permanent(format!("{op}: {err}")));
    }
    for (name, value) in fields {
        let alone = Value::Object([(name.clone(), value.clone())].into_iter().collect());
        if let Err(e) = serde_json::from_value::<T>(alone) {
            let e = e.to_string();
            if !e.starts_with("missing field") {
                return Err(OpError::permanent(format!("{op}: field `{name}`: {e}")));
            }
        }
    }
    Err(OpError::permanent(format!("{op}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> OpContext {
        OpContext {
            hostname: "web1".into(),
            host_root: PathBuf::from("/"),
            allow_operations: vec![],
        }
    }

    #[test]
    fn every_catalogued_operation_is_supported() {
        // The heartbeat advertises supported(): a worker of this version runs the whole catalogue.
        assert_eq!(supported(), OperationType::ALL);
    }

    #[test]
    fn data_errors_name_the_field() {
        let cases = [
            (
                OperationType::TestSleepDo,
                json!({"seconds": "x"}),
                "field `seconds`",
            ),
            (
                OperationType::TestSleepDo,
                json!({}),
                "missing field `seconds`",
            ),
            (
                OperationType::TestSleepDo,
                json!({"seconds": 301}),
                "seconds",
            ),
            (
                OperationType::TestSleepDo,
                json!({"seconds": 1, "x": 2}),
                "unknown field `x`",
            ),
            (
                OperationType::TestFailDo,
                json!({"transient": "yes"}),
                "field `transient`",
            ),
            (
                OperationType::TestFailDo,
                json!({"hosts": [1]}),
                "field `hosts`",
            ),
            (
                OperationType::TestPingDo,
                json!({"a": 1}),
                "unknown field `a`",
            ),
            (OperationType::TestEchoDo, json!([1]), "object"),
            (OperationType::SystemHostnameGet, json!(null), "object"),
        ];
        for (op, data, want) in cases {
            let err = execute(op, &data, &ctx()).err();
            let err = err.unwrap_or_else(|| panic!("{op} {data} should fail"));
            assert_eq!(err.kind, ErrorKind::Permanent, "{op} {data}");
            assert!(err.message.contains(want), "{op} {data}: {}", err.message);
        }
    }

    #[test]
    fn results() {
        let cases = [
            (
                OperationType::SystemHostnameGet,
                json!({}),
                json!({"hostname": "web1"}),
            ),
            (OperationType::TestPingDo, json!({}), json!({"pong": true})),
            (
                OperationType::TestEchoDo,
                json!({"a": [1, "x"]}),
                json!({"a": [1, "x"]}),
            ),
            (
                OperationType::TestSleepDo,
                json!({"seconds": 0}),
                json!({"slept_seconds": 0}),
            ),
            (
                OperationType::TestFailDo,
                json!({"hosts": ["db1"]}),
                json!({"failed": false}),
            ),
        ];
        for (op, data, want) in cases {
            assert_eq!(execute(op, &data, &ctx()), Ok(want), "{op} {data}");
        }
    }

    #[test]
    fn fail_kinds() {
        let transient = execute(
            OperationType::TestFailDo,
            &json!({"transient": true}),
            &ctx(),
        );
        assert_eq!(
            transient,
            Err(OpError::transient("test.fail.do failed as asked"))
        );
        let here = json!({"message": "boom", "hosts": ["web1"]});
        assert_eq!(
            execute(OperationType::TestFailDo, &here, &ctx()),
            Err(OpError::permanent("boom"))
        );
    }
}
