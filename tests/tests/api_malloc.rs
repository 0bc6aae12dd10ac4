//! The API's malloc settings (`api/src/alloc.rs`) reach the running process: it starts itself again
//! with `GLIBC_TUNABLES` (per-thread caches of at most 128-byte blocks, 2 arenas, fixed thresholds), so
//! the same pid runs with them and keeps its arguments; an operator's own `GLIBC_TUNABLES` is left as
//! it is. The API is pointed at a NATS port nobody listens on: it waits for it (logging that it does),
//! which is all these tests need of it.

use osapi_tests::{command, free_port, wait_until, JOB_KEY, SIGNING_KEY};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// What `alloc::TUNABLES` sets (held equal by hand: the API is a binary crate).
const OURS: &str = "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=131072:\
                    glibc.malloc.trim_threshold=131072:glibc.malloc.tcache_max=128";

/// An API waiting for a NATS server that is not there, with `tunables` as its `GLIBC_TUNABLES`.
struct Waiting {
    child: Child,
    dir: PathBuf,
}

impl Waiting {
    fn start(tunables: Option<&str>) -> Waiting {
        let dir = std::env::temp_dir().join(format!("osapi-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let key = dir.join("job.key");
        std::fs::write(&key, JOB_KEY).expect("write job key");
        let config = dir.join("config.yaml");
        let yaml = format!(
            "nats:\n  url: 'nats://127.0.0.1:{}'\napi:\n  server:\n    listen: '127.0.0.1:{}'\n    \
             security:\n      signing_key: '{SIGNING_KEY}'\n      job_signing_key_file: '{}'\n  \
             metrics: {{ listen: '' }}\n",
            free_port(),
            free_port(),
            key.display()
        );
        std::fs::write(&config, yaml).expect("write config");
        let log = std::fs::File::create(dir.join("api.log")).expect("create log");
        let mut cmd = command("osapi-api");
        cmd.arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .env_remove("GLIBC_TUNABLES")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MALLOC_") {
                cmd.env_remove(key);
            }
        }
        if let Some(t) = tunables {
            cmd.env("GLIBC_TUNABLES", t);
        }
        let child = cmd.spawn().expect("start osapi-api");
        let waiting = Waiting { child, dir };
        wait_until(
            "the API logs that it waits for NATS",
            Duration::from_secs(20),
            || waiting.log().contains("retrying every second"),
        );
        waiting
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("api.log")).unwrap_or_default()
    }

    /// `/proc/PID/{file}` split at NUL bytes.
    fn proc_list(&self, file: &str) -> Vec<String> {
        let raw = std::fs::read(
            Path::new("/proc")
                .join(self.child.id().to_string())
                .join(file),
        )
        .expect("read /proc of the API");
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    /// The `GLIBC_TUNABLES` the process runs with, as far as `expected` reaches: glibc parses the
    /// variable in place, ending each tunable with a NUL byte, so the separators read back as NULs.
    fn tunables(&self, expected: &str) -> Option<String> {
        let pid = self.child.id().to_string();
        let raw = std::fs::read(Path::new("/proc").join(pid).join("environ"))
            .expect("read /proc/PID/environ of the API");
        let name = b"GLIBC_TUNABLES=";
        let at = raw.windows(name.len()).position(|w| w == name)? + name.len();
        let value = raw.get(at..(at + expected.len()).min(raw.len()))?;
        let value: Vec<u8> = value
            .iter()
            .map(|b| if *b == 0 { b':' } else { *b })
            .collect();
        Some(String::from_utf8_lossy(&value).into_owned())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_api_runs_itself_with_a_bounded_per_thread_malloc_cache() {
    let api = Waiting::start(None);
    assert_eq!(
        api.tunables(OURS).as_deref(),
        Some(OURS),
        "log: {}",
        api.log()
    );
    let args = api.proc_list("cmdline");
    assert_eq!(
        args.get(1).map(String::as_str),
        Some("--config"),
        "{args:?}"
    );
    assert!(
        !api.log().contains("cannot run the API again"),
        "log: {}",
        api.log()
    );
}

#[test]
fn an_operators_own_glibc_tunables_are_left_alone() {
    let own = "glibc.malloc.arena_max=1";
    let api = Waiting::start(Some(own));
    assert_eq!(
        api.tunables(own).as_deref(),
        Some(own),
        "log: {}",
        api.log()
    );
}
