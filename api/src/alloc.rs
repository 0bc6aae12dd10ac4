//! What the API asks of glibc's malloc, so its memory follows what it holds
//! (ARCHITECTURE.md, "Memory").
//!
//! Why: glibc gives threads up to 8 arenas per core, each keeping its own free memory. The API has ~75
//! threads (handlers, body readers, a thread per connection, the watches, audit, metrics) whose
//! allocations and frees land in different arenas, so freed memory sat in one arena while another grew:
//! at 10,000 jobs 15 arenas held 22.5 MiB where 2 hold 15.4 MiB (make bench, phase 5). And a burst, such
//! as the start-up replay of the whole bucket, leaves freed pages mapped until something returns them.
//! Other C libraries (musl) have neither knob: there both calls do nothing.

/// How often the watch calls [`trim`].
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Arenas malloc may use: the main one and one more for the threads that contend with it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;

/// Allocations from this size on get their own mapping, given back when freed; and free memory past this
/// much at the top of the heap is given back at once. Set explicitly, both stay put: by default glibc
/// raises them to the size of the largest block freed so far (the index's hash table, megabytes at
/// 50,000 jobs, is reallocated as it grows), after which it keeps that much free memory for good.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const THRESHOLD: libc::c_int = 128 * 1024;

/// Caps malloc's arenas at [`ARENAS`] and fixes its mmap and trim thresholds at [`THRESHOLD`]; call
/// first thing in `main`, before any thread starts. An operator's own `MALLOC_*` variables or
/// `GLIBC_TUNABLES` win.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let own = std::env::vars_os().any(|(k, _)| {
            k.to_str()
                .is_some_and(|k| k.starts_with("MALLOC_") || k == "GLIBC_TUNABLES")
        });
        if own {
            return;
        }
        for (param, value, name) in [
            (libc::M_ARENA_MAX, ARENAS, "M_ARENA_MAX"),
            (libc::M_MMAP_THRESHOLD, THRESHOLD, "M_MMAP_THRESHOLD"),
            (libc::M_TRIM_THRESHOLD, THRESHOLD, "M_TRIM_THRESHOLD"),
        ] {
            // SAFETY: mallopt only sets a malloc parameter; no thread allocates concurrently yet.
            if unsafe { libc::mallopt(param, value) } != 1 {
                log::warn!("malloc did not take {name} {value}");
            }
        }
    }
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
