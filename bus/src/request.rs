//! Requests and their answers: one wildcard reply subscription and a table of waiting callers, so a
//! request costs one publish and no SUB/UNSUB; replies handed over on the connection's reading thread,
//! and publishes written out at once by the thread that made them.

use crate::{Bus, BusError, Message};
use nats::header::HeaderMap;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
// A mutex and a condvar, not crossbeam's channels: a crossbeam receiver about to block first calls
// `sched_yield` a few times, and on a busy host each of those is a context switch (a quarter of the
// API's CPU under load went there).
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most writes one caller of [`Bus::kick_flush`] makes for itself and the others.
const FLUSH_ROUNDS_MAX: usize = 8;

/// Most requests one [`Bus::request_many`] call sends at once.
pub const BATCH_MAX: usize = 256;

impl Bus {
    /// Sends buffered publishes now rather than after the crate's 5 ms delay: a socket write on this
    /// thread, bounded by the request timeout. A failed write drops the connection (the crate
    /// reconnects; the callbacks mark it down meanwhile), so the caller's wait for an answer ends in
    /// its timeout or the next call fails fast.
    ///
    /// Combined: while one thread writes, others only leave word (`flush_again`) and go on; the writer
    /// writes once more for them before it stops. Under load one write then carries many publishes,
    /// as the flusher thread's did, and the callers do not queue for the connection's lock. At most
    /// [`FLUSH_ROUNDS_MAX`] writes a caller, so a busy connection cannot keep one caller writing for
    /// the others; what it leaves goes out with the crate's own flush thread within 5 ms.
    pub(crate) fn kick_flush(&self) {
        if !self.is_connected() {
            return;
        }
        let (flushing, again) = (&self.inner.flushing, &self.inner.flush_again);
        // Word first, then the claim: a writer that stops after our claim failed still sees the word.
        again.store(true, Ordering::SeqCst);
        for _ in 0..FLUSH_ROUNDS_MAX {
            if flushing.swap(true, Ordering::SeqCst) {
                return; // another thread writes, and will see the word
            }
            again.store(false, Ordering::SeqCst);
            if let Err(e) = self.nc().flush_buffered(self.inner.request_timeout) {
                log::debug!("flush: {e}");
            }
            flushing.store(false, Ordering::SeqCst);
            if !again.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Publishes without waiting for an answer (acks to JetStream), flushed at once.
    pub fn publish(&self, subject: &str, payload: &[u8]) -> Result<(), BusError> {
        self.check_connected()?;
        self.nc()
            .publish(subject, payload)
            .map_err(|e| BusError::Unavailable(format!("publish {subject}: {e}")))?;
        self.kick_flush();
        Ok(())
    }

    /// [`Bus::publish`] left in the connection's buffer: it goes out with the connection's next write
    /// (another caller's flush, or the crate's flush thread within 5 ms). For the reading thread, which
    /// then makes no socket write of its own for it.
    pub(crate) fn publish_unflushed(&self, subject: &str, payload: &[u8]) -> Result<(), BusError> {
        self.check_connected()?;
        self.nc()
            .publish(subject, payload)
            .map_err(|e| BusError::Unavailable(format!("publish {subject}: {e}")))
    }

    /// One request with the configured timeout.
    pub fn request(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> Result<Message, BusError> {
        let mut out = self.request_many(&[(subject, headers, payload)]);
        out.pop()
            .unwrap_or_else(|| Err(BusError::Protocol("no answer slot".into())))
    }

    /// Sends several requests at once (one flush) and collects every answer, each within the
    /// configured timeout from now. At most [`BATCH_MAX`] per call; answers come in request order.
    pub fn request_many(
        &self,
        requests: &[(&str, Option<&HeaderMap>, &[u8])],
    ) -> Vec<Result<Message, BusError>> {
        if requests.len() > BATCH_MAX {
            let mut out = Vec::with_capacity(requests.len());
            for chunk in requests.chunks(BATCH_MAX) {
                out.extend(self.request_many(chunk));
            }
            return out;
        }
        self.send_many(requests, None).answers()
    }

    /// Sends at most [`BATCH_MAX`] requests at once (one flush); their answers are collected by
    /// [`Sent::answers`]. `watch`, when given, judges each answer on the reading thread as it arrives:
    /// the first it refuses (or a request that could not be sent) calls its `failed`, once.
    pub(crate) fn send_many(
        &self,
        requests: &[(&str, Option<&HeaderMap>, &[u8])],
        watch: Option<Watch>,
    ) -> Sent {
        // For the errors only: one string (a subject has no spaces) rather than one a request.
        let mut subjects =
            String::with_capacity(requests.iter().map(|(s, _, _)| s.len() + 1).sum());
        for (i, (subject, _, _)) in requests.iter().enumerate() {
            if i > 0 {
                subjects.push(' ');
            }
            subjects.push_str(subject);
        }
        // One batch for all of them: the caller is woken once, when the last answer is in (or at
        // the timeout), not once for each answer the reading thread hands over.
        let batch = Arc::new(Batch::new(requests.len(), watch));
        if let Err(e) = self.check_connected() {
            for i in 0..requests.len() {
                batch.give_up(i);
            }
            return Sent {
                bus: self.clone(),
                batch,
                tokens: requests.iter().map(|_| Err(e.clone())).collect(),
                subjects,
                sent_at: Instant::now(),
            };
        }
        let mut tokens: Vec<Result<u64, BusError>> = Vec::with_capacity(requests.len());
        for (i, (subject, headers, payload)) in requests.iter().enumerate() {
            let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
            self.waiting().insert(token, (batch.clone(), i));
            // Sized at once (`format!` grows its buffer two or three times for this one).
            let mut reply = String::with_capacity(self.inner.reply_prefix.len() + 21);
            reply.push_str(&self.inner.reply_prefix);
            reply.push('.');
            let _ = write!(reply, "{token}");
            let sent =
                self.nc()
                    .publish_with_reply_or_headers(subject, Some(&reply), *headers, payload);
            tokens.push(match sent {
                Ok(()) => Ok(token),
                Err(e) => {
                    self.waiting().remove(&token);
                    batch.give_up(i);
                    Err(BusError::Unavailable(format!("publish {subject}: {e}")))
                }
            });
        }
        self.kick_flush();
        Sent {
            bus: self.clone(),
            batch,
            tokens,
            subjects,
            sent_at: Instant::now(),
        }
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<u64, (Arc<Batch>, usize)>> {
        self.inner.waiting.lock()
    }

    /// A JetStream API call: `$JS.API.{suffix}` with a JSON body; JetStream errors become [`BusError::Api`].
    pub fn js_api(
        &self,
        suffix: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, BusError> {
        let payload = serde_json::to_vec(body).map_err(|e| BusError::Protocol(e.to_string()))?;
        let msg = self.request(&format!("$JS.API.{suffix}"), None, &payload)?;
        parse_api_answer(&msg.data)
    }
}

/// Turns a JetStream API answer into its JSON, or its `error` object into [`BusError::Api`].
pub(crate) fn parse_api_answer(data: &[u8]) -> Result<serde_json::Value, BusError> {
    let v: serde_json::Value = serde_json::from_slice(data)
        .map_err(|e| BusError::Protocol(format!("bad JetStream JSON: {e}")))?;
    if let Some(err) = v.get("error") {
        return Err(BusError::classify(
            err.get("code").and_then(|c| c.as_u64()).unwrap_or(0) as u16,
            err.get("err_code").and_then(|c| c.as_u64()).unwrap_or(0) as u32,
            err.get("description")
                .and_then(|d| d.as_str())
                .unwrap_or("unknown")
                .to_string(),
        ));
    }
    Ok(v)
}

/// Requests sent at once ([`Bus::send_many`]), their answers still to collect.
pub(crate) struct Sent {
    bus: Bus,
    batch: Arc<Batch>,
    tokens: Vec<Result<u64, BusError>>,
    /// The requests' subjects, space-separated, in request order.
    subjects: String,
    sent_at: Instant,
}

impl Sent {
    /// Whether every answer is in (or will never come: the request was not sent).
    pub(crate) fn complete(&self) -> bool {
        self.batch.lock().left == 0
    }

    /// Whether the watch refused an answer or a request could not be sent.
    pub(crate) fn failed(&self) -> bool {
        self.batch.lock().failed
    }

    /// When the answers still missing stop being waited for.
    pub(crate) fn deadline(&self) -> Instant {
        self.sent_at + self.bus.inner.request_timeout
    }

    /// Every answer, in request order, waiting until [`Sent::deadline`] for those not in yet.
    pub(crate) fn answers(self) -> Vec<Result<Message, BusError>> {
        let mut got = self.batch.wait(self.deadline());
        let answers = self
            .tokens
            .into_iter()
            .zip(self.subjects.split(' '))
            .enumerate()
            .map(|(i, (token, subject))| {
                let token = token?;
                let msg = got.get_mut(i).and_then(Option::take);
                let Some(msg) = msg else {
                    self.bus.waiting().remove(&token);
                    return Err(BusError::Unavailable(format!(
                        "no answer from {subject} in time"
                    )));
                };
                if msg.is_no_responders() {
                    return Err(BusError::Unavailable(format!("no responders on {subject}")));
                }
                Ok(msg)
            })
            .collect();
        if let Some(observe) = REQUEST_OBSERVER.get() {
            observe(self.sent_at.elapsed());
        }
        answers
    }
}

/// What the reading thread checks of a batch's answers as they arrive ([`Bus::send_many`]): `accept`
/// judges one answer; the first refused (or a request never sent) calls `failed`, once; the last
/// answer, when none was refused, calls `stored`, once. All run on the reading thread: quick, never
/// waiting for anything it delivers.
pub(crate) struct Watch {
    pub accept: fn(&Message) -> bool,
    pub failed: Box<dyn Fn() + Send + Sync>,
    pub stored: Option<Box<dyn Fn() + Send + Sync>>,
}

/// The answers of one [`Bus::send_many`] call, filled in by the reading thread.
pub(crate) struct Batch {
    state: Mutex<BatchState>,
    done: Condvar,
    watch: Option<Watch>,
}

struct BatchState {
    answers: Vec<Option<Message>>,
    /// Answers still to come (requests that could not be sent count as come).
    left: usize,
    /// The watch's `failed` has been called.
    failed: bool,
}

impl Batch {
    fn new(n: usize, watch: Option<Watch>) -> Batch {
        Batch {
            state: Mutex::new(BatchState {
                answers: (0..n).map(|_| None).collect(),
                left: n,
                failed: false,
            }),
            done: Condvar::new(),
            watch,
        }
    }

    /// Calls the watch's `failed` unless it was called already (outside the batch's lock).
    fn fail(&self, mut st: MutexGuard<'_, BatchState>) {
        let first = !std::mem::replace(&mut st.failed, true);
        drop(st);
        if let (true, Some(watch)) = (first, &self.watch) {
            (watch.failed)();
        }
    }

    fn lock(&self) -> MutexGuard<'_, BatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer `i` arrived; the caller is woken when it was the last, after the lock is released (woken
    /// under it, the caller would at once block on the lock the reading thread still holds: two more
    /// futex calls and a context switch a request).
    fn put(&self, i: usize, msg: Message) {
        let refused = self.watch.as_ref().is_some_and(|w| !(w.accept)(&msg));
        let mut st = self.lock();
        let last = match st.answers.get_mut(i) {
            Some(slot @ None) => {
                *slot = Some(msg);
                st.left = st.left.saturating_sub(1);
                st.left == 0
            }
            _ => false,
        };
        if refused {
            self.fail(st);
        } else {
            let accepted = last && !st.failed;
            drop(st);
            if let (true, Some(stored)) = (
                accepted,
                self.watch.as_ref().and_then(|w| w.stored.as_ref()),
            ) {
                stored();
            }
        }
        if last {
            self.done.notify_one();
        }
    }

    /// Request `i` was never sent: no answer to wait for.
    fn give_up(&self, i: usize) {
        let mut st = self.lock();
        if st.answers.get(i).is_some_and(Option::is_none) {
            st.left = st.left.saturating_sub(1);
        }
        self.fail(st);
    }

    /// Every answer, or those in by `deadline`.
    fn wait(&self, deadline: Instant) -> Vec<Option<Message>> {
        let mut st = self.lock();
        while st.left > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = match self.done.wait_timeout(st, left) {
                Ok((st, _)) => st,
                Err(p) => p.into_inner().0,
            };
        }
        std::mem::take(&mut st.answers)
    }
}

/// The callers waiting for a reply, by token: the batch and the answer's place in it.
#[derive(Default)]
pub(crate) struct Waiting(Mutex<HashMap<u64, (Arc<Batch>, usize)>>);

impl Waiting {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, (Arc<Batch>, usize)>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands a reply to the caller waiting on its token, on the connection's reading thread (quick,
    /// never blocks for long: a batch's lock is held only to fill a slot); replies nobody waits for
    /// (timed out) are dropped.
    pub(crate) fn deliver(&self, msg: Message) {
        let token = msg
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse::<u64>().ok());
        let Some(token) = token else { return };
        let waiter = self.lock().remove(&token);
        if let Some((batch, i)) = waiter {
            batch.put(i, msg);
        }
    }
}

static REQUEST_OBSERVER: std::sync::OnceLock<fn(Duration)> = std::sync::OnceLock::new();

/// Sets the function told how long each NATS round trip (one request, or one batch sent at once) took,
/// for a daemon's metrics. Once per process; later calls are ignored.
pub fn observe_requests(observe: fn(Duration)) {
    let _ = REQUEST_OBSERVER.set(observe);
}

/// Builds a header map from pairs.
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.to_string());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(token: u64) -> Message {
        Message::new(&format!("_INBOX.x.{token}"), None, b"ok", None)
    }

    #[test]
    fn a_batch_wakes_its_caller_once_every_answer_is_in() {
        let waiting = Arc::new(Waiting::default());
        let batch = Arc::new(Batch::new(3, None));
        for (token, i) in [(7, 0), (8, 1), (9, 2)] {
            waiting.lock().insert(token, (batch.clone(), i));
        }
        let reader = {
            let waiting = waiting.clone();
            // The reading thread, answers out of order.
            std::thread::spawn(move || [9, 7, 8].map(|t| waiting.deliver(answer(t))))
        };
        let started = Instant::now();
        let got = batch.wait(started + Duration::from_secs(10));
        let _ = reader.join();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "woken by the last answer, not by the deadline"
        );
        let subjects: Vec<_> = got
            .iter()
            .map(|m| m.as_ref().map(|m| m.subject.clone()))
            .collect();
        assert_eq!(
            subjects,
            [7, 8, 9].map(|t| Some(format!("_INBOX.x.{t}"))),
            "each answer in its request's place"
        );
        assert!(waiting.lock().is_empty());
    }

    #[test]
    fn a_batch_returns_what_came_by_its_deadline_and_drops_what_comes_after() {
        let waiting = Waiting::default();
        let batch = Arc::new(Batch::new(3, None));
        for (token, i) in [(1, 0), (2, 1)] {
            waiting.lock().insert(token, (batch.clone(), i));
        }
        // Request 2 was never sent: nothing to wait for.
        batch.give_up(2);
        waiting.deliver(answer(1));
        let started = Instant::now();
        let got = batch.wait(started + Duration::from_millis(50));
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "waited out the deadline"
        );
        assert!(got[0].is_some() && got[1].is_none() && got[2].is_none());
        // A late answer finds the batch emptied: dropped, never a panic.
        waiting.deliver(answer(2));
        // An answer nobody waits for (timed out and removed) is dropped as well.
        waiting.deliver(answer(99));
    }

    #[test]
    fn a_batch_of_requests_that_were_never_sent_does_not_wait() {
        let batch = Batch::new(2, None);
        batch.give_up(0);
        batch.give_up(1);
        let started = Instant::now();
        let got = batch.wait(started + Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(got.iter().all(Option::is_none));
    }
}
