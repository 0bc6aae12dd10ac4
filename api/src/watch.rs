//! Keeps the [`Index`] in step with one bucket: a thread per bucket runs a KV watch, which is the
//! index's only writer for it (the response bucket's feeds only the index's detail cache, from the
//! bucket's end). Past the replay most records are applied by the NATS connection's reading thread as
//! they arrive (when the index is not locked; `osapi_bus::Bus::kv_watch_applying`), the rest by this
//! thread, in the stream's order either way. It marks its part ready once the history is replayed; when
//! the watch errs (a gap in its deliveries, silence, a consumer gone) or NATS came back and the consumer
//! cannot be vouched for, it marks its part not ready with the reason and re-creates the watch from the
//! last revision applied. It also prunes what the bucket's TTL has expired (JetStream leaves no marker
//! for that).

use crate::ctx::now_us;
use crate::index::{Index, Record, Source};
use osapi_bus::{Bus, KvEntry, KvOp, KvWatch, WatchApply};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one wait on the watch lasts; also how often the reconnect count is looked at.
const POLL: Duration = Duration::from_millis(200);
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What one watch thread serves.
pub struct Watched {
    pub bus: Bus,
    pub bucket: String,
    pub source: Source,
    pub index: Arc<Index>,
    /// The bucket's TTL (0 = records never expire).
    pub ttl: Duration,
    /// Start at the bucket's end rather than replaying its last record per key (the response bucket:
    /// the detail cache wants only what comes, and reads KV for what it lacks).
    pub from_now: bool,
}

/// Starts the watch thread.
pub fn spawn(w: Watched) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("kv-watch-{}", w.source.name()))
        .spawn(move || run(&w))
        .map(|_| ())
}

fn run(w: &Watched) {
    let mut last_prune = Instant::now();
    loop {
        if w.from_now && w.index.applied(w.source) == 0 {
            match w.bus.stream_bounds(&format!("KV_{}", w.bucket)) {
                Ok(bounds) => w.index.detail().responses_start_at(bounds.last_seq),
                Err(e) => {
                    log::warn!("cannot read where bucket {} ends: {e}; retrying", w.bucket);
                    std::thread::sleep(RETRY_AFTER);
                    continue;
                }
            }
        }
        let resume = match w.index.applied(w.source) {
            0 => None,
            rev => Some(rev),
        };
        let reconnects = w.bus.reconnects();
        let mut watch = match w.bus.kv_watch_applying(&w.bucket, resume, applier(w)) {
            Ok(watch) => watch,
            Err(e) => {
                w.index
                    .set_not_ready(w.source, format!("cannot watch bucket {}: {e}", w.bucket));
                log::warn!("cannot watch bucket {}: {e}; retrying", w.bucket);
                std::thread::sleep(RETRY_AFTER);
                continue;
            }
        };
        log::debug!("watching bucket {} after revision {resume:?}", w.bucket);
        let why = follow(w, &mut watch, reconnects, &mut last_prune);
        w.index.set_not_ready(w.source, why.clone());
        log::warn!(
            "watch on {}: {why}; re-creating it from revision {}",
            w.bucket,
            w.index.applied(w.source)
        );
    }
}

/// What the watch does with each record: apply it to the index. Past the replay the NATS connection's
/// reading thread applies most records (`may_wait` false: only if the index is not locked), which saves
/// waking this bucket's thread for each; the thread applies the rest, in order.
fn applier(w: &Watched) -> WatchApply {
    let (index, source) = (w.index.clone(), w.source);
    Box::new(move |entry: &KvEntry, may_wait: bool| {
        let record = Record {
            key: &entry.key,
            value: (entry.op == KvOp::Put).then_some(entry.value.as_slice()),
            revision: entry.revision,
        };
        if may_wait {
            index.apply(source, &record, now_us());
            true
        } else {
            index.try_apply(source, &record, now_us())
        }
    })
}

/// Keeps the watch going (its records are applied as they come) until it fails; returns why.
fn follow(
    w: &Watched,
    watch: &mut KvWatch,
    mut reconnects: u64,
    last_prune: &mut Instant,
) -> String {
    let mut replayed = false;
    let mut last_trim = Instant::now();
    loop {
        if reconnects != w.bus.reconnects() {
            // Messages pushed while we were away are lost; the consumer may be gone too.
            reconnects = w.bus.reconnects();
            if let Err(e) = w.bus.kv_watch_verify(watch) {
                return format!("after NATS came back: {e}");
            }
            log::info!("watch on {} checked after NATS came back", w.bucket);
        }
        if watch.caught_up() {
            w.index.set_ready(w.source, reconnects);
            if !std::mem::replace(&mut replayed, true) {
                // The replay's message buffers are free now: give their pages back.
                crate::alloc::trim();
            }
        }
        if let Err(e) = watch.next(POLL) {
            return e.to_string();
        }
        if last_trim.elapsed() >= crate::alloc::TRIM_EVERY {
            crate::alloc::trim();
            last_trim = Instant::now();
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            w.index.prune(now_us(), w.ttl);
            *last_prune = Instant::now();
        }
    }
}
