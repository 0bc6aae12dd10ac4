//! Human output: aligned tables and summaries built from the server's JSON. Pure functions of their
//! inputs (the clock is passed in), so every layout is unit-tested.

use osapi_common::timefmt::parse_micros;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write;

/// Columns padded to their widest cell, separated by two spaces; the last column is not padded.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header_row).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<pad$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A string field, or `-` when it is missing, null or empty.
fn text(v: &Value, key: &str) -> String {
    scalar(v.get(key))
}

fn scalar(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "-".to_string(),
    }
}

/// `2026-11-29T05:29:09.571171Z` -> `2026-11-29 05:29:09Z` (whole seconds, still UTC).
fn short_time(stamp: &str) -> String {
    match (stamp.get(..10), stamp.get(11..19)) {
        (Some(day), Some(clock)) if stamp.len() > 19 => format!("{day} {clock}Z"),
        _ => stamp.to_string(),
    }
}

/// `GET /job` -> ID, STATUS, OPERATION, TARGET, CREATED, then how many of how many.
pub fn job_list(body: &Value) -> String {
    let items = body
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|job| {
            let operation = job.get("operation").map(|o| text(o, "type"));
            vec![
                text(job, "id"),
                text(job, "status"),
                operation.unwrap_or_else(|| "-".to_string()),
                text(job, "target_hostname"),
                short_time(&text(job, "created")),
            ]
        })
        .collect();
    let mut out = render(&["ID", "STATUS", "OPERATION", "TARGET", "CREATED"], &rows);
    let total = body
        .get("total_items")
        .and_then(Value::as_u64)
        .unwrap_or(items.len() as u64);
    let _ = writeln!(out, "({} of {total} jobs)", items.len());
    out
}

/// How long ago `stamp` was, for humans: `4s ago`, `3m ago`, `2h ago`, `5d ago`.
fn age(stamp: &str, now_us: i64) -> String {
    let Some(then_us) = parse_micros(stamp) else {
        return stamp.to_string();
    };
    let secs = now_us.saturating_sub(then_us).max(0) / 1_000_000;
    match secs {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// `GET /job/workers` -> HOSTNAME, LABELS, RUNNING/MAX, LAST SEEN.
pub fn workers(body: &Value, now_us: i64) -> String {
    let list = body
        .get("workers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|w| {
            let labels = match w.get("labels").and_then(Value::as_object) {
                Some(map) if !map.is_empty() => map
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => "-".to_string(),
            };
            let conditions: Vec<&str> = w
                .get("conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|c| c.get("status").and_then(Value::as_bool) == Some(true))
                .filter_map(|c| c.get("type").and_then(Value::as_str))
                .collect();
            vec![
                text(w, "hostname"),
                labels,
                format!("{}/{}", text(w, "running"), text(w, "max_jobs")),
                age(&text(w, "last_seen"), now_us),
                match conditions.is_empty() {
                    true => "-".to_string(),
                    false => conditions.join(","),
                },
            ]
        })
        .collect();
    let mut out = render(
        &[
            "HOSTNAME",
            "LABELS",
            "RUNNING/MAX",
            "LAST SEEN",
            "CONDITIONS",
        ],
        &rows,
    );
    let _ = writeln!(out, "({} workers)", list.len());
    out
}

/// `GET /job/status` -> the total, counts per status (in lifecycle order) and per operation.
pub fn queue_status(body: &Value) -> String {
    let count_rows = |key: &str, order: &[&str]| -> Vec<Vec<String>> {
        let Some(map) = body.get(key).and_then(Value::as_object) else {
            return Vec::new();
        };
        let mut names: Vec<&String> = map.keys().collect();
        // Known names first in the given order, the rest alphabetically (a BTreeMap's order).
        names.sort_by_key(|n| order.iter().position(|o| o == n).unwrap_or(order.len()));
        names
            .into_iter()
            .map(|n| vec![n.clone(), scalar(map.get(n))])
            .collect()
    };
    let order = [
        "pending",
        "running",
        "completed",
        "failed",
        "partial_failure",
        "cancelled",
    ];
    let mut out = format!(
        "jobs: {}   dead letters: {}\n\n",
        text(body, "total_jobs"),
        text(body, "dlq_count")
    );
    out.push_str(&render(
        &["STATUS", "JOBS"],
        &count_rows("status_counts", &order),
    ));
    let operations = count_rows("operation_counts", &[]);
    if !operations.is_empty() {
        out.push('\n');
        out.push_str(&render(&["OPERATION", "JOBS"], &operations));
    }
    out
}

/// `GET /job/{id}` -> a summary, one line per host (status, error) and the results as pretty JSON.
pub fn job_detail(job: &Value) -> String {
    let mut out = String::new();
    let operation = job
        .get("operation")
        .map(|o| text(o, "type"))
        .unwrap_or_else(|| "-".into());
    let mut fields = vec![
        ("job", text(job, "id")),
        ("status", text(job, "status")),
        ("operation", operation),
        ("target", text(job, "target_hostname")),
        ("created", short_time(&text(job, "created"))),
        ("updated", short_time(&text(job, "updated_at"))),
    ];
    for (label, key) in [("retry of", "retry_of"), ("error", "error")] {
        if let Some(value) = job
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            fields.push((label, value.to_string()));
        }
    }
    for (label, value) in fields {
        let _ = writeln!(out, "{:<10} {value}", format!("{label}:"));
    }
    let hosts = host_rows(job);
    if !hosts.is_empty() {
        out.push('\n');
        out.push_str(&render(&["HOST", "STATUS", "ERROR"], &hosts));
    }
    for (title, value) in results(job) {
        let pretty = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
        let _ = write!(out, "\n{title}:\n{pretty}\n");
    }
    out
}

/// Every host the job concerns (expected, answered, or with a worker state), with status and error.
fn host_rows(job: &Value) -> Vec<Vec<String>> {
    let keys = |key: &str| -> Vec<String> {
        match job.get(key) {
            Some(Value::Object(map)) => map.keys().cloned().collect(),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut hosts: BTreeSet<String> = keys("expected_hosts").into_iter().collect();
    hosts.extend(keys("responses"));
    hosts.extend(keys("worker_states"));
    hosts
        .into_iter()
        .map(|host| {
            let response = job.get("responses").and_then(|r| r.get(&host));
            let state = job.get("worker_states").and_then(|s| s.get(&host));
            let pick = |key: &str| {
                [response, state]
                    .into_iter()
                    .flatten()
                    .map(|v| text(v, key))
                    .find(|s| s != "-")
                    .unwrap_or_else(|| "-".to_string())
            };
            let status = match pick("status").as_str() {
                "-" => "pending".to_string(),
                other => other.to_string(),
            };
            vec![host, status, pick("error")]
        })
        .collect()
}

/// The job's `result`, or else each host's non-null `data`, titled for printing.
fn results(job: &Value) -> Vec<(String, &Value)> {
    if let Some(result) = job.get("result").filter(|v| !v.is_null()) {
        return vec![("result".to_string(), result)];
    }
    let Some(responses) = job.get("responses").and_then(Value::as_object) else {
        return Vec::new();
    };
    responses
        .iter()
        .filter_map(|(host, r)| {
            r.get("data")
                .filter(|d| !d.is_null())
                .map(|d| (format!("result {host}"), d))
        })
        .collect()
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
