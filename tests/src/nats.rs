//! A private nats-server with JetStream for one test: free loopback port, own store dir, log file.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::wait::{free_port, keep_failed_dirs, log_tail, port_accepts, temp_dir, wait_until};

mod cluster;

pub use cluster::NatsCluster;

/// How long the server may take to accept TCP after start.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long a SIGTERM may take before SIGKILL follows.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Attempts with a fresh port when the chosen one was taken meanwhile.
const START_ATTEMPTS_MAX: usize = 3;
const LOG_TAIL_LINES: usize = 40;

/// A running (or stopped) nats-server: `-a 127.0.0.1 -p PORT -js -sd DIR`.
///
/// [`stop`](Self::stop) and [`restart`](Self::restart) keep the port and the store, so clients can reconnect and
/// find their streams and buckets again. Drop kills the server and removes the dir.
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// `-c FILE`: a config file (authorization, TLS) under the command-line flags.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server and waits until its port accepts TCP.
    pub fn start() -> NatsServer {
        NatsServer::start_with(None, temp_dir())
    }

    /// [`NatsServer::start`] with `-c config` (its own dir `dir`, where the config may live too). The
    /// flags (`-a 127.0.0.1 -p PORT -js -sd DIR`) win over the file.
    pub fn start_with_config(config: &Path, dir: PathBuf) -> NatsServer {
        NatsServer::start_with(Some(config.to_path_buf()), dir)
    }

    fn start_with(config: Option<PathBuf>, dir: PathBuf) -> NatsServer {
        std::fs::create_dir_all(&dir).expect("create the server's dir");
        let mut server = NatsServer {
            binary: nats_server_binary(),
            port: 0,
            dir,
            child: None,
            config,
        };
        for attempt in 1..=START_ATTEMPTS_MAX {
            server.port = free_port();
            server.spawn();
            if server.wait_accepting() {
                return server;
            }
            eprintln!(
                "nats-server exited on port {} (attempt {attempt}), log:\n{}",
                server.port,
                log_tail(&server.log_path(), LOG_TAIL_LINES)
            );
        }
        panic!("nats-server did not start after {START_ATTEMPTS_MAX} attempts (see log above)");
    }

    /// A client of this server, as an operator's tool would connect (no credentials, 5 s requests).
    pub fn bus(&self, name: &str) -> osapi_bus::Bus {
        osapi_bus::Bus::connect(&osapi_bus::ConnectOptions {
            url: self.url(),
            user_pass: None,
            token: None,
            identity: Default::default(),
            request_timeout: Duration::from_secs(5),
            name: name.into(),
            inbox_prefix: "_INBOX".into(),
        })
        .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url()))
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store dir given to `-sd` (it also holds `nats.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is answered, like an overloaded
    /// server; every client call then runs into its timeout. [`resume`](Self::resume) undoes it.
    /// Returns once every thread of the server has stopped: kill(2) only queues the signal, and on a
    /// loaded machine a thread already running went on answering for a moment.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
        if let Some(child) = &self.child {
            let pid = child.id();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !all_threads_stopped(pid) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "nats-server {pid} did not stop within 10 s of SIGSTOP"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }

    /// Lets a [`pause`](Self::pause)d server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// [`pause`](Self::pause)s the server until the returned guard drops (a failed assertion then
    /// never leaves it frozen for the threads a test still waits for).
    pub fn paused(&self) -> Paused<'_> {
        self.pause();
        Paused(self)
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on the pid of a child we own and have not reaped yet.
            unsafe {
                libc::kill(child.id() as libc::pid_t, signal);
            }
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after a deadline) and waits until it has exited.
    pub fn stop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        stop_child(child);
    }

    /// Stops the server if it runs and starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        if !self.wait_accepting() {
            panic!(
                "nats-server did not restart on port {}, log:\n{}",
                self.port,
                log_tail(&self.log_path(), LOG_TAIL_LINES)
            );
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("nats.log")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let log = open_log(&self.log_path());
        let mut command = Command::new(&self.binary);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let child = command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", self.binary.display()));
        self.child = Some(child);
    }

    /// Waits until the port accepts TCP; false when the server exited first (for instance: port taken).
    fn wait_accepting(&mut self) -> bool {
        let mut exited = false;
        let port = self.port;
        let child = self.child.as_mut().expect("spawned before waiting");
        wait_until(
            &format!("nats-server to accept TCP on 127.0.0.1:{port}"),
            START_DEADLINE,
            || {
                if let Ok(Some(_)) = child.try_wait() {
                    exited = true;
                    return true;
                }
                port_accepts(port)
            },
        );
        if exited {
            self.child = None;
        }
        !exited
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- nats-server log (tail, {}) ----\n{}",
                self.log_path().display(),
                log_tail(&self.log_path(), LOG_TAIL_LINES)
            );
            if keep_failed_dirs() {
                return; // OSAPI_TEST_KEEP: keep it for a post-mortem
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `$OSAPI_NATS_SERVER`, else `/usr/sbin/nats-server` (Debian's package), else `nats-server` on PATH.
fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OSAPI_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if debian.is_file() {
        return debian;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!("nats-server not found: run scripts/ensure-deps.sh or set OSAPI_NATS_SERVER")
    })
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|err| panic!("cannot open {}: {err}", path.display()))
}

/// SIGTERM, then SIGKILL after [`STOP_DEADLINE`]; returns once the process has exited.
fn stop_child(mut child: Child) {
    // SAFETY: kill(2) on the pid of a child we own and have not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let start = Instant::now();
    while start.elapsed() < STOP_DEADLINE {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A frozen server, resumed when this drops ([`NatsServer::paused`]).
pub struct Paused<'a>(&'a NatsServer);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.resume();
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in `/proc/PID/task/*/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // "tid (comm) S ...": the state follows the last ')' (a comm may hold one).
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        matches!(state, Some("T") | Some("t"))
    })
}
