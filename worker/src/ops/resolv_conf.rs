//! resolv.conf as text: parsing it (and resolvectl's answers), comparing settings, rendering a new file that keeps
//! the old one's comments and options, and replacing a file atomically with a `.bak` of the previous content.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Mode of a new resolv.conf when there was none before.
const NEW_FILE_MODE: u32 = 0o644;
/// The marker written above the lines osapi sets.
const HEADER: &str = "# nameserver and search lines set by osapi (network.dns.update)";

/// One update at a time per worker: two jobs racing would interleave their backup and rename.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// A resolver's settings: servers in order of preference, search domains in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolv {
    pub servers: Vec<String>,
    pub search: Vec<String>,
}

/// `nameserver ADDR` lines in order; the last `search` or `domain` line wins (as in glibc).
pub fn parse(text: &str) -> Resolv {
    let mut resolv = Resolv::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => resolv.servers.extend(words.next().map(String::from)),
            Some("search") => resolv.search = words.map(String::from).collect(),
            Some("domain") => resolv.search = words.next().map(String::from).into_iter().collect(),
            _ => {}
        }
    }
    resolv
}

/// The values after the link in resolvectl's answer: `Link 2 (eth0): 10.0.0.1 fe80::1%2#dns.lan` ->
/// `[10.0.0.1, fe80::1%2]` (a `#server-name` suffix dropped).
pub fn resolvectl_values(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.split_once("): ").or_else(|| line.split_once(": ")))
        .flat_map(|(_, values)| values.split_whitespace())
        .map(|v| v.split('#').next().unwrap_or(v).to_string())
        .collect()
}

/// `Example.ORG.` -> `example.org`
pub fn normalize_domain(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// An address in canonical form (`2001:DB8::0:1` -> `2001:db8::1`), its `%zone` kept; else the text as given.
fn normalize_server(server: &str) -> String {
    let (addr, zone) = match server.split_once('%') {
        Some((addr, zone)) => (addr, Some(zone)),
        None => (server, None),
    };
    let canonical = addr
        .parse::<IpAddr>()
        .map_or_else(|_| addr.to_string(), |ip| ip.to_string());
    match zone {
        Some(zone) => format!("{canonical}%{zone}"),
        None => canonical,
    }
}

/// Whether two settings mean the same: servers in the same order and the same search domains, ignoring
/// address spelling, letter case and trailing dots. Routing-only domains (`~example.org`) are not search domains.
pub fn same(current: &Resolv, wanted: &Resolv) -> bool {
    let servers = |r: &Resolv| {
        r.servers
            .iter()
            .map(|s| normalize_server(s))
            .collect::<Vec<_>>()
    };
    let search = |r: &Resolv| {
        r.search
            .iter()
            .filter(|d| !d.starts_with('~'))
            .map(|d| normalize_domain(d))
            .collect::<Vec<_>>()
    };
    servers(current) == servers(wanted) && search(current) == search(wanted)
}

/// A new resolv.conf: the old comments, then `nameserver` and `search` lines for `wanted`, then the old file's
/// other lines (`options`, `sortlist`) as they were.
pub fn render(old: &str, wanted: &Resolv) -> String {
    let is_comment = |l: &&str| l.starts_with('#') || l.starts_with(';');
    let is_ours = |l: &&str| {
        let first = l.split_whitespace().next();
        matches!(first, Some("nameserver" | "search" | "domain"))
    };
    let mut out = String::new();
    for line in old.lines().filter(is_comment).filter(|l| *l != HEADER) {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(HEADER);
    out.push('\n');
    for server in &wanted.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !wanted.search.is_empty() {
        out.push_str(&format!("search {}\n", wanted.search.join(" ")));
    }
    let rest = old
        .lines()
        .filter(|l| !l.trim().is_empty() && !is_comment(l) && !is_ours(l));
    for line in rest {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Replaces `path` with `text` so a reader sees the old file or the new one, never a mix: the previous content
/// (when there was one) goes to `NAME.bak` first, then a temp file in the same directory is written, synced and
/// renamed over `path`, and the directory is synced. The file keeps its mode.
pub fn replace_atomically(path: &Path, old: Option<&str>, text: &str) -> io::Result<()> {
    let _one_at_a_time = WRITE_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no directory or file name",
        ));
    };
    let name = name.to_string_lossy();
    let mode = fs::metadata(path).map_or(NEW_FILE_MODE, |m| m.permissions().mode() & 0o7777);
    if let Some(old) = old {
        write_via_temp(dir, &format!("{name}.bak"), old, mode)?;
    }
    write_via_temp(dir, &name, text, mode)?;
    fs::File::open(dir)?.sync_all()
}

fn write_via_temp(dir: &Path, name: &str, text: &str, mode: u32) -> io::Result<()> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = dir.join(format!(".{name}.osapi-{}-{nanos}.tmp", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        // create_new's mode is filtered by the umask: set it as the old file had it.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&temp, dir.join(name))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}
