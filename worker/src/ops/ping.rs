//! `network.ping.do`: runs the system `ping` (iputils or busybox) as a program with arguments, never through a
//! shell, and parses its summary. A target that answers nothing is a completed job with 100% loss; a name that
//! does not resolve is a permanent error naming it.

use super::command::{self, Output};
use super::dns::domain_name_error;
use super::{host, parse, OpContext, OpError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const OP: &str = "network.ping.do";
const COUNT_DEFAULT: u64 = 4;
const COUNT_MAX: u64 = 20;
const TIMEOUT_SECONDS_DEFAULT: u64 = 5;
const TIMEOUT_SECONDS_MAX: u64 = 30;
/// Slack on top of a run's expected length (one packet a second, then `timeout` for the last reply).
const RUN_SLACK_SECONDS: u64 = 5;
/// Where `ping` lives when it is not on PATH (a daemon's PATH may lack /usr/sbin, /bin).
const PING_FALLBACKS: &[&str] = &["/usr/bin/ping", "/bin/ping", "/usr/sbin/ping", "/sbin/ping"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PingRequest {
    target: String,
    count: Option<u64>,
    /// Seconds to wait for each reply.
    timeout: Option<u64>,
}

/// What a ping run measured. Round-trip times are None when nothing came back.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    sent: u64,
    received: u64,
    loss_percent: f64,
    rtt_ms: Option<[f64; 3]>,
}

/// `network.ping.do {target, count?=4, timeout?=5}` -> `{sent, received, loss_percent, min_ms, avg_ms, max_ms}`.
pub fn ping_do(data: &Value, _ctx: &OpContext) -> Result<Value, OpError> {
    let request: PingRequest = parse(OP, data)?;
    let count = bounded("count", request.count.unwrap_or(COUNT_DEFAULT), COUNT_MAX)?;
    let timeout = bounded(
        "timeout",
        request.timeout.unwrap_or(TIMEOUT_SECONDS_DEFAULT),
        TIMEOUT_SECONDS_MAX,
    )?;
    let target = request.target;
    if let Some(why) = target_error(&target) {
        return Err(OpError::permanent(format!("{OP}: field `target`: {why}")));
    }
    let program = command::find_program("ping", PING_FALLBACKS).ok_or_else(|| {
        OpError::permanent(format!(
            "{OP}: no `ping` program on this host (install iputils-ping)"
        ))
    })?;
    let args = ping_args(&program, count, timeout, &target);
    let limit = Duration::from_secs(count + timeout + RUN_SLACK_SECONDS);
    let output = command::run(&program, &args, limit)
        .map_err(|e| host::io_error(&format!("{OP}: running {}", program.display()), &e))?;
    let summary = interpret(&target, &output, limit)?;
    let rtt = |i: usize| summary.rtt_ms.map(|r| r[i]);
    Ok(json!({
        "sent": summary.sent,
        "received": summary.received,
        "loss_percent": summary.loss_percent,
        "min_ms": rtt(0),
        "avg_ms": rtt(1),
        "max_ms": rtt(2),
    }))
}

fn bounded(field: &str, value: u64, max: u64) -> Result<u64, OpError> {
    if (1..=max).contains(&value) {
        return Ok(value);
    }
    Err(OpError::permanent(format!(
        "{OP}: field `{field}` must be between 1 and {max}, got {value}"
    )))
}

/// Why `target` is neither an IP address nor a host name; None when it is fine.
fn target_error(target: &str) -> Option<String> {
    if target.parse::<IpAddr>().is_ok() {
        return None;
    }
    domain_name_error(target)
        .map(|why| format!("'{target}' is neither an IP address nor a host name: {why}"))
}

/// `-c COUNT -W TIMEOUT -n TARGET`; busybox has no `-n` (it never resolves replies' names anyway).
fn ping_args(program: &Path, count: u64, timeout: u64, target: &str) -> Vec<String> {
    let real: PathBuf = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
    let busybox = real.file_name().is_some_and(|name| name == "busybox");
    let mut args = vec![
        "-c".to_string(),
        count.to_string(),
        "-W".to_string(),
        timeout.to_string(),
    ];
    if !busybox {
        args.push("-n".to_string());
    }
    args.push(target.to_string());
    args
}

/// A ping run's outcome: its summary when it printed one (exit 0, or 1 when replies were missing), else an error.
fn interpret(target: &str, output: &Output, limit: Duration) -> Result<Summary, OpError> {
    if let Some(summary) = parse_summary(&output.stdout) {
        return Ok(summary);
    }
    let said = format!("{}\n{}", output.stderr, output.stdout);
    let has = |needles: &[&str]| needles.iter().any(|n| said.contains(n));
    if has(&["Temporary failure in name resolution"]) {
        return Err(OpError::transient(format!(
            "{OP}: cannot resolve '{target}' right now (temporary failure in name resolution)"
        )));
    }
    if has(&[
        "Name or service not known",
        "No address associated with hostname",
        "unknown host",
        "bad address",
    ]) {
        return Err(OpError::permanent(format!("{OP}: unknown host '{target}'")));
    }
    if has(&["Network is unreachable", "No route to host"]) {
        return Ok(Summary {
            sent: 0,
            received: 0,
            loss_percent: 100.0,
            rtt_ms: None,
        });
    }
    if output.timed_out {
        return Err(OpError::transient(format!(
            "{OP}: ping {target} did not finish within {limit:?}"
        )));
    }
    let detail = said
        .trim()
        .lines()
        .next()
        .unwrap_or("no output")
        .to_string();
    let code = output
        .code
        .map_or_else(|| "a signal".to_string(), |c| c.to_string());
    Err(OpError::permanent(format!(
        "{OP}: ping {target} failed (exit {code}): {detail}"
    )))
}

/// The summary lines of iputils or busybox ping:
/// `4 packets transmitted, 3 received, +1 errors, 25% packet loss, time 3005ms` (busybox: `3 packets received`)
/// and `rtt min/avg/max/mdev = 10.9/11.5/12.4/0.6 ms` (busybox: `round-trip min/avg/max = ...`).
fn parse_summary(stdout: &str) -> Option<Summary> {
    let line = stdout.lines().find(|l| l.contains("packets transmitted"))?;
    let (mut sent, mut received, mut loss) = (None, None, None);
    for part in line.split(',').map(str::trim) {
        let number = part.split([' ', '%']).next().unwrap_or("");
        if part.ends_with("packets transmitted") {
            sent = number.parse::<u64>().ok();
        } else if part.ends_with("received") {
            received = number.parse::<u64>().ok();
        } else if part.ends_with("packet loss") {
            loss = number.parse::<f64>().ok();
        }
    }
    let (sent, received) = (sent?, received?);
    let loss_percent = match loss {
        Some(loss) => loss,
        None if sent == 0 => 100.0,
        None => sent.saturating_sub(received) as f64 * 100.0 / sent as f64,
    };
    let rtt_ms = if received == 0 {
        None
    } else {
        stdout.lines().find_map(parse_rtt)
    };
    Some(Summary {
        sent,
        received,
        loss_percent,
        rtt_ms,
    })
}

/// `rtt min/avg/max/mdev = 0.037/0.180/0.324/0.143 ms` -> [0.037, 0.180, 0.324]
fn parse_rtt(line: &str) -> Option<[f64; 3]> {
    let (label, figures) = line.split_once('=')?;
    if !label.contains("min/avg/max") {
        return None;
    }
    let figures = figures.trim().trim_end_matches("ms").trim();
    let mut numbers = figures.split('/').map(|n| n.trim().parse::<f64>());
    match (numbers.next(), numbers.next(), numbers.next()) {
        (Some(Ok(min)), Some(Ok(avg)), Some(Ok(max))) => Some([min, avg, max]),
        _ => None,
    }
}

#[cfg(test)]
#[path = "ping_tests.rs"]
mod tests;
