//! `system.reboot.execute` and `system.shutdown.execute`: refused unless the worker's config lists them in
//! `job.worker.allow_operations`; then scheduled with `shutdown -r|-h +MINUTES [MESSAGE]` (a program with
//! arguments, never a shell; `--` before the message, so a message like `-P` is a message, not an option
//! turning a reboot into a power-off). The delay is at least one minute, so the job's result is recorded (and the users
//! logged in are warned) before the host goes down.

use super::command;
use super::host::{self, is_real_root};
use super::{parse, OpContext, OpError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// The longest delay one may ask for: a day.
const DELAY_SECONDS_MAX: u64 = 24 * 60 * 60;
/// The longest wall message.
const MESSAGE_CHARS_MAX: usize = 256;
/// `shutdown` only schedules and returns; it should never take long.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);
const SHUTDOWN_FALLBACKS: &[&str] = &["/usr/sbin/shutdown", "/sbin/shutdown"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Reboot,
    PowerOff,
}

impl Action {
    fn op(self) -> &'static str {
        match self {
            Action::Reboot => "system.reboot.execute",
            Action::PowerOff => "system.shutdown.execute",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerRequest {
    delay_seconds: Option<u64>,
    message: Option<String>,
}

/// `system.reboot.execute {delay_seconds?, message?}` -> `{action: "reboot", delay_seconds}`.
pub fn reboot_execute(data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    power(Action::Reboot, data, ctx)
}

/// `system.shutdown.execute {delay_seconds?, message?}` -> `{action: "shutdown", delay_seconds}`.
pub fn shutdown_execute(data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    power(Action::PowerOff, data, ctx)
}

fn power(action: Action, data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    let op = action.op();
    let request: PowerRequest = parse(op, data)?;
    let delay_seconds = request.delay_seconds.unwrap_or(0);
    if delay_seconds > DELAY_SECONDS_MAX {
        return Err(OpError::permanent(format!(
            "{op}: field `delay_seconds` must be at most {DELAY_SECONDS_MAX}, got {delay_seconds}"
        )));
    }
    let message = request.message.unwrap_or_default();
    if message.chars().count() > MESSAGE_CHARS_MAX || message.chars().any(char::is_control) {
        return Err(OpError::permanent(format!(
            "{op}: field `message` must be at most {MESSAGE_CHARS_MAX} characters, without control characters"
        )));
    }
    if !ctx.allow_operations.iter().any(|allowed| allowed == op) {
        return Err(OpError::permanent(format!(
            "{op} is refused: this worker's config does not allow it (add it to job.worker.allow_operations)"
        )));
    }
    if !is_real_root(ctx) {
        return Err(OpError::permanent(format!(
            "{op} is refused: host_root is {}, not this machine's /",
            ctx.host_root.display()
        )));
    }
    let minutes = delay_minutes(delay_seconds);
    let program = command::find_program("shutdown", SHUTDOWN_FALLBACKS)
        .ok_or_else(|| OpError::permanent(format!("{op}: no `shutdown` program on this host")))?;
    schedule(&program, action, minutes, &message)
}

/// Runs `program` (shutdown(8)) to schedule `action` in `minutes`, with the wall `message`.
fn schedule(
    program: &std::path::Path,
    action: Action,
    minutes: u64,
    message: &str,
) -> Result<Value, OpError> {
    let op = action.op();
    let args = shutdown_args(action, minutes, message);
    let out = command::run(program, &args, SHUTDOWN_DEADLINE)
        .map_err(|e| host::io_error(&format!("{op}: running {}", program.display()), &e))?;
    if out.timed_out {
        return Err(OpError::transient(format!(
            "{op}: shutdown did not return within {SHUTDOWN_DEADLINE:?}"
        )));
    }
    if out.code != Some(0) {
        let detail = out.first_error_line();
        return Err(OpError::permanent(format!(
            "{op}: shutdown failed: {detail}"
        )));
    }
    log::warn!("{op}: {} scheduled in {minutes} min", action_name(action));
    Ok(json!({ "action": action_name(action), "delay_seconds": minutes * 60 }))
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Reboot => "reboot",
        Action::PowerOff => "shutdown",
    }
}

/// shutdown(8) counts in whole minutes: round up, and never less than one.
fn delay_minutes(delay_seconds: u64) -> u64 {
    delay_seconds.div_ceil(60).max(1)
}

fn shutdown_args(action: Action, minutes: u64, message: &str) -> Vec<String> {
    let flag = match action {
        Action::Reboot => "-r",
        Action::PowerOff => "-h",
    };
    let mut args = vec![flag.to_string(), format!("+{minutes}")];
    if !message.is_empty() {
        // Everything after `--` is an operand: "-P" stays the wall message, never the power-off flag.
        args.push("--".to_string());
        args.push(message.to_string());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tests_support::{ctx_at, TempRoot};
    use crate::ops::ErrorKind;
    use std::path::Path;

    #[test]
    fn refused_unless_allowed_and_never_on_a_fixture_root() {
        let mut ctx = ctx_at(Path::new("/"));
        for (run, op) in [
            (
                reboot_execute as fn(&Value, &OpContext) -> _,
                "system.reboot.execute",
            ),
            (shutdown_execute, "system.shutdown.execute"),
        ] {
            let err = run(&json!({"delay_seconds": 60}), &ctx).err();
            assert!(
                err.as_ref().is_some_and(|e| e.kind == ErrorKind::Permanent
                    && e.message.contains(op)
                    && e.message.contains("job.worker.allow_operations")),
                "{err:?}"
            );
        }
        // Allowed, but host_root is a fixture tree: still refused, this machine keeps running.
        ctx.host_root = "/tmp/fixture".into();
        ctx.allow_operations = vec!["system.reboot.execute".into()];
        let err = reboot_execute(&json!({}), &ctx).err();
        assert!(err.is_some_and(|e| e.message.contains("host_root is /tmp/fixture")));
        let other = shutdown_execute(&json!({}), &ctx).err();
        assert!(other.is_some_and(|e| e.message.contains("allow_operations")));
    }

    #[test]
    fn bad_data_names_the_field() {
        let ctx = ctx_at(Path::new("/"));
        let cases = [
            (json!({"delay_seconds": "soon"}), "field `delay_seconds`"),
            (
                json!({"delay_seconds": 86401}),
                "field `delay_seconds` must be at most 86400",
            ),
            (json!({"message": "a\nb"}), "field `message`"),
            (json!({"force": true}), "unknown field `force`"),
        ];
        for (data, want) in cases {
            let err = reboot_execute(&data, &ctx).err();
            assert!(
                err.as_ref().is_some_and(|e| e.message.contains(want)),
                "{data}: {err:?}"
            );
        }
    }

    #[test]
    fn command_lines() {
        assert_eq!(delay_minutes(0), 1);
        assert_eq!(delay_minutes(60), 1);
        assert_eq!(delay_minutes(61), 2);
        assert_eq!(
            shutdown_args(Action::Reboot, 2, "kernel update"),
            ["-r", "+2", "--", "kernel update"]
        );
        assert_eq!(shutdown_args(Action::PowerOff, 1, ""), ["-h", "+1"]);
    }

    /// A fake `shutdown` that records the arguments it got, one per line, and exits `code`.
    fn fake_shutdown(root: &TempRoot, code: i32) -> std::path::PathBuf {
        let log = root.path.join("argv");
        let script = format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> '{}'; done\necho 'fake refusal' >&2\nexit {code}\n",
            log.display()
        );
        root.write("shutdown", &script);
        let program = root.path.join("shutdown");
        let mut perms = std::fs::metadata(&program).expect("fake").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&program, perms).expect("chmod fake shutdown");
        program
    }

    #[test]
    fn a_message_like_an_option_reaches_shutdown_as_the_message() {
        let root = TempRoot::new("fake-shutdown");
        let program = fake_shutdown(&root, 0);
        let got = schedule(&program, Action::Reboot, 1, "-P");
        assert_eq!(
            got.ok(),
            Some(json!({"action": "reboot", "delay_seconds": 60}))
        );
        assert_eq!(root.read("argv"), "-r\n+1\n--\n-P\n");

        let root = TempRoot::new("fake-shutdown-fails");
        let program = fake_shutdown(&root, 1);
        let err = schedule(&program, Action::PowerOff, 2, "").err();
        assert!(err.is_some_and(|e| e.kind == ErrorKind::Permanent
            && e.message.contains("shutdown failed: fake refusal")),);
        assert_eq!(root.read("argv"), "-h\n+2\n");
    }
}
