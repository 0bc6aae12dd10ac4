//! The worker's clock: the one place it reads the time of day (for records and heartbeats; `common`
//! reads no clock and is passed `now`).

/// Now, in Unix microseconds.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
