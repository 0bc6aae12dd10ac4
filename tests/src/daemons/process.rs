//! One daemon as a child process: its temp dir (config and log), signals, waits for its exit, and on
//! drop a kill, with the tail of its log printed when the test panicked.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::bins::binary;
use crate::wait::{keep_failed_dirs, log_tail, wait_until};

const LOG_TAIL_LINES: usize = 60;

/// A child process with a temp dir holding `config.yaml` and `daemon.log` (stdout and stderr).
pub(super) struct Daemon {
    name: String,
    pub(super) child: Option<Child>,
    dir: PathBuf,
}

impl Daemon {
    pub(super) fn spawn(name: &str, yaml: &str, dir: PathBuf) -> Daemon {
        let program = name.split(' ').next().expect("a daemon name");
        let binary = binary(program);
        let config = dir.join("config.yaml");
        std::fs::write(&config, yaml).expect("write config file");
        let log = File::create(dir.join("daemon.log")).expect("create log file");
        let mut command = Command::new(&binary);
        command
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log);
        // Env wins over the config file: keep the developer's OSAPI_* settings away from the daemons.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OSAPI_") {
                command.env_remove(key);
            }
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", binary.display()));
        Daemon {
            name: name.to_string(),
            child: Some(child),
            dir,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    pub(super) fn tail(&self) -> String {
        log_tail(&self.log_path(), LOG_TAIL_LINES)
    }

    pub(super) fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    pub(super) fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- {} log (tail, {}) ----\n{}",
                self.name,
                self.log_path().display(),
                self.tail()
            );
            if keep_failed_dirs() {
                return; // OSAPI_TEST_KEEP: keep it for a post-mortem
            }
        }
        let _ = std::fs::remove_dir_all(self.dir());
    }
}

impl Daemon {
    pub(super) fn signal(&mut self, signal: libc::c_int) {
        if let Some(child) = self.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                // SAFETY: kill(2) on the pid of a child we own and have not reaped yet.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, signal);
                }
            }
        }
    }

    pub(super) fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let mut status = None;
        let name = self.name.clone();
        wait_until(&format!("{name} to exit"), deadline, || {
            status = self.exited();
            status.is_some()
        });
        status.expect("wait_until returned, so the process has exited")
    }
}
