//! Waiting on conditions with deadlines, and free loopback ports.

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// How often [`wait_until`] re-checks its condition.
const POLL_INTERVAL_MS: u64 = 25;

/// Polls `condition` until it returns true; panics with `what` once `deadline` has passed.
pub fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if condition() {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
    }
}

/// Ports [`free_port`] already handed out in this process.
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
/// Binds to port 0 at most this often before settling for a port handed out before.
const FREE_PORT_TRIES_MAX: usize = 64;

/// A loopback TCP port that was free a moment ago (bound to port 0, read, released), never one this process
/// handed out before: the kernel may give a just-released port again, and a cluster asks for nine at once.
///
/// Another process may take it before ours does; the starters retry with a new port when that happens.
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut port = 0;
    for _ in 0..FREE_PORT_TRIES_MAX {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        port = listener
            .local_addr()
            .expect("local address of bound listener")
            .port();
        if !handed_out.contains(&port) {
            break;
        }
    }
    handed_out.push(port);
    port
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub(crate) fn port_accepts(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// The last `lines` lines of a log file, or a note saying why there are none.
pub(crate) fn log_tail(path: &std::path::Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

/// A fresh directory `$TMPDIR/osapi-test-<uuid>`.
pub(crate) fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("osapi-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// True when `$OSAPI_TEST_KEEP` is set: temp dirs (configs, logs, NATS store) of failed tests are kept.
pub(crate) fn keep_failed_dirs() -> bool {
    std::env::var_os("OSAPI_TEST_KEEP").is_some()
}
