//! The server's version, from the `INFO` line a nats-server sends first on every connection. The `nats`
//! crate reads that line but does not hand out the version, so this opens a short connection of its own,
//! reads the one line (bounded in size and time) and closes it.

use crate::BusError;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// An INFO line is a few hundred bytes; a peer sending more without a newline is not a nats-server.
const INFO_BYTES_MAX: u64 = 64 * 1024;
const DEFAULT_PORT: u16 = 4222;

/// The version the first reachable server of `urls` (comma-separated, as in `nats.url`) announces.
pub fn server_version(urls: &str, timeout: Duration) -> Result<String, BusError> {
    let mut last = BusError::Unavailable(format!("no server in '{urls}'"));
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        match version_of(url, timeout) {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn version_of(url: &str, timeout: Duration) -> Result<String, BusError> {
    let down = |e: std::io::Error| BusError::Unavailable(format!("INFO from {url}: {e}"));
    let addr = host_port(url)
        .to_socket_addrs()
        .map_err(down)?
        .next()
        .ok_or_else(|| BusError::Unavailable(format!("INFO from {url}: no address")))?;
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(down)?;
    stream.set_read_timeout(Some(timeout)).map_err(down)?;
    let mut line = String::new();
    BufReader::new(stream.take(INFO_BYTES_MAX))
        .read_line(&mut line)
        .map_err(down)?;
    parse_info(&line)
        .ok_or_else(|| BusError::Protocol(format!("{url} sent no INFO with a version")))
}

/// `host:port` of a `nats.url` entry: scheme and credentials dropped, the default port added.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let rest = rest.split('/').next().unwrap_or(rest);
    let has_port = match rest.rfind(']') {
        Some(bracket) => rest[bracket..].contains(':'),
        None => rest.contains(':'),
    };
    if has_port {
        rest.to_string()
    } else {
        format!("{rest}:{DEFAULT_PORT}")
    }
}

/// The `version` of an `INFO {...}` line.
fn parse_info(line: &str) -> Option<String> {
    let json = line.trim().strip_prefix("INFO")?.trim();
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.get("version")?.as_str().map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_to_addresses() {
        for (url, want) in [
            ("nats://127.0.0.1:4222", "127.0.0.1:4222"),
            ("nats://u:p@host:5000", "host:5000"),
            ("tls://host", "host:4222"),
            ("host", "host:4222"),
            ("nats://[::1]:4333", "[::1]:4333"),
            ("nats://[::1]", "[::1]:4222"),
        ] {
            assert_eq!(host_port(url), want, "{url}");
        }
    }

    #[test]
    fn info_lines() {
        let line =
            r#"INFO {"server_id":"X","version":"2.9.10","go":"go1.19","max_payload":1048576}"#;
        assert_eq!(parse_info(line).as_deref(), Some("2.9.10"));
        assert_eq!(parse_info("-ERR 'x'"), None);
        assert_eq!(parse_info("INFO {not json"), None);
        assert_eq!(parse_info(r#"INFO {"server_id":"X"}"#), None);
    }
}
