//! What the API asks of glibc's malloc, so its memory follows what it holds
//! (ARCHITECTURE.md, "Memory").
//!
//! Why: glibc gives threads up to 8 arenas per core, each keeping its own free memory. The API has ~75
//! threads (handlers, body readers, a thread per connection, the watches, audit, metrics) whose
//! allocations and frees land in different arenas, so freed memory sat in one arena while another grew:
//! at 10,000 jobs 15 arenas held 22.5 MiB where 2 hold 15.4 MiB (make bench, phase 5). And a burst, such
//! as the start-up replay of the whole bucket, leaves freed pages mapped until something returns them.
//! Other C libraries (musl) have neither knob: there both calls do nothing.

/// Arenas malloc may use: the main one and one more for the threads that contend with it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 2;

/// Caps malloc's arenas at [`ARENAS`]; call first thing in `main`, before any thread starts. An operator's
/// own `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` wins.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var_os("GLIBC_TUNABLES").is_some()
        {
            return;
        }
        // SAFETY: mallopt only sets a malloc parameter; no thread allocates concurrently yet.
        if unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) } != 1 {
            log::warn!("malloc did not take M_ARENA_MAX {ARENAS}");
        }
    }
}

/// Returns the free pages of every arena to the system (after a burst: the start-up replay, a prune).
/// It takes each arena's lock in turn for the walk: a few milliseconds for tens of MiB.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases memory malloc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
