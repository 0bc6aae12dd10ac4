//! `osapi job ...`: one function per command, each making its requests through [`Client`] and
//! returning what to print (human tables by default, the server's JSON as is with `--json`).

use crate::args::DEFAULT_JOB_TIMEOUT;
use crate::client::{encode, Client};
use crate::command::{DataSource, JobCommand, Submit};
use crate::error::CliError;
use crate::output::Output;
use crate::{table, wait};
use osapi_common::duration::format_duration;
use serde_json::{json, Map, Value};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Largest `--json-file` read; the server's own body limit is far lower by default (1 MiB).
const DATA_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Runs one job command; `json` chooses raw server JSON over tables.
pub fn execute(client: &Client, command: &JobCommand, json: bool) -> Result<Output, CliError> {
    match command {
        JobCommand::Add(submit) => {
            let reply = create(client, submit, Duration::ZERO)?;
            if json {
                return Ok(Output::text(reply.body));
            }
            Ok(Output::text(job_id(&reply.json()?)?))
        }
        JobCommand::Run(submit) => {
            let started = std::time::Instant::now();
            let limit = submit.timeout.unwrap_or(DEFAULT_JOB_TIMEOUT);
            wait::run(client, started, limit, json, |hold| {
                let reply = create(client, submit, hold)?;
                Ok((job_id(&reply.json()?)?, reply.body))
            })
        }
        JobCommand::Get { id, wait } => {
            let mut path = format!("/job/{}", encode(id));
            let hold = wait.unwrap_or(Duration::ZERO);
            if let Some(wait) = wait {
                path.push_str(&format!("?wait={}", format_duration(*wait)));
            }
            let reply = client.get(&path, hold)?;
            human_or_raw(reply.body, json, |v| table::job_detail(&v))
        }
        JobCommand::List {
            status,
            limit,
            offset,
        } => {
            let mut query = Vec::new();
            if let Some(status) = status {
                query.push(format!("status={}", encode(status)));
            }
            if let Some(limit) = limit {
                query.push(format!("limit={limit}"));
            }
            if let Some(offset) = offset {
                query.push(format!("offset={offset}"));
            }
            let path = match query.is_empty() {
                true => "/job".to_string(),
                false => format!("/job?{}", query.join("&")),
            };
            let reply = client.get(&path, Duration::ZERO)?;
            human_or_raw(reply.body, json, |v| table::job_list(&v))
        }
        JobCommand::Delete { id } => {
            client.delete(&format!("/job/{}", encode(id)))?;
            // 204 has no body: nothing to print for scripts, a confirmation for people.
            Ok(Output::text(if json {
                String::new()
            } else {
                format!("deleted {id}")
            }))
        }
        JobCommand::Retry {
            id,
            target,
            idempotency_key,
        } => {
            let body = target.as_ref().map(|t| json!({ "target_hostname": t }));
            let path = format!("/job/{}/retry", encode(id));
            let reply = client.post(&path, body.as_ref(), idempotency_key.as_deref())?;
            if json {
                return Ok(Output::text(reply.body));
            }
            Ok(Output::text(job_id(&reply.json()?)?))
        }
        JobCommand::Cancel { id } => {
            let reply = client.post(&format!("/job/{}/cancel", encode(id)), None, None)?;
            if json {
                return Ok(Output::text(reply.body));
            }
            let job = reply.json()?;
            let status = job.get("status").and_then(Value::as_str).unwrap_or("?");
            Ok(Output::text(format!("cancelled {id} (now {status})")))
        }
        JobCommand::Drain { hostname, drain } => {
            let verb = if *drain { "drain" } else { "undrain" };
            let path = format!("/job/workers/{}/{verb}", encode(hostname));
            let reply = client.post(&path, None, None)?;
            if json {
                return Ok(Output::text(reply.body));
            }
            let answer = reply.json()?;
            let state = answer.get("state").and_then(Value::as_str).unwrap_or("?");
            Ok(Output::text(format!("{hostname}: {state}")))
        }
        JobCommand::Status => {
            let reply = client.get("/job/status", Duration::ZERO)?;
            human_or_raw(reply.body, json, |v| table::queue_status(&v))
        }
        JobCommand::Workers => {
            let reply = client.get("/job/workers", Duration::ZERO)?;
            let now_us = now_us();
            human_or_raw(reply.body, json, |v| table::workers(&v, now_us))
        }
    }
}

fn human_or_raw(
    body: String,
    json: bool,
    render: impl Fn(Value) -> String,
) -> Result<Output, CliError> {
    if json {
        return Ok(Output::text(body));
    }
    let value: Value = serde_json::from_str(&body)
        .map_err(|e| CliError::Failed(format!("the server's answer is not JSON: {e}")))?;
    Ok(Output::text(render(value)))
}

/// `POST /job` with the operation, target and timeout of `submit`.
/// `POST /job`; with a `hold`, `POST /job?wait=` (the server answers once the job is done, or after
/// `hold`).
fn create(
    client: &Client,
    submit: &Submit,
    hold: Duration,
) -> Result<crate::client::Reply, CliError> {
    let body = create_body(submit, read_data(&submit.data)?);
    let key = submit.idempotency_key.as_deref();
    if hold.is_zero() {
        return client.post("/job", Some(&body), key);
    }
    let path = format!("/job?wait={}ms", hold.as_millis());
    client.post_held(&path, Some(&body), key, hold)
}

/// The `POST /job` body: the target and timeout only when given (the server defaults them).
pub fn create_body(submit: &Submit, data: Value) -> Value {
    let mut body = Map::new();
    body.insert(
        "operation".into(),
        json!({ "type": submit.operation, "data": data }),
    );
    if let Some(target) = &submit.target {
        body.insert("target_hostname".into(), Value::String(target.clone()));
    }
    if let Some(timeout) = submit.timeout {
        body.insert("timeout".into(), Value::String(format_duration(timeout)));
    }
    Value::Object(body)
}

/// The operation data: `{}`, the `--data` text, or the `--json-file` contents (`-` = stdin), as JSON.
pub fn read_data(source: &DataSource) -> Result<Value, CliError> {
    let (text, origin) = match source {
        DataSource::Empty => return Ok(json!({})),
        DataSource::Inline(text) => (text.clone(), "--data".to_string()),
        DataSource::File(path) => (read_file(path)?, format!("--json-file {}", path.display())),
    };
    serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{origin}: not valid JSON: {e}")))
}

fn read_file(path: &Path) -> Result<String, CliError> {
    let mut text = String::new();
    let result = if path == Path::new("-") {
        std::io::stdin()
            .take(DATA_FILE_BYTES_MAX)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(DATA_FILE_BYTES_MAX).read_to_string(&mut text))
    };
    result.map_err(|e| CliError::Usage(format!("--json-file {}: {e}", path.display())))?;
    Ok(text)
}

/// The `job_id` of a 201 answer.
fn job_id(body: &Value) -> Result<String, CliError> {
    body.get("job_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| CliError::Failed(format!("the server's answer has no job_id: {body}")))
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(target: Option<&str>, timeout: Option<u64>) -> Submit {
        Submit {
            operation: "test.echo.do".into(),
            target: target.map(String::from),
            data: DataSource::Empty,
            timeout: timeout.map(Duration::from_secs),
            idempotency_key: None,
        }
    }

    #[test]
    fn create_body_sends_only_what_was_given() {
        let bare = create_body(&submit(None, None), json!({}));
        assert_eq!(
            bare,
            json!({"operation": {"type": "test.echo.do", "data": {}}})
        );
        let full = create_body(&submit(Some("group:web.dev"), Some(120)), json!({"a": 1}));
        let want = json!({
            "operation": {"type": "test.echo.do", "data": {"a": 1}},
            "target_hostname": "group:web.dev",
            "timeout": "2m",
        });
        assert_eq!(full, want);
    }

    #[test]
    fn data_is_parsed_and_bad_json_is_a_usage_error() {
        assert_eq!(read_data(&DataSource::Empty).ok(), Some(json!({})));
        let inline = DataSource::Inline(r#"{"seconds": 2}"#.into());
        assert_eq!(read_data(&inline).ok(), Some(json!({"seconds": 2})));
        let bad = read_data(&DataSource::Inline("{seconds: 2}".into())).err();
        assert!(
            matches!(&bad, Some(CliError::Usage(m)) if m.starts_with("--data")),
            "{bad:?}"
        );
        let missing = read_data(&DataSource::File("/nonexistent/osapi.json".into())).err();
        assert!(
            matches!(&missing, Some(CliError::Usage(m)) if m.contains("/nonexistent")),
            "{missing:?}"
        );
    }
}
