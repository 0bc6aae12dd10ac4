//! `osapi audit list|export`: the API's audit trail (`GET /audit`, permission `audit:read`), as a table,
//! as the server's JSON, or exported whole to a JSON Lines file, oldest entry first.

use crate::client::Client;
use crate::command::AuditCommand;
use crate::error::CliError;
use crate::output::Output;
use crate::table;
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Entries per request when exporting (the server's maximum page).
const EXPORT_PAGE: u64 = 1000;
/// Pages an export reads at most: a bound on the loop, far above 30 days of a busy API.
const EXPORT_PAGES_MAX: u64 = 10_000;

pub fn execute(client: &Client, cmd: &AuditCommand, json: bool) -> Result<Output, CliError> {
    match cmd {
        AuditCommand::List { limit, offset } => {
            let body = page(client, limit.unwrap_or(20), offset.unwrap_or(0))?;
            if json {
                return Ok(Output::text(body.to_string()));
            }
            Ok(Output::text(render(&body)))
        }
        AuditCommand::Export { out } => export(client, out),
    }
}

fn page(client: &Client, limit: u64, offset: u64) -> Result<Value, CliError> {
    let path = format!("/audit?limit={limit}&offset={offset}");
    client.get(&path, Duration::ZERO)?.json()
}

fn items(body: &Value) -> &[Value] {
    body["items"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn render(body: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = items(body)
        .iter()
        .map(|e| {
            vec![
                text(&e["timestamp"]),
                text(&e["user"]),
                format!("{} {}", text(&e["method"]), text(&e["path"])),
                text(&e["code"]),
                text(&e["source"]),
                text(&e["job_id"]),
            ]
        })
        .collect();
    let total = body["total_items"].as_u64().unwrap_or(0);
    format!(
        "{}{} of {total} entries",
        table::render(&["TIME", "USER", "REQUEST", "CODE", "SOURCE", "JOB"], &rows),
        rows.len()
    )
}

/// Every entry, oldest first, one JSON object per line. Entries that arrive while exporting shift the
/// pages; ids seen twice are written once. The file must not exist yet.
fn export(client: &Client, out: &Path) -> Result<Output, CliError> {
    let mut seen = HashSet::new();
    let mut all = Vec::new();
    let mut offset = 0;
    for _ in 0..EXPORT_PAGES_MAX {
        let body = page(client, EXPORT_PAGE, offset)?;
        let got = items(&body);
        for entry in got {
            let id = entry["id"].as_str().unwrap_or_default().to_string();
            if seen.insert(id) {
                all.push(entry.clone());
            }
        }
        offset += EXPORT_PAGE;
        if (got.len() as u64) < EXPORT_PAGE || offset >= body["total_items"].as_u64().unwrap_or(0) {
            break;
        }
    }
    all.reverse();
    let fail = |e: std::io::Error| CliError::Failed(format!("cannot write {}: {e}", out.display()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(fail)?;
    let mut writer = std::io::BufWriter::new(file);
    for entry in &all {
        writeln!(writer, "{entry}").map_err(fail)?;
    }
    writer.flush().map_err(fail)?;
    Ok(Output::text(format!(
        "wrote {} audit entries to {}",
        all.len(),
        out.display()
    )))
}
