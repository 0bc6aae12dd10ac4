//! `osapi job run`'s wait: the job is created by a `POST /job?wait=` the server holds until the job
//! is terminal (one request for a quick job), then, if it is not, `GET /job/{id}?wait=` is long-polled
//! until it is or the time limit passes; a spinner on stderr when stderr is a terminal.

use crate::client::{encode, Client};
use crate::error::CliError;
use crate::output::Output;
use crate::table;
use osapi_common::duration::format_duration;
use osapi_common::status::JobStatus;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest `?wait=` asked of the server in one request (its own maximum is 60 s).
const HOLD_MAX: Duration = Duration::from_secs(30);
/// Extra wait past the job's timeout: the server turns silent hosts into `no response` at the
/// deadline (checked about once a second), and that verdict should be seen rather than a timeout.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);
const SPINNER_TICK: Duration = Duration::from_millis(100);

/// Creates a job with `create` (given how long the server may hold the answer; returns the job's id
/// and the answer's body) and waits for it, for at most `limit` (+ grace) from `started`. Exit
/// code: 0 completed, 1 failed or partial_failure, 3 still unfinished when time ran out. A server
/// that answers the creation at once (one without `POST /job?wait=`) is waited for the same way.
pub fn run(
    client: &Client,
    started: Instant,
    limit: Duration,
    json: bool,
    create: impl FnOnce(Duration) -> Result<(String, String), CliError>,
) -> Result<Output, CliError> {
    let hold = (limit + DEADLINE_GRACE)
        .min(HOLD_MAX)
        .max(Duration::from_millis(1));
    let spinner = Spinner::start_if_terminal("the new job", started);
    let (id, body) = create(hold)?;
    drop(spinner);
    match status_of(&body) {
        Some(status) if status.is_terminal() => finished(&id, status, body, json),
        _ => until_done(client, &id, started, limit, json, Some(body)),
    }
}

/// Waits for job `id`, created at `started`, for at most `limit` (+ grace); `last` is its detail as
/// last seen. Exit code as [`run`]'s.
fn until_done(
    client: &Client,
    id: &str,
    started: Instant,
    limit: Duration,
    json: bool,
    mut last: Option<String>,
) -> Result<Output, CliError> {
    let deadline = started + limit + DEADLINE_GRACE;
    let _spinner = Spinner::start_if_terminal(&format!("job {id}"), started);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            let body = last.take().unwrap_or_default();
            let status = status_of(&body).map_or("unknown".to_string(), |s| s.to_string());
            let error = CliError::Unreachable(format!(
                "job {id} is still {status} after {}s (--timeout {}; see: osapi job get {id})",
                started.elapsed().as_secs(),
                format_duration(limit)
            ));
            return Ok(Output::with_error(render(body, json)?, &error));
        }
        let hold = remaining.min(HOLD_MAX).max(Duration::from_millis(1));
        let path = format!("/job/{}?wait={}ms", encode(id), hold.as_millis());
        let body = client.get(&path, hold)?.body;
        match status_of(&body) {
            Some(status) if status.is_terminal() => return finished(id, status, body, json),
            Some(_) => last = Some(body),
            None => {
                return Err(CliError::Failed(format!(
                    "the server's answer for job {id} has no valid status: {body}"
                )))
            }
        }
    }
}

fn finished(id: &str, status: JobStatus, body: String, json: bool) -> Result<Output, CliError> {
    let text = render(body, json)?;
    if status == JobStatus::Completed {
        return Ok(Output::text(text));
    }
    Ok(Output::with_error(
        text,
        &CliError::Failed(format!("job {id} {status}")),
    ))
}

fn status_of(body: &str) -> Option<JobStatus> {
    let value: Value = serde_json::from_str(body).ok()?;
    value.get("status")?.as_str()?.parse().ok()
}

fn render(body: String, json: bool) -> Result<String, CliError> {
    if json || body.is_empty() {
        return Ok(body);
    }
    let value: Value = serde_json::from_str(&body)
        .map_err(|e| CliError::Failed(format!("the server's answer is not JSON: {e}")))?;
    Ok(table::job_detail(&value))
}

/// `| waiting for job ID  12.3s` redrawn on stderr; cleared when dropped.
struct Spinner {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Spinner {
    /// `what`: "job ID", or "the new job" while it is being created.
    fn start_if_terminal(what: &str, started: Instant) -> Option<Spinner> {
        if !stderr_is_terminal() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let label = format!("waiting for {what}");
        let thread = std::thread::spawn(move || {
            let frames = ['|', '/', '-', '\\'];
            let mut tick = 0usize;
            while !flag.load(Ordering::Relaxed) {
                let elapsed = started.elapsed().as_secs_f64();
                let frame = frames[tick % frames.len()];
                let _ = write!(std::io::stderr(), "\r{frame} {label}  {elapsed:.1}s ");
                tick = tick.wrapping_add(1);
                std::thread::sleep(SPINNER_TICK);
            }
            // Erase the line so the result starts on a clean one.
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        });
        Some(Spinner {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
