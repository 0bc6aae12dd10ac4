//! The body readers: threads that read request bodies the handlers did not (larger than 16 KiB, or not
//! there within 1 ms), so a slow upload holds one of these, never a handler. Started when a body waits
//! and no reader sleeps, at most [`BODY_READERS`] at once; one that has had nothing to do for
//! [`READER_IDLE`] stops.
//!
//! Why on demand: most requests' bodies arrive with their heads and never come here, and 32 threads
//! started ahead, each with its stack, sat idle (~8 KiB of RSS each: 256 KiB).

use super::handoff::Handoff;
use super::{read_then_dispatch, Pending, ACCEPT_POLL, BODY_READERS, QUEUE_DEPTH};
use crate::routes::Ctx;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a reader with nothing to do lives on.
pub const READER_IDLE: Duration = Duration::from_secs(10);

pub(super) struct Readers {
    queue: Handoff<Pending>,
    /// Readers started and not yet stopped.
    alive: AtomicUsize,
    /// Readers ever started (their names).
    started: AtomicUsize,
    ctx: Arc<Ctx>,
    /// The handlers' queue, where a request goes back with its body.
    handlers: Arc<Handoff<Pending>>,
    shutdown: Arc<AtomicBool>,
    max_body_bytes: usize,
}

impl Readers {
    pub(super) fn new(
        ctx: Arc<Ctx>,
        handlers: Arc<Handoff<Pending>>,
        shutdown: Arc<AtomicBool>,
        max_body_bytes: usize,
    ) -> Arc<Readers> {
        Arc::new(Readers {
            queue: Handoff::new(QUEUE_DEPTH),
            alive: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            ctx,
            handlers,
            shutdown,
            max_body_bytes,
        })
    }

    /// Readers running (the handlers stop only once none is: a reader may still send them a request).
    pub(super) fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }

    /// Queues a request whose body is still to come; full: gives it back. Starts a reader when none was
    /// asleep to take it (below [`BODY_READERS`]; at the cap it waits for one to be free).
    #[must_use = "a request given back must be answered"]
    pub(super) fn send(self: &Arc<Self>, pending: Pending) -> Option<Pending> {
        match self.queue.try_send(pending) {
            Ok(true) => None,
            Ok(false) => {
                self.start_one();
                None
            }
            Err(pending) => Some(pending),
        }
    }

    fn start_one(self: &Arc<Self>) {
        let reserved = self
            .alive
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < BODY_READERS).then_some(n + 1)
            });
        if reserved.is_err() {
            return;
        }
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("body-{n}"))
            .spawn(move || me.run());
        if let Err(e) = spawned {
            self.alive.fetch_sub(1, Ordering::SeqCst);
            log::error!("cannot start a body reader thread: {e}");
        }
    }

    fn run(&self) {
        let rx = self.queue.receiver();
        let mut busy_at = Instant::now();
        loop {
            match rx.recv_timeout(ACCEPT_POLL) {
                Some(pending) => {
                    read_then_dispatch(&self.ctx, &self.handlers, pending, self.max_body_bytes);
                    busy_at = Instant::now();
                }
                // Leaves only with its queue empty, and counted out under the queue's lock, so a
                // sender that found no sleeper also finds the count that lets it start a reader.
                None if (self.shutdown.load(Ordering::SeqCst)
                    || busy_at.elapsed() >= READER_IDLE)
                    && rx.leave_if_empty(|| {
                        self.alive.fetch_sub(1, Ordering::SeqCst);
                    }) =>
                {
                    return
                }
                None => {}
            }
        }
    }
}
