//! `test.*` operations: exercise the plumbing (is it alive, does data round-trip, do long jobs, retries and
//! failures behave) without touching the host.

use super::{parse, OpContext, OpError};
use serde::Deserialize;
use serde_json::{json, Number, Value};
use std::time::Duration;

/// Longest `test.sleep.do`, in seconds (the contract's bound).
const SLEEP_SECONDS_MAX: f64 = 300.0;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoData {}

/// `test.ping.do {}` -> `{pong: true}`.
pub fn ping(data: &Value, _ctx: &OpContext) -> Result<Value, OpError> {
    let NoData {} = parse("test.ping.do", data)?;
    Ok(json!({ "pong": true }))
}

/// `test.echo.do {...}` -> the same object.
pub fn echo(data: &Value, _ctx: &OpContext) -> Result<Value, OpError> {
    if !data.is_object() {
        return Err(OpError::permanent(
            "test.echo.do: data must be a JSON object",
        ));
    }
    Ok(data.clone())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepRequest {
    /// Kept as the JSON number given, so `1` comes back as `1`, not `1.0`.
    seconds: Number,
}

/// `test.sleep.do {seconds}` -> sleeps, then `{slept_seconds}`.
pub fn sleep(data: &Value, _ctx: &OpContext) -> Result<Value, OpError> {
    let request: SleepRequest = parse("test.sleep.do", data)?;
    let seconds = request.seconds.as_f64().unwrap_or(f64::NAN);
    if !(0.0..=SLEEP_SECONDS_MAX).contains(&seconds) {
        return Err(OpError::permanent(format!(
            "test.sleep.do: field `seconds` must be between 0 and {SLEEP_SECONDS_MAX}, got {}",
            request.seconds
        )));
    }
    if crate::cancel::sleep(Duration::from_secs_f64(seconds)) {
        return Err(OpError::permanent("test.sleep.do: cancelled"));
    }
    Ok(json!({ "slept_seconds": request.seconds }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailRequest {
    #[serde(default)]
    transient: bool,
    message: Option<String>,
    /// Fail only on these hosts; succeed with `{failed: false}` elsewhere.
    hosts: Option<Vec<String>>,
}

/// `test.fail.do {transient?, message?, hosts?}` -> fails as asked (transient ones are retried).
pub fn fail(data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    let request: FailRequest = parse("test.fail.do", data)?;
    if let Some(hosts) = &request.hosts {
        if !hosts.contains(&ctx.hostname) {
            return Ok(json!({ "failed": false }));
        }
    }
    let message = request
        .message
        .unwrap_or_else(|| "test.fail.do failed as asked".to_string());
    if request.transient {
        Err(OpError::transient(message))
    } else {
        Err(OpError::permanent(message))
    }
}
