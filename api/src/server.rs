//! HTTP serving on tiny_http, with the limits tiny_http lacks: a fixed set of handler threads,
//! a bounded queue (503 when full), the token checked from the head before any body is read (401/403
//! never read it), a body cap checked before reading (413), bodies tiny_http has not buffered read by
//! separate threads within a deadline (a slow upload never holds a handler), and exactly one place that
//! responds to every request, so no request is ever dropped unanswered. The bounds on heads, connections
//! and connection threads live in the vendored tiny_http (`vendor/tiny_http/PATCHES.md`).

use crate::audit;
use crate::error::ApiError;
use crate::handlers::{Body, Reply};
use crate::routes::{self, Ctx, Query};
use crossbeam_channel::{bounded, RecvTimeoutError, TrySendError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tiny_http::{Header, Request, Response, Server};

/// Threads answering requests; also bounds the requests in progress.
pub const HANDLER_THREADS: usize = 32;
/// Requests accepted but not yet picked up; past this the API answers 503 at once.
pub const QUEUE_DEPTH: usize = 256;
/// Threads reading request bodies that tiny_http has not buffered (over 1 KiB, or chunked), so a slow
/// upload holds one of these, never a handler thread.
pub const BODY_READERS: usize = 32;
/// Longest time a whole body may take to arrive; past it the answer is 408.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// tiny_http reads bodies up to this size itself, before it hands the request over.
const BUFFERED_BODY_MAX: usize = 1024;
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
pub fn bind(addr: &str, max_connections: usize) -> Result<Server, String> {
    warn_if_too_few_fds(max_connections);
    let listener = std::net::TcpListener::bind(addr).map_err(|e| e.to_string())?;
    Server::from_listener_limited(listener, None, max_connections).map_err(|e| e.to_string())
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

/// Serves until `shutdown` is set, then lets the handler threads finish what they hold.
///
/// Requests whose body tiny_http has already buffered go straight to the handlers; the others first pass
/// through [`BODY_READERS`] threads that read the body within [`BODY_DEADLINE`], so slow uploads can never
/// occupy the handler threads. Either queue full: 503 at once.
pub fn serve(
    server: Server,
    ctx: Arc<Ctx>,
    max_body_bytes: usize,
    shutdown: Arc<AtomicBool>,
) -> Result<(), String> {
    let (tx, rx) = bounded::<(Request, Option<Vec<u8>>)>(QUEUE_DEPTH);
    let (body_tx, body_rx) = bounded::<Request>(QUEUE_DEPTH);
    let mut handlers = Vec::with_capacity(HANDLER_THREADS + BODY_READERS);
    for n in 0..HANDLER_THREADS {
        let (rx, ctx, body_tx) = (rx.clone(), ctx.clone(), body_tx.clone());
        let shutdown = shutdown.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("http-{n}"))
            .spawn(move || loop {
                // Handlers and body readers send to each other, so neither queue closes by itself:
                // handlers stop on the flag once their queue is empty, which then ends the readers.
                match rx.recv_timeout(ACCEPT_POLL) {
                    Ok((req, body)) => handle(&ctx, &body_tx, req, body, max_body_bytes),
                    Err(RecvTimeoutError::Timeout) if !shutdown.load(Ordering::SeqCst) => {}
                    Err(_) => break,
                }
            });
        match spawned {
            Ok(h) => handlers.push(h),
            Err(e) => log::error!("cannot start handler thread {n}: {e}"),
        }
    }
    drop(body_tx);
    for n in 0..BODY_READERS {
        let (body_rx, tx) = (body_rx.clone(), tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("body-{n}"))
            .spawn(move || {
                for mut req in body_rx.iter() {
                    match read_body(&mut req, max_body_bytes) {
                        Ok(body) => dispatch(&tx, req, Some(body)),
                        Err(e) => respond(req, Err(e)),
                    }
                }
            });
        match spawned {
            Ok(h) => handlers.push(h),
            Err(e) => log::error!("cannot start body reader thread {n}: {e}"),
        }
    }
    let mut outcome = Ok(());
    while !shutdown.load(Ordering::SeqCst) {
        match server.recv_timeout(ACCEPT_POLL) {
            Ok(Some(req)) => dispatch(&tx, req, None),
            Ok(None) => continue,
            Err(e) => {
                // The (patched) accept thread never gives up; an error here means the server is gone.
                // Exit non-zero so that the supervisor restarts the API.
                outcome = Err(format!("the HTTP server stopped: {e}"));
                break;
            }
        }
    }
    drop(tx);
    for h in handlers {
        let _ = h.join();
    }
    outcome
}

fn dispatch(
    tx: &crossbeam_channel::Sender<(Request, Option<Vec<u8>>)>,
    req: Request,
    body: Option<Vec<u8>>,
) {
    if let Err(TrySendError::Full((req, _)) | TrySendError::Disconnected((req, _))) =
        tx.try_send((req, body))
    {
        respond(
            req,
            Err(ApiError::unavailable(
                "too many requests in progress; try again",
            )),
        );
    }
}

/// What the head alone decides about a request that has just arrived.
enum Admission {
    /// Answer now, without reading the body (a refused body is never read: the connection closes).
    Refused(ApiError),
    /// The body, already in memory (tiny_http buffers small ones).
    Ready(Vec<u8>),
    /// The body is still on the wire: for the body readers.
    Streamed,
}

fn admit(ctx: &Ctx, req: &mut Request, max_body_bytes: usize) -> Admission {
    let url = req.url().to_string();
    let path = url.split_once('?').map_or(url.as_str(), |(p, _)| p);
    let authorization = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    if let Err(e) = routes::authorize(ctx, req.method().as_str(), path, authorization.as_deref()) {
        return Admission::Refused(e);
    }
    if req.body_length().is_some_and(|n| n > max_body_bytes) {
        return Admission::Refused(ApiError::too_large(max_body_bytes));
    }
    let buffered = req.body_length().is_some_and(|n| n <= BUFFERED_BODY_MAX)
        && !req.headers().iter().any(|h| h.field.equiv("Expect"));
    if !buffered {
        return Admission::Streamed;
    }
    match read_body(req, max_body_bytes) {
        Ok(body) => Admission::Ready(body),
        Err(e) => Admission::Refused(e),
    }
}

/// Handles one request. On its first visit (`body` None) the head decides: refused at once, or the
/// body is in memory, or the request goes to the body readers and comes back with its body.
fn handle(
    ctx: &Ctx,
    body_tx: &crossbeam_channel::Sender<Request>,
    mut req: Request,
    body: Option<Vec<u8>>,
    max_body_bytes: usize,
) {
    let started = Instant::now();
    let body = match body {
        Some(body) => body,
        None => match admit(ctx, &mut req, max_body_bytes) {
            Admission::Ready(body) => body,
            Admission::Refused(e) => return respond_on_record(ctx, req, Err(e), started),
            Admission::Streamed => {
                if let Err(TrySendError::Full(req) | TrySendError::Disconnected(req)) =
                    body_tx.try_send(req)
                {
                    respond(
                        req,
                        Err(ApiError::unavailable(
                            "too many uploads in progress; try again",
                        )),
                    );
                }
                return;
            }
        },
    };
    let method = req.method().as_str().to_string();
    let url = req.url().to_string();
    let (path, raw_query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let authorization = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let idempotency_key = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Idempotency-Key"))
        .map(|h| h.value.as_str().to_string());
    let started = std::time::Instant::now();
    let outcome = routes::route(
        ctx,
        &routes::Incoming {
            method: &method,
            path,
            query: &Query::parse(raw_query),
            body: &body,
            authorization: authorization.as_deref(),
            idempotency_key: idempotency_key.as_deref(),
        },
    );
    let code = match &outcome {
        Ok(reply) => reply.status,
        Err(e) => e.status,
    };
    crate::metrics::observe_http(
        &method,
        routes::template(&method, path),
        code,
        started.elapsed(),
    );
    if let Err(e) = &outcome {
        if e.status >= 500 {
            log::warn!("{method} {path}: {} ({})", e.error, e.details);
        }
    }
    respond_on_record(ctx, req, outcome, started);
}

/// Answers, then puts the request on the audit trail when it is one the trail keeps (`audit.rs`): after
/// the answer, so the trail never slows a client down.
fn respond_on_record(ctx: &Ctx, req: Request, outcome: Result<Reply, ApiError>, started: Instant) {
    let method = req.method().as_str().to_string();
    let url = req.url().to_string();
    let path = url.split_once('?').map_or(url.as_str(), |(p, _)| p);
    let authorization = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let seen = audit::Seen {
        method: &method,
        path,
        authorization: authorization.as_deref(),
        source: req.remote_addr().copied(),
        started,
    };
    let entry = audit::entry(ctx, &seen, &outcome);
    respond(req, outcome);
    if let Some(entry) = entry {
        ctx.audit.append(&entry);
    }
}

/// Reads the body, refusing one over the cap before reading it when Content-Length says so, and one
/// that takes longer than [`BODY_DEADLINE`] to arrive.
fn read_body(req: &mut Request, max: usize) -> Result<Vec<u8>, ApiError> {
    if req.body_length().is_some_and(|n| n > max) {
        return Err(ApiError::too_large(max));
    }
    let started = std::time::Instant::now();
    let mut body = Vec::new();
    let mut chunk = [0_u8; 16 * 1024];
    let reader = req.as_reader();
    loop {
        let n = reader
            .read(&mut chunk)
            .map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?;
        if n == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..n]);
        if body.len() > max {
            return Err(ApiError::too_large(max));
        }
        if started.elapsed() > BODY_DEADLINE {
            return Err(ApiError::bad_request(format!(
                "request body took longer than {}s to arrive",
                BODY_DEADLINE.as_secs()
            )));
        }
    }
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

/// The one place that answers a request.
fn respond(req: Request, outcome: Result<Reply, ApiError>) {
    let (status, body, extra) = match outcome {
        Ok(reply) => (reply.status, reply.body, None),
        Err(e) => (e.status, Body::Json(e.body()), e.header),
    };
    let (bytes, content_type) = match body {
        Body::None => (Vec::new(), None),
        Body::Json(v) => (v.to_string().into_bytes(), Some("application/json")),
        Body::Text(text, ct) => (text.as_bytes().to_vec(), Some(ct)),
    };
    let mut response = Response::from_data(bytes).with_status_code(status);
    if let Some(h) = content_type.and_then(|ct| header("Content-Type", ct)) {
        response.add_header(h);
    }
    if let Some(h) = extra.and_then(|(name, value)| header(name, value)) {
        response.add_header(h);
    }
    if let Err(e) = req.respond(response) {
        log::debug!("client went away before the answer: {e}");
    }
}
