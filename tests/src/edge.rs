//! The HTTP edge seen from below, for the hostile_* tests: a request sent as raw bytes over TCP, an answer
//! read until the server closes, and the API process's figures from `/proc/PID/status`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::Cluster;

/// Sends one HTTP/1.1 request (`Connection: close`) over a fresh TCP connection; returns the status (None
/// when the server closed without answering) and the answer's text.
pub fn raw_request(
    cluster: &Cluster,
    method: &[u8],
    path: &[u8],
    headers: &[(String, String)],
    body: &[u8],
) -> (Option<u16>, String) {
    let mut stream =
        TcpStream::connect(("127.0.0.1", cluster.api.port())).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut request = Vec::with_capacity(256 + body.len());
    request.extend_from_slice(method);
    request.push(b' ');
    request.extend_from_slice(path);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: osapi\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    if let Err(err) = stream.write_all(&request) {
        return (None, format!("write: {err}"));
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (status, text)
}

/// A field of `/proc/PID/status` (`Threads`, `VmRSS` in kB).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Everything the server sends until it closes (or 20 s pass), as text; a reset ends it too.
pub fn read_all(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0_u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}
