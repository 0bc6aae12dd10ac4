//! The processes a phase starts and stops: workers (`bench1..benchN`) and extra APIs (a fresh one to time
//! start-up, one on its own namespace for the scaling phase), plus reading their RSS from /proc.
//!
//! Each child gets the run's config and `OSAPI_*` overrides only; its pid goes to `RUN_DIR/bench.pids`
//! so scripts/bench.sh can end it even if this process dies. Drop stops every child still running.

use crate::args::Args;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a child may take to exit after SIGTERM before SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(10);

pub struct Procs {
    bin_dir: PathBuf,
    config: PathBuf,
    run_dir: Option<PathBuf>,
    children: BTreeMap<u32, (String, Child)>,
}

impl Procs {
    pub fn new(args: &Args) -> Procs {
        Procs {
            bin_dir: args.bin_dir.clone(),
            config: args.config.clone(),
            run_dir: args.run_dir.clone(),
            children: BTreeMap::new(),
        }
    }

    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    fn log_to(&self, name: &str) -> Stdio {
        let file = self
            .run_dir
            .as_ref()
            .and_then(|d| File::create(d.join(format!("{name}.log"))).ok());
        file.map(Stdio::from).unwrap_or_else(Stdio::null)
    }

    /// One of our binaries with the run's config and `env` on top (only ours: the caller's `OSAPI_*`
    /// would override the config file).
    pub fn spawn(&mut self, name: &str, bin: &str, env: &[(&str, String)]) -> Result<u32, String> {
        let mut cmd = Command::new(self.binary(bin));
        cmd.arg("-c").arg(&self.config);
        for (k, _) in std::env::vars() {
            if k.starts_with("OSAPI_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_LOG", "warn");
        // Many daemons on one machine: the metrics endpoints would fight over their default ports.
        cmd.env("OSAPI_API_METRICS_LISTEN", "");
        cmd.env("OSAPI_JOB_WORKER_METRICS_LISTEN", "");
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.launch(name, cmd)
    }

    /// Any other program (a nats-server) with `args`.
    pub fn program(&mut self, name: &str, path: &Path, args: &[String]) -> Result<u32, String> {
        let mut cmd = Command::new(path);
        cmd.args(args);
        self.launch(name, cmd)
    }

    fn launch(&mut self, name: &str, mut cmd: Command) -> Result<u32, String> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(self.log_to(name))
            .stderr(self.log_to(name))
            .spawn()
            .map_err(|e| format!("start {name}: {e}"))?;
        let pid = child.id();
        if let Some(dir) = &self.run_dir {
            let pids = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("bench.pids"));
            if let Ok(mut f) = pids {
                let _ = writeln!(f, "{pid}");
            }
        }
        self.children.insert(pid, (name.to_string(), child));
        Ok(pid)
    }

    /// Where child logs go (the run dir), if anywhere.
    pub fn run_dir(&self) -> Option<&Path> {
        self.run_dir.as_deref()
    }

    /// A worker named `host` with `max_jobs` threads.
    pub fn worker(&mut self, host: &str, max_jobs: usize) -> Result<u32, String> {
        self.spawn(
            &format!("worker-{host}"),
            "osapi-worker",
            &[
                ("OSAPI_JOB_WORKER_HOSTNAME", host.to_string()),
                ("OSAPI_JOB_WORKER_MAX_JOBS", max_jobs.to_string()),
            ],
        )
    }

    /// An API on `listen` (`127.0.0.1:PORT`), optionally on its own namespace.
    pub fn api(&mut self, name: &str, listen: &str, namespace: &str) -> Result<u32, String> {
        self.spawn(
            name,
            "osapi-api",
            &[
                ("OSAPI_API_SERVER_LISTEN", listen.to_string()),
                ("OSAPI_NATS_NAMESPACE", namespace.to_string()),
            ],
        )
    }

    /// SIGTERM, wait for the exit (SIGKILL after [`STOP_WITHIN`]).
    pub fn stop(&mut self, pid: u32) {
        let Some((name, mut child)) = self.children.remove(&pid) else {
            return;
        };
        // Our own child, not yet reaped (we hold its Child), so the pid is still its own.
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + STOP_WITHIN;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    eprintln!(
                        "osapi-bench: {name} ignored SIGTERM for {STOP_WITHIN:?}; killing it"
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// SIGTERM to all of `pids` at once, then waits for each (SIGKILL after [`STOP_WITHIN`]): a fleet
    /// stops in about the time one worker takes.
    pub fn stop_all(&mut self, pids: &[u32]) {
        for chunk in pids.chunks(500) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .args(chunk.iter().map(u32::to_string))
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + STOP_WITHIN;
        for pid in pids {
            let Some((_, mut child)) = self.children.remove(pid) else {
                continue;
            };
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    /// Whether the child is still running (false once it exited or was never ours).
    pub fn alive(&mut self, pid: u32) -> bool {
        self.children
            .get_mut(&pid)
            .is_some_and(|(_, c)| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        let pids: Vec<u32> = self.children.keys().copied().collect();
        for pid in pids {
            self.stop(pid);
        }
    }
}

/// Resident set size in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user + system) a process has used so far, from /proc/PID/stat (`self` for this one).
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are plain.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux we run on (sysconf(_SC_CLK_TCK)).
    Some(Duration::from_millis(ticks * 10))
}

/// Ports [`free_port`] already handed out in this process.
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// A loopback port that was free a moment ago, never one this process handed out before (the kernel may give
/// a just-released port again, and a cluster asks for several at once).
pub fn free_port() -> Result<u16, String> {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..64 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port: {e}"))?;
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return Ok(port);
        }
    }
    Err("no loopback port that was not handed out before".into())
}
