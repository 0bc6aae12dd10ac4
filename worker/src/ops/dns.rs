//! `network.dns.get` and `network.dns.update`: the resolver's servers and search domains.
//!
//! Who is in charge decides where they live. When /etc/resolv.conf is systemd-resolved's (a link into
//! /run/systemd/resolve/, or its 127.0.0.53 stub) and /run/systemd/resolve/resolv.conf exists, the real servers
//! are read there and changed per link with `resolvectl` (only when host_root is `/`: it acts on this machine).
//! Otherwise resolv.conf itself is read, and rewritten atomically (temp file, fsync, rename in the same
//! directory) after the previous file is kept as `resolv.conf.bak`. Links are followed inside host_root.

use super::command;
use super::host::{self, host_path, io_error, is_real_root, read_text, resolve_in_root};
use super::resolv_conf::{self, Resolv};
use super::{parse, OpContext, OpError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

const RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of the real upstream servers (its stub file only names 127.0.0.53).
const RESOLVED_UPLINK: &str = "/run/systemd/resolve/resolv.conf";
const RESOLVED_DIR: &str = "/run/systemd/resolve/";
/// The addresses of systemd-resolved's local stub listeners.
const RESOLVED_STUBS: &[&str] = &["127.0.0.53", "127.0.0.54"];
/// glibc reads at most 3 nameserver lines (MAXNS); more would be written but never used.
const DNS_SERVERS_MAX: usize = 3;
/// glibc's historical limit of search domains (MAXDNSRCH).
const SEARCH_DOMAINS_MAX: usize = 6;
/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
const INTERFACE_NAME_BYTES_MAX: usize = 15;
const RESOLVECTL_DEADLINE: Duration = Duration::from_secs(10);
const RESOLVECTL_FALLBACKS: &[&str] = &["/usr/bin/resolvectl", "/bin/resolvectl"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsGetRequest {
    interface_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsUpdateRequest {
    dns_servers: Vec<String>,
    search_domains: Vec<String>,
    interface_name: Option<String>,
}

/// Where this host's resolver settings live.
#[derive(Debug, PartialEq, Eq)]
enum Manager {
    /// systemd-resolved: read its uplink file, change links with resolvectl.
    Resolved,
    /// A plain resolv.conf at this host path (links already followed).
    File(String),
}

/// `network.dns.get {interface_name?}` -> `{servers, search_domains}`.
pub fn dns_get(data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    const OP: &str = "network.dns.get";
    let request: DnsGetRequest = parse(OP, data)?;
    if let Some(name) = &request.interface_name {
        check_interface(OP, ctx, name)?;
    }
    let resolv = match (manager(ctx)?, request.interface_name) {
        (Manager::Resolved, Some(link)) if is_real_root(ctx) => {
            let mut link = resolvectl_get(OP, &link)?;
            link.search.retain(|d| !d.starts_with('~')); // routing-only domains are not searched
            link
        }
        (Manager::Resolved, _) => read_resolv(ctx, RESOLVED_UPLINK)?,
        (Manager::File(path), _) => read_resolv(ctx, &path)?,
    };
    Ok(json!({ "servers": resolv.servers, "search_domains": resolv.search }))
}

/// `network.dns.update {dns_servers, search_domains, interface_name?}` -> `{changed}`; the same input twice
/// changes nothing the second time.
pub fn dns_update(data: &Value, ctx: &OpContext) -> Result<Value, OpError> {
    const OP: &str = "network.dns.update";
    let request: DnsUpdateRequest = parse(OP, data)?;
    let wanted = Resolv {
        servers: servers(OP, &request.dns_servers)?,
        search: search_domains(OP, &request.search_domains)?,
    };
    if let Some(name) = &request.interface_name {
        check_interface(OP, ctx, name)?;
    }
    let changed = match (manager(ctx)?, request.interface_name) {
        (Manager::Resolved, Some(link)) => resolvectl_update(OP, ctx, &link, &wanted)?,
        (Manager::Resolved, None) => {
            return Err(OpError::permanent(format!(
                "{OP}: systemd-resolved manages DNS on this host: give `interface_name`, the link to set"
            )))
        }
        (Manager::File(_), Some(_)) => {
            return Err(OpError::permanent(format!(
                "{OP}: field `interface_name`: this host's DNS is the global {RESOLV_CONF} \
                 (no systemd-resolved); leave interface_name out"
            )))
        }
        (Manager::File(path), None) => write_resolv(OP, ctx, &path, &wanted)?,
    };
    Ok(json!({ "changed": changed }))
}

/// systemd-resolved when resolv.conf is its file or stub and its uplink file exists; else resolv.conf itself.
fn manager(ctx: &OpContext) -> Result<Manager, OpError> {
    let path = resolve_in_root(ctx, RESOLV_CONF)?;
    let uplink_exists = host_path(ctx, RESOLVED_UPLINK).is_file();
    let stub = path.starts_with(RESOLVED_DIR)
        || read_text(&host_path(ctx, &path)).is_ok_and(|text| {
            resolv_conf::parse(&text)
                .servers
                .iter()
                .any(|s| RESOLVED_STUBS.contains(&s.as_str()))
        });
    if stub && uplink_exists {
        return Ok(Manager::Resolved);
    }
    Ok(Manager::File(path))
}

fn read_resolv(ctx: &OpContext, path: &str) -> Result<Resolv, OpError> {
    let full = host_path(ctx, path);
    match read_text(&full) {
        Ok(text) => Ok(resolv_conf::parse(&text)),
        // No resolv.conf: glibc then asks 127.0.0.1; report what is configured, which is nothing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Resolv::default()),
        Err(e) => Err(io_error(&format!("reading {}", full.display()), &e)),
    }
}

/// Rewrites resolv.conf at host path `path` when `wanted` differs from it; true when it did.
fn write_resolv(op: &str, ctx: &OpContext, path: &str, wanted: &Resolv) -> Result<bool, OpError> {
    let full = host_path(ctx, path);
    let old = match read_text(&full) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(&format!("{op}: reading {}", full.display()), &e)),
    };
    let old_text = old.as_deref().unwrap_or("");
    if resolv_conf::same(&resolv_conf::parse(old_text), wanted) {
        return Ok(false);
    }
    let new_text = resolv_conf::render(old_text, wanted);
    resolv_conf::replace_atomically(&full, old.as_deref(), &new_text)
        .map_err(|e| io_error(&format!("{op}: writing {}", full.display()), &e))?;
    log::info!("{op}: rewrote {}", full.display());
    Ok(true)
}

/// Valid IPv4/IPv6 addresses, 1 to [`DNS_SERVERS_MAX`] of them, in canonical form.
fn servers(op: &str, given: &[String]) -> Result<Vec<String>, OpError> {
    if given.is_empty() || given.len() > DNS_SERVERS_MAX {
        return Err(OpError::permanent(format!(
            "{op}: field `dns_servers` must list 1 to {DNS_SERVERS_MAX} addresses, got {}",
            given.len()
        )));
    }
    given
        .iter()
        .map(|s| match s.trim().parse::<IpAddr>() {
            Ok(ip) => Ok(ip.to_string()),
            Err(_) => Err(OpError::permanent(format!(
                "{op}: field `dns_servers`: '{s}' is not an IPv4 or IPv6 address"
            ))),
        })
        .collect()
}

/// Valid domain names, at most [`SEARCH_DOMAINS_MAX`], lower-cased without a trailing dot.
fn search_domains(op: &str, given: &[String]) -> Result<Vec<String>, OpError> {
    if given.len() > SEARCH_DOMAINS_MAX {
        return Err(OpError::permanent(format!(
            "{op}: field `search_domains` must list at most {SEARCH_DOMAINS_MAX} domains, got {}",
            given.len()
        )));
    }
    given
        .iter()
        .map(|d| match domain_name_error(d) {
            None => Ok(resolv_conf::normalize_domain(d)),
            Some(why) => Err(OpError::permanent(format!(
                "{op}: field `search_domains`: '{d}' is not a domain name: {why}"
            ))),
        })
        .collect()
}

/// Why `name` is not a DNS name (labels of 1-63 letters, digits and inner hyphens, 253 bytes in all, an
/// optional final dot); None when it is one.
pub fn domain_name_error(name: &str) -> Option<String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() || bare.len() > 253 {
        return Some("must be 1 to 253 characters".into());
    }
    for label in bare.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Some("each dot-separated label must be 1 to 63 characters".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Some("only letters, digits, '-' and '.' are allowed".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("a label must not start or end with '-'".into());
        }
    }
    None
}

/// A plausible interface name, and (when host_root has /sys/class/net) one that exists.
fn check_interface(op: &str, ctx: &OpContext, name: &str) -> Result<(), OpError> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-@".contains(&b));
    if name.is_empty()
        || name.len() > INTERFACE_NAME_BYTES_MAX
        || !ok_chars
        || name.starts_with('-')
    {
        return Err(OpError::permanent(format!(
            "{op}: field `interface_name`: '{name}' is not an interface name \
             (1 to {INTERFACE_NAME_BYTES_MAX} of A-Z a-z 0-9 _ . - @)"
        )));
    }
    let links = host_path(ctx, "/sys/class/net");
    if links.is_dir() && !links.join(name).exists() {
        return Err(OpError::permanent(format!(
            "{op}: field `interface_name`: no interface '{name}' on this host"
        )));
    }
    Ok(())
}

fn resolvectl(op: &str, args: &[String]) -> Result<String, OpError> {
    let program = command::find_program("resolvectl", RESOLVECTL_FALLBACKS).ok_or_else(|| {
        OpError::permanent(format!(
            "{op}: systemd-resolved is in charge but no `resolvectl` was found"
        ))
    })?;
    let out = command::run(&program, args, RESOLVECTL_DEADLINE)
        .map_err(|e| host::io_error(&format!("{op}: running resolvectl"), &e))?;
    if out.timed_out {
        return Err(OpError::transient(format!(
            "{op}: resolvectl {} did not answer within {RESOLVECTL_DEADLINE:?}",
            args.join(" ")
        )));
    }
    if out.code != Some(0) {
        let detail = out.first_error_line();
        return Err(OpError::permanent(format!(
            "{op}: resolvectl {} failed: {detail}",
            args.join(" ")
        )));
    }
    Ok(out.stdout)
}

/// The link's servers and domains as resolvectl reports them.
fn resolvectl_get(op: &str, link: &str) -> Result<Resolv, OpError> {
    let dns = resolvectl(op, &["dns".into(), link.into()])?;
    let domains = resolvectl(op, &["domain".into(), link.into()])?;
    Ok(Resolv {
        servers: resolv_conf::resolvectl_values(&dns),
        search: resolv_conf::resolvectl_values(&domains),
    })
}

/// Sets the link's servers and domains through resolvectl when they differ; true when it did.
fn resolvectl_update(
    op: &str,
    ctx: &OpContext,
    link: &str,
    wanted: &Resolv,
) -> Result<bool, OpError> {
    if !is_real_root(ctx) {
        return Err(OpError::permanent(format!(
            "{op}: host_root is {}: resolvectl would change this machine, not that tree",
            ctx.host_root.display()
        )));
    }
    let current = resolvectl_get(op, link)?;
    if resolv_conf::same(&current, wanted) {
        return Ok(false);
    }
    // Routing-only domains (`~corp.example`) steer queries to this link: keep them.
    let routing = current
        .search
        .iter()
        .filter(|d| d.starts_with('~'))
        .cloned();
    let domains: Vec<String> = wanted.search.iter().cloned().chain(routing).collect();
    let with = |verb: &str, values: &[String]| -> Vec<String> {
        let mut args = vec![verb.to_string(), link.to_string()];
        if values.is_empty() {
            args.push(String::new()); // an empty argument resets the list
        } else {
            args.extend(values.iter().cloned());
        }
        args
    };
    resolvectl(op, &with("dns", &wanted.servers))?;
    resolvectl(op, &with("domain", &domains))?;
    log::info!("{op}: set DNS of link {link} through resolvectl");
    Ok(true)
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
