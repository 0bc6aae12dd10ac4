//! Running a host program (`ping`, `resolvectl`, `shutdown`) for an operation: always a program and its arguments,
//! never a shell; the C locale so the output parses; bounded output and a bounded run time.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Output kept per stream; the rest is read and dropped so the child never blocks on a full pipe.
const OUTPUT_BYTES_MAX: u64 = 64 * 1024;
/// How often a running child is checked (ping runs for seconds: a few hundred cheap checks).
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// After SIGINT at the deadline (ping prints its statistics then), how long before SIGKILL.
const INTERRUPT_GRACE: Duration = Duration::from_secs(1);
/// How long a program of a cancelled job has between SIGTERM and SIGKILL.
pub const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// What a finished program left behind.
#[derive(Debug)]
pub struct Output {
    /// The exit code; None when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// True when it ran past its limit and was interrupted.
    pub timed_out: bool,
}

impl Output {
    /// The first line the program wrote to stderr, for an error message.
    pub fn first_error_line(&self) -> &str {
        self.stderr.trim().lines().next().unwrap_or("no message")
    }
}

/// The first executable `name` on PATH, else the first executable of `fallbacks` (absolute paths).
pub fn find_program(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(fallbacks.iter().map(PathBuf::from))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `program args...` and waits at most `limit`: then SIGINT, and SIGKILL [`INTERRUPT_GRACE`] later.
/// When the job is cancelled meanwhile (`cancel::requested`): SIGTERM, and SIGKILL [`CANCEL_GRACE`] later.
pub fn run(program: &Path, args: &[String], limit: Duration) -> io::Result<Output> {
    let mut command = Command::new(program);
    command
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // The pool thread runs as SCHED_BATCH (pool.rs); the command runs as any other process would.
    // SAFETY: only a system call between fork and exec.
    unsafe {
        command.pre_exec(|| {
            osapi_bus::sync::normal_scheduling();
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let started = Instant::now();
    let mut timed_out = false;
    let mut cancelled_at: Option<Instant> = None;
    let status = loop {
        if exited(&child) {
            // Whatever it left in its group (a child forked as the SIGTERM came, a background one)
            // would hold our pipes open and the output readers with them: it goes too. The leader is
            // not reaped yet, so the group id is still ours.
            signal_group(&child, libc::SIGKILL);
            break child.wait()?;
        }
        match cancelled_at {
            None if crate::cancel::requested() => {
                cancelled_at = Some(Instant::now());
                signal_group(&child, libc::SIGTERM);
            }
            Some(at) if at.elapsed() >= CANCEL_GRACE => {
                signal_group(&child, libc::SIGKILL);
                break child.wait()?;
            }
            _ => {}
        }
        let elapsed = started.elapsed();
        if elapsed >= limit && !timed_out {
            timed_out = true;
            signal_group(&child, libc::SIGINT);
        }
        if elapsed >= limit + INTERRUPT_GRACE {
            signal_group(&child, libc::SIGKILL);
            break child.wait()?;
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    Ok(Output {
        code: status.code(),
        stdout: joined(stdout),
        stderr: joined(stderr),
        timed_out,
    })
}

/// `signal` to the child's process group (the child leads it, so anything it started holding our pipes goes
/// too). The child is not reaped yet, so its pid, the group id, cannot have been reused.
fn signal_group(child: &Child, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a valid signal number on our own unreaped child's group; no memory is involved.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// Whether the child has exited, without reaping it (`waitid` with `WNOWAIT`): its pid, the group id,
/// stays ours until [`Child::wait`].
fn exited(child: &Child) -> bool {
    let pid: libc::id_t = child.id();
    // SAFETY: a zeroed siginfo_t is a valid out-parameter; waitid only writes into it.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        libc::waitid(libc::P_PID, pid, &mut info, flags) == 0 && info.si_pid() != 0
    }
}

fn reader<R: Read + Send + 'static>(stream: Option<R>) -> Option<JoinHandle<String>> {
    let stream = stream?;
    Some(std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut stream = stream;
        let _ = (&mut stream).take(OUTPUT_BYTES_MAX).read_to_end(&mut bytes);
        let _ = io::copy(&mut stream, &mut io::sink());
        String::from_utf8_lossy(&bytes).into_owned()
    }))
}

fn joined(handle: Option<JoinHandle<String>>) -> String {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh() -> PathBuf {
        find_program("sh", &["/bin/sh"]).expect("a shell for the test")
    }

    /// Pool threads run as SCHED_BATCH (pool.rs); the commands their operations start do not.
    #[test]
    fn a_command_started_from_a_batch_thread_runs_with_the_default_policy() {
        let args = ["-c".to_string(), "chrt -p $$".to_string()];
        let out = std::thread::spawn(move || {
            osapi_bus::sync::batch_scheduling();
            run(&sh(), &args, Duration::from_secs(5))
        })
        .join()
        .expect("the thread ends")
        .expect("run sh");
        assert!(out.stdout.contains("SCHED_OTHER"), "{}", out.stdout);
    }

    #[test]
    fn captures_output_and_exit_code() {
        let args = [
            "-c".to_string(),
            "echo out; echo err >&2; exit 3".to_string(),
        ];
        let out = run(&sh(), &args, Duration::from_secs(5)).expect("run sh");
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert!(!out.timed_out);
    }

    #[test]
    fn a_run_past_its_limit_is_interrupted() {
        let args = ["-c".to_string(), "sleep 30".to_string()];
        let started = Instant::now();
        let out = run(&sh(), &args, Duration::from_millis(100)).expect("run sh");
        assert!(out.timed_out);
        assert!(started.elapsed() < Duration::from_secs(5), "{out:?}");
    }

    /// Runs `script` (which touches `$1` once its trap is set) as a job on another thread, cancels it
    /// once it is ready, and returns how long the run took after the cancel, and its output.
    fn cancelled_run(script: &str) -> (Duration, Output) {
        use crate::cancel::Registry;
        use std::sync::Arc;
        let registry = Arc::new(Registry::default());
        let r = registry.clone();
        let ready = std::env::temp_dir().join(format!(
            "osapi-cancel-test-{}-{}",
            std::process::id(),
            script.len()
        ));
        let _ = std::fs::remove_file(&ready);
        let args = [
            "-c".to_string(),
            script.to_string(),
            "sh".to_string(),
            ready.display().to_string(),
        ];
        let runner = std::thread::spawn(move || {
            let _job = r.enter("job-1");
            run(&sh(), &args, Duration::from_secs(60))
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "the script never got ready");
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_file(&ready);
        let cancelled = Instant::now();
        registry.cancel("job-1");
        let out = runner.join().expect("runner").expect("run sh");
        (cancelled.elapsed(), out)
    }

    #[test]
    fn what_a_program_leaves_running_in_its_group_does_not_hold_the_job() {
        // The background sleep keeps stdout open; without the group's SIGKILL at the leader's exit the
        // readers (and the job) would wait the whole 60 s for it.
        let started = Instant::now();
        let args = ["-c".to_string(), "sleep 60 & echo started".to_string()];
        let out = run(&sh(), &args, Duration::from_secs(120)).expect("run sh");
        assert_eq!(out.stdout, "started\n", "{out:?}");
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "held by its background child: {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_cancelled_program_gets_sigterm_then_sigkill() {
        let (took, out) =
            cancelled_run("trap 'echo term; exit 7' TERM; touch \"$1\"; sleep 30 & wait");
        assert!(took < CANCEL_GRACE, "SIGTERM ends it at once: {took:?}");
        assert_eq!(out.code, Some(7), "{out:?}");
        assert_eq!(out.stdout, "term\n");
        let (took, out) = cancelled_run("trap '' TERM; touch \"$1\"; while :; do sleep 0.05; done");
        assert!(took >= CANCEL_GRACE, "{took:?}");
        assert!(took < CANCEL_GRACE + Duration::from_secs(3), "{took:?}");
        assert_eq!(out.code, None, "killed by SIGKILL: {out:?}");
    }

    #[test]
    fn programs_are_found_on_path_or_fallbacks() {
        assert!(find_program("osapi-no-such-program", &[]).is_none());
        assert_eq!(
            find_program("osapi-no-such-program", &["/bin/sh"]),
            Some(PathBuf::from("/bin/sh"))
        );
    }
}
