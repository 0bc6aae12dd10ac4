//! `system.*.get` operations: facts about the host, read from host_root's /proc and /etc (and uname(2)).
//! Each fact has a pure parser (unit-tested on fixture files) and an operation that reads the file and calls it.

use super::host::read_host_file;
use super::{disk, host, parse, OpContext, OpError};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Operations that take no data accept only `{}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoData {}

/// `system.hostname.get {}` -> `{hostname}`: the name this worker answers to.
pub fn hostname_get(data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    let NoData {} = parse("system.hostname.get", data)?;
    Ok(json!({ "hostname": ctx.hostname }))
}

/// `system.uptime.get {}` -> `{uptime_seconds}` (fractional, as /proc/uptime has it).
pub fn uptime_get(data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    let NoData {} = parse("system.uptime.get", data)?;
    uptime(ctx)
}

/// `system.os.get {}` -> `{distribution, version, kernel, arch}`: os-release's ID and VERSION_ID, uname's release
/// and machine.
pub fn os_get(data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    let NoData {} = parse("system.os.get", data)?;
    os(ctx)
}

/// `system.load.get {}` -> `{load1, load5, load15}`.
pub fn load_get(data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    let NoData {} = parse("system.load.get", data)?;
    load(ctx)
}

/// `system.memory.get {}` -> `{total, available, free, used}` in bytes; `used` = total - available.
pub fn memory_get(data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    let NoData {} = parse("system.memory.get", data)?;
    memory(ctx)
}

/// `system.disk.get {}` -> `[{mount, total, used, free}]` in bytes, real filesystems only.
pub fn disk_get(data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    let NoData {} = parse("system.disk.get", data)?;
    disk::disks(ctx)
}

/// One part of `system.status.get`: what the operation of that name would answer.
type Part = fn(&OpContext) -> Result<Value, OpError>;

/// `system.status.get {}` -> `{hostname, uptime, os, load, memory, disk}`: each part is that operation's result,
/// or `{"error": "..."}` when that part failed; the job itself completes.
pub fn status_get(data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    let NoData {} = parse("system.status.get", data)?;
    let parts: [(&str, Part); 5] = [
        ("uptime", uptime),
        ("os", os),
        ("load", load),
        ("memory", memory),
        ("disk", disk::disks),
    ];
    let mut status = Map::new();
    status.insert("hostname".into(), json!(ctx.hostname));
    for (name, part) in parts {
        let value = part(ctx).unwrap_or_else(|e| json!({ "error": e.message }));
        status.insert(name.into(), value);
    }
    Ok(Value::Object(status))
}

fn uptime(ctx: &OpContext) -> Result<Value, OpError> {
    let text = read_host_file(ctx, "/proc/uptime")?;
    let seconds = parse_uptime(&text).map_err(|e| unexpected("/proc/uptime", &e))?;
    Ok(json!({ "uptime_seconds": seconds }))
}

fn os(ctx: &OpContext) -> Result<Value, OpError> {
    let fields = os_release(ctx)?;
    let (kernel, arch) = uname()?;
    let field = |keys: &[&str]| keys.iter().find_map(|k| fields.get(*k).cloned());
    Ok(json!({
        "distribution": field(&["ID", "NAME"]).unwrap_or_else(|| "linux".into()),
        "version": field(&["VERSION_ID", "VERSION_CODENAME", "BUILD_ID"]),
        "kernel": kernel,
        "arch": arch,
    }))
}

fn load(ctx: &OpContext) -> Result<Value, OpError> {
    let text = read_host_file(ctx, "/proc/loadavg")?;
    let [load1, load5, load15] =
        parse_loadavg(&text).map_err(|e| unexpected("/proc/loadavg", &e))?;
    Ok(json!({ "load1": load1, "load5": load5, "load15": load15 }))
}

fn memory(ctx: &OpContext) -> Result<Value, OpError> {
    let text = read_host_file(ctx, "/proc/meminfo")?;
    let m = parse_meminfo(&text).map_err(|e| unexpected("/proc/meminfo", &e))?;
    Ok(json!({ "total": m.total, "available": m.available, "free": m.free, "used": m.used }))
}

fn unexpected(path: &str, detail: &str) -> OpError {
    OpError::permanent(format!("{path}: unexpected content: {detail}"))
}

/// `350735.47 1387282.07` -> 350735.47
fn parse_uptime(text: &str) -> Result<f64, String> {
    let first = text.split_whitespace().next().unwrap_or("");
    match first.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(seconds),
        _ => Err(format!("'{first}' is no number of seconds")),
    }
}

/// `0.52 0.58 0.59 1/123 4567` -> [0.52, 0.58, 0.59]
fn parse_loadavg(text: &str) -> Result<[f64; 3], String> {
    let mut numbers = text.split_whitespace().map(|s| s.parse::<f64>());
    let mut next = || match numbers.next() {
        Some(Ok(n)) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(format!(
            "'{}' does not start with three load averages",
            text.trim()
        )),
    };
    Ok([next()?, next()?, next()?])
}

/// Memory figures in bytes.
#[derive(Debug, PartialEq, Eq)]
struct Memory {
    total: u64,
    available: u64,
    free: u64,
    used: u64,
}

/// /proc/meminfo (`MemTotal:  16318412 kB` ...) -> bytes. Kernels before 3.14 lack MemAvailable: then
/// free + buffers + cached stands in for it.
fn parse_meminfo(text: &str) -> Result<Memory, String> {
    let mut bytes: HashMap<&str, u64> = HashMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let Some(Ok(value)) = words.next().map(str::parse::<u64>) else {
            continue;
        };
        let unit = match words.next() {
            Some("kB") => 1024,
            None => 1,
            Some(_) => continue,
        };
        bytes.insert(name.trim(), value.saturating_mul(unit));
    }
    let get = |name: &str| {
        bytes
            .get(name)
            .copied()
            .ok_or_else(|| format!("no {name} line"))
    };
    let total = get("MemTotal")?;
    let free = get("MemFree")?;
    let available = get("MemAvailable").unwrap_or_else(|_| {
        let cache = get("Buffers").unwrap_or(0) + get("Cached").unwrap_or(0);
        free.saturating_add(cache)
    });
    let available = available.min(total);
    Ok(Memory {
        total,
        available,
        free,
        used: total - available,
    })
}

/// os-release's fields, from /etc/os-release or else /usr/lib/os-release (links followed inside host_root).
fn os_release(ctx: &OpContext) -> Result<HashMap<String, String>, OpError> {
    let mut first_error = None;
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        let found = host::resolve_in_root(ctx, path).and_then(|p| read_host_file(ctx, &p));
        match found {
            Ok(text) => return Ok(parse_os_release(&text)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| OpError::permanent("no os-release file")))
}

/// `KEY=value` lines; values may be in double or single quotes, with `\"`, `\\`, `` \` ``, `\$` escapes.
fn parse_os_release(text: &str) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            unescape(inner)
        } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            inner.to_string()
        } else {
            raw.to_string()
        };
        fields.insert(key.trim().to_string(), value);
    }
    fields
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// (release, machine) from uname(2), e.g. ("6.1.0-18-amd64", "x86_64").
fn uname() -> Result<(String, String), OpError> {
    // SAFETY: utsname is plain C data (arrays of c_char); all zeroes is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname(2) fills the struct we own and NUL-terminates each field.
    let rc = unsafe { libc::uname(&mut uts) };
    if rc != 0 {
        return Err(host::io_error("uname", &std::io::Error::last_os_error()));
    }
    let field = |chars: &[libc::c_char]| {
        let bytes: Vec<u8> = chars
            .iter()
            .map(|&c| u8::from_ne_bytes(c.to_ne_bytes()))
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok((field(&uts.release), field(&uts.machine)))
}

#[cfg(test)]
#[path = "system_tests.rs"]
mod tests;
