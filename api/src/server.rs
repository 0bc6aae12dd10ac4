//! HTTP serving on tiny_http, with the limits tiny_http lacks (STYLE.md): a fixed set of handler threads,
//! a bounded queue (503 when full), a body cap checked before reading (413), and exactly one place that
//! responds to every request, so no request is ever dropped unanswered.

use crate::error::ApiError;
use crate::handlers::{Body, Reply};
use crate::routes::{self, Ctx, Query};
use crossbeam_channel::{bounded, TrySendError};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Request, Response, Server};

/// Threads answering requests; also bounds the requests in progress.
pub const HANDLER_THREADS: usize = 16;
/// Requests accepted but not yet picked up; past this the API answers 503 at once.
pub const QUEUE_DEPTH: usize = 256;
/// How often the accept loop looks at the shutdown flag.
const ACCEPT_POLL: Duration = Duration::from_millis(200);

/// How long a connection may stay silent while the server reads a request, or stall while it writes
/// an answer, before it is closed: slow or idle clients cannot hold tiny_http's threads.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

fn set_option<T>(fd: libc::c_int, level: libc::c_int, name: libc::c_int, value: &T) -> bool {
    // SAFETY: a valid fd we own, a pointer to a live value and its exact size.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        ) == 0
    }
}

/// Binds the listening socket. Linux passes these options on to every accepted connection:
/// - `TCP_NODELAY`: tiny_http writes a response's head and body separately, and with Nagle's algorithm
///   the body would wait for the client's delayed ACK (~40 ms on a kept-alive connection);
/// - `SO_RCVTIMEO`/`SO_SNDTIMEO` of [`SOCKET_TIMEOUT`]: tiny_http sets no timeouts of its own.
pub fn bind(addr: &str) -> Result<Server, String> {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| e.to_string())?;
    let fd = listener.as_raw_fd();
    let one: libc::c_int = 1;
    let timeout = libc::timeval {
        tv_sec: SOCKET_TIMEOUT.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    let set = set_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &one)
        && set_option(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)
        && set_option(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &timeout);
    if !set {
        log::warn!(
            "socket options not set: {}",
            std::io::Error::last_os_error()
        );
    }
    Server::from_listener(listener, None).map_err(|e| e.to_string())
}

/// Serves until `shutdown` is set, then lets the handler threads finish what they hold.
pub fn serve(server: Server, ctx: Arc<Ctx>, max_body_bytes: usize, shutdown: Arc<AtomicBool>) {
    let (tx, rx) = bounded::<Request>(QUEUE_DEPTH);
    let mut handlers = Vec::with_capacity(HANDLER_THREADS);
    for n in 0..HANDLER_THREADS {
        let (rx, ctx) = (rx.clone(), ctx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("http-{n}"))
            .spawn(move || {
                for req in rx.iter() {
                    handle(&ctx, req, max_body_bytes);
                }
            });
        match spawned {
            Ok(h) => handlers.push(h),
            Err(e) => log::error!("cannot start handler thread {n}: {e}"),
        }
    }
    while !shutdown.load(Ordering::SeqCst) {
        let req = match server.recv_timeout(ACCEPT_POLL) {
            Ok(Some(req)) => req,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("accept: {e}");
                continue;
            }
        };
        match tx.try_send(req) {
            Ok(()) => {}
            Err(TrySendError::Full(req)) | Err(TrySendError::Disconnected(req)) => {
                let busy = ApiError::unavailable("too many requests in progress; try again");
                respond(req, Err(busy));
            }
        }
    }
    drop(tx);
    for h in handlers {
        let _ = h.join();
    }
}

fn handle(ctx: &Ctx, mut req: Request, max_body_bytes: usize) {
    let method = req.method().as_str().to_string();
    let url = req.url().to_string();
    let (path, raw_query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let body = match read_body(&mut req, max_body_bytes) {
        Ok(b) => b,
        Err(e) => return respond(req, Err(e)),
    };
    let authorization = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let outcome = routes::route(
        ctx,
        &routes::Incoming {
            method: &method,
            path,
            query: &Query::parse(raw_query),
            body: &body,
            authorization: authorization.as_deref(),
        },
    );
    if let Err(e) = &outcome {
        if e.status >= 500 {
            log::warn!("{method} {path}: {} ({})", e.error, e.details);
        }
    }
    respond(req, outcome);
}

/// Reads the body, refusing one over the cap before reading it when Content-Length says so.
fn read_body(req: &mut Request, max: usize) -> Result<Vec<u8>, ApiError> {
    if req.body_length().is_some_and(|n| n > max) {
        return Err(ApiError::too_large(max));
    }
    let mut body = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    req.as_reader()
        .take(limit)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?;
    if body.len() > max {
        return Err(ApiError::too_large(max));
    }
    Ok(body)
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
