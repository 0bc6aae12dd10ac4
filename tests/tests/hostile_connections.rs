//! Many connections against the API's connection cap, from an attacker's side: thousands of idle ones, a
//! small cap filled with busy or idle keep-alive connections, and tokenless posts trickling their bodies.
//! None may lock out a new client or grow the API's threads past the cap; threads are read from
//! `/proc/PID/status` of the real `osapi-api`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use osapi_tests::edge::{proc_status, read_all};
use osapi_tests::{
    admin_token, free_port, request, request_as, wait_until, Api, Cluster, ExtraConfig, NatsServer,
    Options,
};

/// The default `api.server.max_connections`.
const MAX_CONNECTIONS: usize = 1024;
/// Threads of the API besides its connection threads: 32 handlers, up to 32 body readers (started on
/// demand), the accept thread, the main thread, NATS client threads, the index watch, logging: measured
/// ~75 when 32 body readers ran from the start; plus the threads of evicted connections still on their
/// way out while their successors start (on a machine with a load of 30, 1,178 threads were seen once).
/// Far below what 3,000 connections would take unbounded.
const OTHER_THREADS_MAX: usize = 250;

/// Raises this process's soft descriptor limit to its hard limit (the API started after it inherits it).
fn raise_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = limit.rlim_max.min(wanted);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= wanted,
        "the hard descriptor limit {} is below the {wanted} this test needs (ulimit -Hn)",
        limit.rlim_max
    );
}

#[test]
fn thousands_of_idle_connections_leave_health_answering_with_bounded_threads() {
    const IDLE: usize = 3_000;
    // Ours (3,000) plus the API's (3 per connection it holds) plus NATS and margin.
    raise_fd_limit(8_192);
    let cluster = Cluster::start(&[]);
    let pid = cluster.api.pid();
    let threads_before = proc_status(pid, "Threads");
    let rss_before = proc_status(pid, "VmRSS");

    let mut idle = Vec::with_capacity(IDLE);
    for n in 0..IDLE {
        match TcpStream::connect(("127.0.0.1", cluster.api.port())) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connection {n} refused by the kernel: {e}"),
        }
    }
    let mut threads_peak = 0;
    for round in 0..5 {
        let asked = Instant::now();
        let resp = request_as(None, &cluster.api.base_url(), "GET", "/health", None)
            .unwrap_or_else(|e| panic!("round {round}: /health with {IDLE} idle connections: {e}"));
        let took = asked.elapsed();
        assert_eq!(resp.status, 200, "round {round}: {}", resp.text);
        assert!(
            took < Duration::from_secs(1),
            "round {round}: /health took {took:?} with {IDLE} idle connections open"
        );
        threads_peak = threads_peak.max(proc_status(pid, "Threads") as usize);
    }
    let rss = proc_status(pid, "VmRSS");
    assert!(
        threads_peak <= MAX_CONNECTIONS + OTHER_THREADS_MAX,
        "{threads_peak} threads with {IDLE} idle connections (cap {MAX_CONNECTIONS} + {OTHER_THREADS_MAX})"
    );
    // The ones over the cap were closed by the server (evicted, oldest first): count the closed ones.
    let mut closed = 0;
    for s in &idle {
        s.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0_u8; 512];
        match (&*s).read(&mut buf) {
            Ok(_) => closed += 1, // EOF, or a 503 before the close
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => closed += 1, // reset
        }
    }
    assert!(
        closed >= IDLE - MAX_CONNECTIONS,
        "only {closed} of {IDLE} idle connections were closed (cap {MAX_CONNECTIONS})"
    );
    eprintln!(
        "{IDLE} idle connections: threads {threads_before} -> peak {threads_peak}, VmRSS {rss_before} -> {rss} kB, {closed} closed by the server"
    );
    for s in &idle {
        let _ = s.shutdown(Shutdown::Both);
    }
    drop(idle);
    // The connection threads end with their connections (idle pool threads linger 5 s, then go; on a
    // loaded machine a thousand of them take a while to be scheduled and exit).
    wait_until(
        "the API's threads to fall back after the idle connections closed",
        Duration::from_secs(60),
        || proc_status(pid, "Threads") <= threads_before + 8,
    );
}

/// Sends `head` on `stream` and reads one whole answer (head and Content-Length body).
fn exchange(stream: &mut TcpStream, head: &str) -> String {
    stream.write_all(head.as_bytes()).expect("send a request");
    let mut answer = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")?
                        .trim()
                        .parse()
                        .ok()
                })
                .unwrap_or(0_usize);
            if body.len() >= length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// `api.server.max_connections` in the tests of the cap itself.
const CAP: usize = 4;

/// An API on `nats` that holds at most [`CAP`] connections, and its `/metrics` on a port of its own
/// (outside the cap), at the returned base URL.
fn api_with_small_cap(nats: &NatsServer) -> (Api, String) {
    let metrics_port = free_port();
    let extra = ExtraConfig {
        api_server_yaml: vec![("max_connections".into(), CAP.to_string())],
        api_metrics_listen: format!("127.0.0.1:{metrics_port}"),
        ..ExtraConfig::default()
    };
    let api = Api::start_extra(&nats.url(), &Options::default(), &extra);
    (api, format!("http://127.0.0.1:{metrics_port}"))
}

/// `osapi_wait_slots_in_use` on the API's metrics port: `?wait=` requests in progress.
fn waits_in_progress(metrics: &str) -> Option<u64> {
    let resp = request(metrics, "GET", "/metrics", None).ok()?;
    resp.text
        .lines()
        .find_map(|l| l.strip_prefix("osapi_wait_slots_in_use "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

#[test]
fn at_a_small_cap_idle_connections_make_room_and_busy_ones_get_a_503() {
    let nats = NatsServer::start();
    let (api, metrics) = api_with_small_cap(&nats);
    let base = api.base_url();
    let admin = admin_token();
    // A job nobody runs: `?wait=` on it holds a request (and so its connection) busy.
    let created = request_as(
        Some(&admin),
        &base,
        "POST",
        "/job",
        Some(r#"{"operation": {"type": "test.ping.do"}, "target_hostname": "ghost"}"#),
    )
    .expect("submit");
    let id = created.body["job_id"]
        .as_str()
        .expect("a job id")
        .to_string();

    // CAP keep-alive connections, each sending two requests in one write: a quick one, then a 5 s
    // `?wait=`. The connection's thread reads the second head once it has written the first answer, and
    // counts it in progress only once its token passed: until the metrics port shows every wait
    // started, a newcomer could still evict a connection in that gap.
    let quick =
        format!("GET /job/status HTTP/1.1\r\nHost: osapi\r\nAuthorization: Bearer {admin}\r\n\r\n");
    let hold = format!(
        "GET /job/{id}?wait=5s HTTP/1.1\r\nHost: osapi\r\nAuthorization: Bearer {admin}\r\n\r\n"
    );
    let mut busy: Vec<TcpStream> = (0..CAP)
        .map(|n| {
            let mut s = TcpStream::connect(("127.0.0.1", api.port())).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let answer = exchange(&mut s, &format!("{quick}{hold}"));
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "connection {n}: {answer:?}"
            );
            s
        })
        .collect();
    wait_until(
        "every held connection's `?wait=` to be in progress",
        Duration::from_secs(5),
        || waits_in_progress(&metrics) == Some(CAP as u64),
    );
    let refused = request_as(None, &base, "GET", "/health", None).expect("an answer");
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert!(refused.text.contains("max_connections"), "{}", refused.text);
    assert_eq!(
        refused.header("retry-after"),
        Some("1"),
        "{:?}",
        refused.headers
    );

    // Once the waits are answered the connections are idle: a newcomer evicts the oldest one.
    for (n, s) in busy.iter_mut().enumerate() {
        let answer = exchange(s, "");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "held connection {n}: {answer:?}"
        );
    }
    let served = request_as(None, &base, "GET", "/health", None).expect("an answer");
    assert_eq!(served.status, 200, "{}", served.text);
    let mut evicted = 0;
    for s in &busy {
        s.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0_u8; 64];
        match (&*s).read(&mut buf) {
            Ok(0) => evicted += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("an idle connection got {other:?}"),
        }
    }
    assert_eq!(
        evicted, 1,
        "one idle connection makes room for the newcomer"
    );
}

#[test]
fn tokenless_posts_trickling_small_bodies_do_not_lock_out_a_new_client() {
    let nats = NatsServer::start();
    let (api, _metrics) = api_with_small_cap(&nats);
    // CAP connections, each announcing a 1 KiB body without a token and sending it a byte at a time.
    let (sent, two_bytes_out) = mpsc::channel();
    let tricklers: Vec<_> = (0..CAP)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", api.port())).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut writer = s.try_clone().expect("clone the socket");
            let sent = sent.clone();
            std::thread::spawn(move || {
                let head =
                    "POST /job HTTP/1.1\r\nHost: osapi\r\nContent-Type: application/json\r\n\
                            Content-Length: 1024\r\n\r\n";
                let mut ok = writer.write_all(head.as_bytes()).is_ok();
                for n in 0..6 {
                    ok = ok && writer.write_all(b"{").is_ok();
                    if n == 1 {
                        let _ = sent.send(());
                    }
                    // The pace of the trickle itself, not a wait for a condition.
                    std::thread::sleep(Duration::from_millis(300));
                }
                ok
            });
            s
        })
        .collect();
    drop(sent);
    for _ in 0..CAP {
        two_bytes_out
            .recv_timeout(Duration::from_secs(10))
            .expect("a trickler wrote its head and two body bytes");
    }
    // A newcomer is served: the tricklers were refused (or are evictable), never holding a place.
    let served = request_as(None, &api.base_url(), "GET", "/health", None).expect("an answer");
    assert_eq!(served.status, 200, "{}", served.text);
    for (n, mut s) in tricklers.into_iter().enumerate() {
        let answer = read_all(&mut s);
        // 401 at once, or closed to make room for the newcomer before its head was authorized.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 401"),
            "trickler {n}: {answer:?}"
        );
    }
}
