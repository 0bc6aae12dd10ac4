//! HTTP serving on tiny_http, with the limits tiny_http lacks: a request runs on its connection's own
//! thread while fewer than [`INLINE_MAX`] do, past that on a fixed set of handler threads through a
//! bounded queue (503 when full), the token verified once from the head before any body byte is read
//! (401/403 never read it, and until it passes the connection stays evictable at the connection cap), a
//! body cap checked before reading (413), bodies read by separate threads within a real deadline (408;
//! a slow upload never holds a handler), and exactly one path, [`record`], that counts, answers and
//! audits every request, refusals included, so no request is dropped unanswered or unrecorded. The
//! bounds on heads, connections and connection threads live in the vendored tiny_http
//! (`vendor/tiny_http/PATCHES.md`).

use crate::auth::Verdict;
use crate::error::ApiError;
use crate::handlers::Reply;
use crate::routes::{self, Authorized, Ctx, Query};
use answer::record;
use body::{read_body, BodyError};
use handoff::Handoff;
use osapi_bus::sync::Wakeup;
use readers::Readers;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tiny_http::{Request, Server};

mod answer;
mod body;
mod handoff;
mod readers;

/// Requests handled on the thread of the connection they came on, at once, without a hop to a
/// handler thread (a thread switch costs the sender a wake-up and the handler a switch in and out: on
/// a 2-core host that was a tenth of the API's CPU a job). Past this many at once, a request queues
/// for the handler threads.
pub const INLINE_MAX: usize = 32;
/// Threads answering the requests queued past [`INLINE_MAX`] and those back from the body readers;
/// with it, bounds the requests in progress (`INLINE_MAX + HANDLER_THREADS`).
pub const HANDLER_THREADS: usize = 32;
/// Requests accepted but not yet picked up; past this the API answers 503 at once.
pub const QUEUE_DEPTH: usize = 256;
/// Most threads reading request bodies at once (every body: the vendored tiny_http reads none itself),
/// so a slow upload holds one of these, never a handler thread; started when a body waits and none is
/// free, stopped after 10 s with nothing to do (`server/readers.rs`).
pub const BODY_READERS: usize = 32;
/// Longest time a whole body may take to arrive, counted from when its token passed (time in the body
/// readers' queue included); past it the answer is 408. Every socket read of the body is bounded by the
/// time left, so this is the real bound.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// Bodies up to this size (by `Content-Length`) are first read by the handler itself...
const HANDLER_BODY_MAX: usize = 16 * 1024;
/// ...waiting at most this long for what has not arrived with the head; the rest is the body readers'.
const HANDLER_BODY_WAIT: Duration = Duration::from_millis(1);
/// How often the accept loop looks at the shutdown flag.
const ACCEPT_POLL: Duration = Duration::from_millis(200);

/// Descriptors one connection holds in the vendored tiny_http: its reading and writing halves and the
/// registry's handle that closes it when it is evicted.
const FDS_PER_CONNECTION: u64 = 3;
/// Descriptors the API needs besides its connections (NATS, the listener, logs, a margin).
const FDS_RESERVED: u64 = 64;

/// Binds the listening socket; at most `max_connections` connections are open at once (each with its
/// own thread). Each accepted connection gets `TCP_NODELAY` and 10 s read/write timeouts in the vendored
/// tiny_http (`vendor/tiny_http/PATCHES.md`): options on the listener would be inherited, but
/// `SO_RCVTIMEO` there also times out `accept(2)`, which ended tiny_http's accept loop.
pub fn bind(addr: &str, max_connections: usize) -> Result<Bound, String> {
    warn_if_too_few_fds(max_connections);
    let listener = std::net::TcpListener::bind(addr).map_err(|e| e.to_string())?;
    Ok(Bound {
        listener,
        max_connections,
    })
}

/// The bound socket; [`serve`] starts accepting on it.
pub struct Bound {
    listener: std::net::TcpListener,
    max_connections: usize,
}

/// The cap on connections only holds if the process may open that many descriptors; otherwise
/// `accept` fails first (logged and retried, never fatal). Says so at start rather than under a flood.
fn warn_if_too_few_fds(max_connections: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<u64>().ok());
    let needed = max_connections as u64 * FDS_PER_CONNECTION + FDS_RESERVED;
    if let Some(soft) = soft.filter(|soft| *soft < needed) {
        log::warn!(
            "api.server.max_connections is {max_connections} but the open-file limit is {soft} (needs {needed}): \
             raise LimitNOFILE (ulimit -n) or lower max_connections"
        );
    }
}

thread_local! {
    /// This connection thread runs as `SCHED_BATCH` already.
    static BATCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Serves until `shutdown` is set, then lets the handler threads finish what they hold.
///
/// A handler first checks the head (token, then declared size); a request with no body, or a small body
/// that arrived with its head, is routed at once; the others pass through [`BODY_READERS`] threads that
/// read the body within [`BODY_DEADLINE`] and come back to a handler, so slow uploads never occupy the
/// handler threads (a handler waits at most [`HANDLER_BODY_WAIT`] for a body). Either queue full: 503
/// at once. Every answer, refusals included, goes through [`record`].
pub fn serve(
    bound: Bound,
    ctx: Arc<Ctx>,
    max_body_bytes: usize,
    shutdown: Arc<AtomicBool>,
) -> Result<(), String> {
    let tx = Arc::new(Handoff::<Pending>::new(QUEUE_DEPTH));
    // Handlers and body readers send to each other: on shutdown the readers stop once their queue is
    // empty, and the handlers once theirs is and no reader runs (none can send them more).
    let readers = Readers::new(ctx.clone(), tx.clone(), shutdown.clone(), max_body_bytes);
    // Each connection thread handles its request itself while fewer than `INLINE_MAX` do (no thread
    // hop at all), else queues it for the handlers (one hop); that queue full: 503 at once.
    let inline = Arc::new(Inline::default());
    let sink: tiny_http::Sink = {
        let (ctx, tx, readers) = (ctx.clone(), tx.clone(), readers.clone());
        let (inline, shutdown) = (inline.clone(), shutdown.clone());
        Arc::new(move |req| {
            BATCHED.with(|b| {
                if !b.replace(true) {
                    osapi_bus::sync::batch_scheduling();
                }
            });
            let pending = Pending::new(req);
            match inline.enter(&shutdown) {
                Some(_slot) => handle(&ctx, &readers, pending, max_body_bytes),
                None => dispatch(&ctx, &tx, pending),
            }
        })
    };
    let server =
        Server::from_listener_with_sink(bound.listener, None, bound.max_connections, Some(sink))
            .map_err(|e| e.to_string())?;
    let mut handlers = Vec::with_capacity(HANDLER_THREADS);
    for n in 0..HANDLER_THREADS {
        let (rx, ctx, readers) = (tx.clone(), ctx.clone(), readers.clone());
        let shutdown = shutdown.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("http-{n}"))
            .spawn(move || {
                let rx = rx.receiver();
                loop {
                    match rx.recv_timeout(ACCEPT_POLL) {
                        Some(pending) => handle(&ctx, &readers, pending, max_body_bytes),
                        None if shutdown.load(Ordering::SeqCst) && readers.alive() == 0 => break,
                        None => {}
                    }
                }
            });
        match spawned {
            Ok(h) => handlers.push(h),
            Err(e) => log::error!("cannot start handler thread {n}: {e}"),
        }
    }
    // Plain HTTP requests arrive through the sink; this loop watches the shutdown flag (and would take
    // any request tiny_http queued for `recv` itself).
    let mut outcome = Ok(());
    while !shutdown.load(Ordering::SeqCst) {
        match server.recv_timeout(ACCEPT_POLL) {
            Ok(Some(req)) => dispatch(&ctx, &tx, Pending::new(req)),
            Ok(None) => continue,
            Err(e) => {
                // The (patched) accept thread never gives up; an error here means the server is gone.
                // Exit non-zero so that the supervisor restarts the API.
                outcome = Err(format!("the HTTP server stopped: {e}"));
                // Let the threads stop as on a signal.
                shutdown.store(true, Ordering::SeqCst);
                break;
            }
        }
    }
    // The handlers stop after the body readers (which are not joined: they are started on demand);
    // the requests running on connection threads are waited for too (the server, dropped after them,
    // closes every connection).
    for h in handlers {
        let _ = h.join();
    }
    inline.wait_idle();
    outcome
}

/// The requests running on their connection's own thread (see [`INLINE_MAX`]).
#[derive(Default)]
struct Inline {
    running: Mutex<usize>,
    /// Only shutdown waits on it: the last request out notifies nobody most of the time.
    idle: Wakeup,
}

/// One request's place among [`INLINE_MAX`]; freed when dropped.
struct InlineSlot<'a>(&'a Inline);

impl Inline {
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more request on its connection thread: none while `INLINE_MAX` run, or once
    /// the API is stopping (the request then goes to the handlers, which answer what they hold).
    fn enter(&self, shutdown: &AtomicBool) -> Option<InlineSlot<'_>> {
        let mut running = self.lock();
        if *running >= INLINE_MAX || shutdown.load(Ordering::SeqCst) {
            return None;
        }
        *running += 1;
        Some(InlineSlot(self))
    }

    /// Returns once no request runs on a connection thread.
    fn wait_idle(&self) {
        let mut running = self.lock();
        while *running > 0 {
            running = self.idle.wait(running);
        }
    }
}

impl Drop for InlineSlot<'_> {
    fn drop(&mut self) {
        let mut running = self.0.lock();
        *running -= 1;
        let idle = *running == 0;
        drop(running);
        if idle {
            self.0.idle.notify_all();
        }
    }
}

/// A body reader's work: read the admitted request's body within its deadline, then back to a handler.
fn read_then_dispatch(
    ctx: &Ctx,
    tx: &Handoff<Pending>,
    mut pending: Pending,
    max_body_bytes: usize,
) {
    let Stage::Body(access) = std::mem::replace(&mut pending.stage, Stage::Head) else {
        // Only a handler that admitted a request sends it here.
        return record(
            ctx,
            pending,
            Err(ApiError::bad_request("request not admitted")),
        );
    };
    let until = pending.body_deadline;
    match read_body(&mut pending.req, &mut pending.body, max_body_bytes, until) {
        Ok(()) => {
            let body = std::mem::take(&mut pending.body);
            pending.stage = Stage::Ready(access, body);
            dispatch(ctx, tx, pending);
        }
        Err(e) => record(ctx, pending, Err(e.into_error())),
    }
}

/// A request on its way through the server, with what is known of it so far.
pub(super) struct Pending {
    pub(super) req: Request,
    /// When its head arrived: the duration the audit trail and the metrics give covers the queues and
    /// the body too.
    pub(super) started: Instant,
    /// The one verification of its token (`None` until a handler has checked the head).
    pub(super) verdict: Option<Verdict>,
    stage: Stage,
    /// The body read so far, and when all of it must have arrived.
    body: Vec<u8>,
    body_deadline: Instant,
}

/// How far a request has come.
enum Stage {
    /// Only the head has been read.
    Head,
    /// Authorized, its body still on the wire: for the body readers.
    Body(Authorized),
    /// Authorized, with its whole body: for the router.
    Ready(Authorized, Vec<u8>),
}

impl Pending {
    fn new(req: Request) -> Pending {
        Pending {
            req,
            started: Instant::now(),
            verdict: None,
            stage: Stage::Head,
            body: Vec::new(),
            body_deadline: Instant::now() + BODY_DEADLINE,
        }
    }
}

/// Queues a request for the handlers; full: 503 at once.
fn dispatch(ctx: &Ctx, tx: &Handoff<Pending>, pending: Pending) {
    if let Err(pending) = tx.try_send(pending) {
        let busy = ApiError::unavailable("too many requests in progress; try again");
        record(ctx, pending, Err(busy));
    }
}

/// Handles one request: on its first visit the head decides (refused, routed at once, or sent to the
/// body readers); back from them with its body, it is routed.
fn handle(ctx: &Ctx, readers: &Arc<Readers>, mut pending: Pending, max_body_bytes: usize) {
    loop {
        match std::mem::replace(&mut pending.stage, Stage::Head) {
            Stage::Head => match admit(ctx, &mut pending, max_body_bytes) {
                Ok(next) => pending.stage = next,
                Err(e) => return record(ctx, pending, Err(e)),
            },
            Stage::Body(access) => {
                pending.stage = Stage::Body(access);
                if let Some(pending) = readers.send(pending) {
                    let busy = ApiError::unavailable("too many uploads in progress; try again");
                    record(ctx, pending, Err(busy));
                }
                return;
            }
            Stage::Ready(access, body) => {
                let outcome = route(ctx, &pending.req, &access, &body);
                return record(ctx, pending, outcome);
            }
        }
    }
}

/// What the head alone decides, before any body byte is read: the token (verified here, once), then
/// the declared size. A refused request's body is never read (the connection closes after the answer).
/// Until the token passes, the request leaves its connection evictable at the connection cap.
fn admit(ctx: &Ctx, pending: &mut Pending, max_body_bytes: usize) -> Result<Stage, ApiError> {
    let req = &mut pending.req;
    let verdict = ctx.auth.verify(header_value(req, "Authorization"));
    let url = req.url();
    let path = url.split_once('?').map_or(url, |(p, _)| p);
    let access = routes::authorize(req.method().as_str(), path, &verdict);
    pending.verdict = Some(verdict);
    let access = access?;
    req.hold_connection();
    if req.body_length().is_some_and(|n| n > max_body_bytes) {
        return Err(ApiError::too_large(max_body_bytes));
    }
    let has_body = match req.body_length() {
        Some(n) => n > 0,
        None => header_value(req, "Transfer-Encoding").is_some(),
    };
    if !has_body {
        return Ok(Stage::Ready(access, Vec::new()));
    }
    // A small body usually came with its head and is already buffered: read it here, waiting at most
    // `HANDLER_BODY_WAIT`, rather than pay two thread hops. What has not arrived by then is left, with
    // what has, to the body readers. Chunked bodies always go to them (a chunk decoder interrupted by a
    // timeout cannot resume).
    pending.body_deadline = Instant::now() + BODY_DEADLINE;
    if req.body_length().is_none_or(|n| n > HANDLER_BODY_MAX) {
        return Ok(Stage::Body(access));
    }
    let until = (Instant::now() + HANDLER_BODY_WAIT).min(pending.body_deadline);
    match read_body(req, &mut pending.body, max_body_bytes, until) {
        Ok(()) => Ok(Stage::Ready(access, std::mem::take(&mut pending.body))),
        Err(BodyError::Late) => Ok(Stage::Body(access)),
        Err(BodyError::Refused(e)) => Err(e),
    }
}

/// Calls the router with an authorized request and its body.
fn route(ctx: &Ctx, req: &Request, access: &Authorized, body: &[u8]) -> Result<Reply, ApiError> {
    let method = req.method().as_str();
    let url = req.url();
    let (path, raw_query) = url.split_once('?').unwrap_or((url, ""));
    let outcome = routes::route(
        ctx,
        &routes::Incoming {
            method,
            path,
            query: &Query::parse(raw_query),
            body,
            access,
            idempotency_key: header_value(req, "Idempotency-Key"),
        },
    );
    if let Err(e) = &outcome {
        if e.status >= 500 {
            log::warn!("{method} {path}: {} ({})", e.error, e.details);
        }
    }
    outcome
}

/// A request header's value.
pub(super) fn header_value<'r>(req: &'r Request, name: &'static str) -> Option<&'r str> {
    req.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}
