//! The throughput phase's load generator: one kept-alive HTTP/1.1 connection per client thread that
//! writes `POST /job` and `GET /job/{id}?wait=` by hand and reads only the two fields it needs.
//!
//! The bench runs its clients on the same cores as nats-server, the API and the workers, so what a
//! client spends is taken from the system under test. ureq (the `Api` client) parses URLs, builds header
//! maps and the whole JSON document of every answer: ~110 µs of CPU a job, a seventh of all the
//! machine spends on one (docs/benchmarks.md). The raw floor's lanes pay nothing of the kind. This
//! client does the same exchanges for a fraction of that; `--http-client ureq` measures with ureq.

use crate::client::{JOB_WAIT, JOB_WAIT_MAX};
use osapi_common::status::JobStatus;
use serde::Deserialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Bound on one exchange (the wait asks the API for 30 s).
const TIMEOUT: Duration = Duration::from_secs(40);
/// Bound on a status line or a header line, and on a body.
const MAX_LINE: usize = 8 * 1024;
const MAX_BODY: usize = 4 * 1024 * 1024;
const MAX_HEADERS: usize = 100;

#[derive(Deserialize)]
struct Created {
    job_id: String,
}

#[derive(Deserialize)]
struct CreatedWaited {
    job_id: String,
    status: JobStatus,
}

#[derive(Deserialize)]
struct Status {
    status: JobStatus,
}

pub struct Lean {
    /// `host:port`: where to connect and the `Host` header.
    host: String,
    auth: String,
    conn: Option<BufReader<TcpStream>>,
    out: Vec<u8>,
    body: Vec<u8>,
}

impl Lean {
    /// A client of `base` (`http://host:port`, no path).
    pub fn new(base: &str) -> Result<Lean, String> {
        let host = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("{base}: only http:// is measured"))?
            .trim_end_matches('/')
            .to_string();
        Ok(Lean {
            host,
            auth: std::env::var("OSAPI_TOKEN").unwrap_or_default(),
            conn: None,
            out: Vec::with_capacity(512),
            body: Vec::with_capacity(4096),
        })
    }

    /// `POST /job` of `op` to `target`; the new job's id.
    pub fn create(&mut self, op: &str, target: &str) -> Result<String, String> {
        let body = job_body(op, target);
        match self.exchange("POST", "/job", body.as_bytes())? {
            201 => serde_json::from_slice::<Created>(&self.body)
                .map(|c| c.job_id)
                .map_err(|e| format!("POST /job: no job_id ({e})")),
            code => Err(format!("POST /job: {code} {}", self.text())),
        }
    }

    /// `POST /job?wait=` of `op` to `target`: created and waited for in one request (then, should the
    /// job still be running when that wait ends, [`Lean::wait_terminal`]). Its final status and the
    /// requests it took (more than 1: answered before the job ended).
    pub fn create_waited(&mut self, op: &str, target: &str) -> Result<(JobStatus, usize), String> {
        let body = job_body(op, target);
        let path = format!("/job?wait={JOB_WAIT}");
        let created = match self.exchange("POST", &path, body.as_bytes())? {
            201 => serde_json::from_slice::<CreatedWaited>(&self.body)
                .map_err(|e| format!("POST {path}: no job_id and status ({e})"))?,
            code => return Err(format!("POST {path}: {code} {}", self.text())),
        };
        if created.status.is_terminal() {
            return Ok((created.status, 1));
        }
        let (status, gets) = self.wait_terminal(&created.job_id)?;
        Ok((status, gets + 1))
    }

    /// `GET /job/{id}?wait=` until the job is terminal (within [`JOB_WAIT_MAX`]): its status and how
    /// many requests it took (more than 1: the API's waiter slots were full and it answered at once).
    pub fn wait_terminal(&mut self, id: &str) -> Result<(JobStatus, usize), String> {
        let path = format!("/job/{id}?wait={JOB_WAIT}");
        let deadline = Instant::now() + JOB_WAIT_MAX;
        let mut gets = 0;
        loop {
            let status = match self.exchange("GET", &path, b"")? {
                200 => serde_json::from_slice::<Status>(&self.body)
                    .map(|s| s.status)
                    .map_err(|e| format!("GET {path}: no status ({e})"))?,
                code => return Err(format!("GET {path}: {code} {}", self.text())),
            };
            gets += 1;
            if status.is_terminal() {
                return Ok((status, gets));
            }
            if Instant::now() > deadline {
                return Err(format!("job {id} still {status:?} after {JOB_WAIT_MAX:?}"));
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// One request and its answer's status; the body is left in `self.body`. A kept-alive connection
    /// the API closed meanwhile is opened again once.
    fn exchange(&mut self, method: &str, path: &str, body: &[u8]) -> Result<u16, String> {
        let fresh = self.conn.is_none();
        match self.try_exchange(method, path, body) {
            Ok(code) => Ok(code),
            Err(e) if fresh => Err(format!("{method} {path}: {e}")),
            Err(_) => {
                self.conn = None;
                self.try_exchange(method, path, body)
                    .map_err(|e| format!("{method} {path}: {e}"))
            }
        }
    }

    fn try_exchange(&mut self, method: &str, path: &str, body: &[u8]) -> Result<u16, String> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.host).map_err(|e| e.to_string())?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            self.conn = Some(BufReader::with_capacity(8 * 1024, s));
        }
        self.out.clear();
        write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n",
            self.host, self.auth
        )
        .map_err(|e| e.to_string())?;
        if method == "POST" {
            write!(
                self.out,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .map_err(|e| e.to_string())?;
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
        let conn = self.conn.as_mut().ok_or("no connection")?;
        conn.get_mut()
            .write_all(&self.out)
            .map_err(|e| e.to_string())?;
        let (code, length, close) = read_head(conn)?;
        self.body.clear();
        self.body.resize(length, 0);
        conn.read_exact(&mut self.body)
            .map_err(|e| format!("reading the body: {e}"))?;
        if close {
            self.conn = None;
        }
        Ok(code)
    }
}

/// The status line and headers: the status, Content-Length, and whether the API closes the
/// connection.
/// The `POST /job` body of an `op` job (no data) for `target`.
fn job_body(op: &str, target: &str) -> String {
    format!(r#"{{"operation":{{"type":"{op}","data":{{}}}},"target_hostname":"{target}"}}"#)
}

fn read_head(conn: &mut BufReader<TcpStream>) -> Result<(u16, usize, bool), String> {
    let mut line = String::new();
    let mut next = |line: &mut String| -> Result<(), String> {
        line.clear();
        let n = conn
            .by_ref()
            .take(MAX_LINE as u64)
            .read_line(line)
            .map_err(|e| e.to_string())?;
        match n {
            0 => Err("connection closed".into()),
            _ if !line.ends_with('\n') => Err("header line too long".into()),
            _ => Ok(()),
        }
    };
    next(&mut line)?;
    let code = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let (mut length, mut close) = (None, false);
    for n in 0.. {
        if n == MAX_HEADERS {
            return Err(format!("more than {MAX_HEADERS} header lines"));
        }
        next(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(format!("bad header {header:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|e| e.to_string())?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "transfer-encoding {value} is not read by this client"
            ));
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let length = length.ok_or("no Content-Length")?;
    if length > MAX_BODY {
        return Err(format!("body of {length} bytes"));
    }
    Ok((code, length, close))
}
