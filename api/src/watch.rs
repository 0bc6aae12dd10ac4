//! Keeps the [`Index`] in step with the job bucket: one thread runs a KV watch, applies every record,
//! marks the index ready once the history is replayed, re-creates the watch from the last sequence when
//! it goes silent (NATS restarted), and prunes what the bucket's TTL has expired.

use crate::index::Index;
use osapi_bus::{Bus, KvOp};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one wait on the watch lasts; also how often pruning is considered.
const POLL: Duration = Duration::from_secs(1);
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Starts the watch thread.
pub fn spawn(bus: Bus, bucket: String, index: Arc<Index>, ttl: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("kv-watch".into())
        .spawn(move || run(&bus, &bucket, &index, ttl))
        .map(|_| ())
}

fn run(bus: &Bus, bucket: &str, index: &Index, ttl: Duration) {
    let mut last_prune = Instant::now();
    loop {
        let resume = match index.last_seq() {
            0 => None,
            seq => Some(seq),
        };
        let mut watch = match bus.kv_watch(bucket, resume) {
            Ok(w) => w,
            Err(e) => {
                log::warn!("cannot watch bucket {bucket}: {e}; retrying");
                std::thread::sleep(RETRY_AFTER);
                continue;
            }
        };
        log::debug!("watching bucket {bucket} from {resume:?}");
        loop {
            if watch.caught_up() && !index.is_ready() {
                index.set_ready();
                log::info!("index ready");
            }
            match watch.next(POLL) {
                Ok(Some(entry)) => {
                    let value = (entry.op == KvOp::Put).then_some(entry.value.as_slice());
                    index.apply(&entry.key, value, entry.revision);
                }
                Ok(None) => {}
                Err(e) => {
                    log::warn!("watch on {bucket} lost: {e}; re-creating it");
                    break;
                }
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                index.prune(crate::now_us(), ttl);
                last_prune = Instant::now();
            }
        }
    }
}
