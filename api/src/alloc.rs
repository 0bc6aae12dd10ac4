//! What the API asks of glibc's malloc, so its memory follows what it holds
//! (ARCHITECTURE.md, "Memory").
//!
//! Why: glibc gives threads up to 8 arenas per core, each keeping its own free memory. The API has ~90
//! threads (handlers, body readers, a thread per connection, the watches, audit, metrics) whose
//! allocations and frees land in different arenas, so freed memory sat in one arena while another grew:
//! at 10,000 jobs 15 arenas held 22.5 MiB where 2 hold 15.4 MiB (make bench, phase 5). Each thread also
//! keeps a cache of freed blocks (the tcache: up to 7 blocks of each size up to 1,032 bytes) that
//! malloc counts as in use, so no trim returns it: under the throughput load (20,000 jobs) the arenas
//! held 6.2 MiB "in use" of which the heap profile (heaptrack) found 1.9 MiB live; with the cache kept
//! to blocks of up to 128 bytes RSS fell 16.3 -> 12.2 MiB at the same CPU per job. And a burst, such as
//! the start-up replay of the whole bucket, leaves freed pages mapped until something returns them.
//! Other C libraries (musl) have none of these knobs: there [`tune`] does nothing.

/// How often the watch calls [`trim`].
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// What [`tune`] sets: at most 2 arenas (the main one and one more for the threads that contend with
/// it); allocations from 128 KiB on get their own mapping, given back when freed, and free memory past
/// 128 KiB at the top of the heap is given back at once (set explicitly, both stay put: by default
/// glibc raises them to the size of the largest block freed so far, such as the index's hash table as
/// it grows, after which it keeps that much free memory for good); each thread's cache holds blocks of
/// up to 128 bytes (the small, frequent ones). The cache's bound is a tunable only, read when the
/// process starts, hence the environment variable rather than `mallopt`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub const TUNABLES: &str = "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=131072:\
                            glibc.malloc.trim_threshold=131072:glibc.malloc.tcache_max=128";

#[cfg(all(target_os = "linux", target_env = "gnu"))]
const THRESHOLD: libc::c_int = 128 * 1024;

/// Tunes malloc as [`TUNABLES`] says; call first thing in `main`, before any thread starts. When the
/// process did not start with them it runs its own binary again (same pid, arguments and environment,
/// plus `GLIBC_TUNABLES`), so this returns only in a process that has them, or when that exec failed:
/// then it sets what `mallopt` can (arenas and thresholds, not the cache) and says why in the `Err`,
/// for the caller to log once logging is up. An operator's own `MALLOC_*` variables or `GLIBC_TUNABLES`
/// win: then nothing is changed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() -> Result<(), String> {
    {
        let own = std::env::vars_os().any(|(k, _)| {
            k.to_str()
                .is_some_and(|k| k.starts_with("MALLOC_") || k == "GLIBC_TUNABLES")
        });
        if own {
            // The operator's, or ours after the exec below.
            return Ok(());
        }
        let exec_failed = run_again_tuned();
        // What can be had without the tunables: not the cache's bound.
        for (param, value, name) in [
            (libc::M_ARENA_MAX, 2, "M_ARENA_MAX"),
            (libc::M_MMAP_THRESHOLD, THRESHOLD, "M_MMAP_THRESHOLD"),
            (libc::M_TRIM_THRESHOLD, THRESHOLD, "M_TRIM_THRESHOLD"),
        ] {
            // SAFETY: mallopt only sets a malloc parameter; no thread allocates concurrently yet.
            if unsafe { libc::mallopt(param, value) } != 1 {
                return Err(format!("malloc did not take {name} {value}"));
            }
        }
        Err(format!(
            "cannot run the API again with GLIBC_TUNABLES={TUNABLES} ({exec_failed}): \
             each thread keeps its own cache of freed memory"
        ))
    }
}

/// Other C libraries have none of these knobs.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() -> Result<(), String> {
    Ok(())
}

/// Replaces this process by its own binary with [`TUNABLES`] in its environment; returns only on
/// failure, with the error.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn run_again_tuned() -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    cmd.args(args).env("GLIBC_TUNABLES", TUNABLES).exec()
}

/// Returns the free pages of every arena to the system (after a burst: the start-up replay; and every
/// [`TRIM_EVERY`], for what a busy spell left free in the middle of the heap, which no threshold reaches).
/// It takes each arena's lock in turn for the walk: a few milliseconds for tens of MiB.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases memory malloc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
