//! The HTTP edge from an attacker's side, without a token: an endless header line, too many or too large
//! headers, thousands of idle connections, a body announced without a token (big, or small and trickled); and, with a token, asking
//! the API to hold more than it should (`limit`, `operation.data`). Each test talks raw TCP or HTTP to the
//! real `osapi-api` and reads its threads and memory from `/proc/PID/status`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use osapi_tests::{
    admin_token, request_as, token, wait_until, Api, Cluster, ExtraConfig, NatsServer, Options,
};

/// The default `api.server.max_connections`.
const MAX_CONNECTIONS: usize = 1024;
/// Threads of the API besides its connection threads: 32 handlers, up to 32 body readers (started on
/// demand), the accept thread, the main thread, NATS client threads, the index watch, logging: measured
/// ~75 when 32 body readers ran from the start, bounded with margin.
const OTHER_THREADS_MAX: usize = 120;
/// What an endless header may grow the API's memory by: it reads 8 KiB of the line at most.
const RSS_GROWTH_MAX_KB: u64 = 16 * 1024;

fn connect(cluster: &Cluster) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", cluster.api.port())).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set read timeout");
    stream
}

/// A field of `/proc/PID/status` (`Threads`, `VmRSS` in kB).
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Everything the server sends until it closes (or 20 s pass), as text; a reset ends it too.
fn read_all(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0_u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn an_endless_header_line_is_cut_off_and_memory_stays_flat() {
    let cluster = Cluster::start(&[]);
    let pid = cluster.api.pid();
    let rss_before = proc_status(pid, "VmRSS");

    let mut stream = connect(&cluster);
    let mut reader = stream.try_clone().expect("clone the stream");
    let (answer_tx, answer_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = answer_tx.send(read_all(&mut reader));
    });
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: osapi\r\nX-Endless: ")
        .expect("send the start of a head");
    // Up to 256 MiB of one header line, 64 KiB at a time: the server must stop reading long before.
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0_usize;
    let cut_off = loop {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => break Some(e),
        }
        if sent >= 256 * 1024 * 1024 {
            break None;
        }
    };
    let answer = answer_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the reader ends");
    assert!(
        cut_off.is_some(),
        "the API took 256 MiB of one header line without closing"
    );
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "after {sent} bytes sent: {answer:?}"
    );
    assert!(answer.contains("8192 bytes"), "{answer}");
    let rss_after = proc_status(pid, "VmRSS");
    assert!(
        rss_after < rss_before + RSS_GROWTH_MAX_KB,
        "VmRSS grew from {rss_before} kB to {rss_after} kB over {sent} bytes of header"
    );
    eprintln!(
        "endless header: cut off after {sent} bytes sent (kernel buffers included); VmRSS {rss_before} -> {rss_after} kB"
    );
    assert_eq!(cluster.http("GET", "/health", None).status, 200);
}

#[test]
fn too_many_or_too_large_headers_are_431() {
    let cluster = Cluster::start(&[]);
    let kib = "x".repeat(1024);
    let cases = [
        (
            "101 header lines",
            (0..101)
                .map(|n| format!("X-H{n}: 1\r\n"))
                .collect::<String>(),
            "100 header lines",
        ),
        (
            "70 header lines of 1 KiB (70 KiB)",
            (0..70).map(|n| format!("X-H{n}: {kib}\r\n")).collect(),
            "65536 bytes",
        ),
        ("a request line over 8 KiB", String::new(), "8192 bytes"),
    ];
    for (what, headers, want) in cases {
        let mut stream = connect(&cluster);
        let path = if headers.is_empty() {
            format!("/health?{}", "p".repeat(9000))
        } else {
            "/health".to_string()
        };
        let head = format!("GET {path} HTTP/1.1\r\nHost: osapi\r\n{headers}\r\n");
        // The server may close while we still write: what it answered is what counts.
        let _ = stream.write_all(head.as_bytes());
        let answer = read_all(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 431"), "{what}: {answer:?}");
        assert!(answer.contains(want), "{what}: {answer}");
    }
    // 100 lines and a head under 64 KiB are still fine.
    let mut stream = connect(&cluster);
    let headers: String = (0..99)
        .map(|n| format!("X-H{n}: {kib}\r\n"))
        .take(60)
        .collect();
    let head = format!("GET /health HTTP/1.1\r\nHost: osapi\r\nConnection: close\r\n{headers}\r\n");
    stream.write_all(head.as_bytes()).expect("send the head");
    let answer = read_all(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[test]
fn a_head_that_does_not_end_in_time_is_408() {
    let cluster = Cluster::start(&[]);
    let mut stream = connect(&cluster);
    let started = Instant::now();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: osapi\r\n")
        .expect("send part of a head");
    // A byte every 2 s: each read succeeds, but the whole head takes too long.
    let mut answer = String::new();
    for _ in 0..15 {
        std::thread::sleep(Duration::from_secs(2));
        if stream.write_all(b"X").is_err() {
            break;
        }
        stream
            .set_read_timeout(Some(Duration::from_millis(1)))
            .expect("set read timeout");
        let mut buf = [0_u8; 1024];
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => {
                answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                break;
            }
            Ok(_) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let took = started.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {took:?}: {answer:?}"
    );
    assert!(
        took < Duration::from_secs(14),
        "408 only after {took:?} (deadline 10 s)"
    );
}

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
    // The connection threads end with their connections (idle pool threads linger 5 s, then go).
    wait_until(
        "the API's threads to fall back after the idle connections closed",
        Duration::from_secs(30),
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

#[test]
fn at_a_small_cap_idle_connections_make_room_and_busy_ones_get_a_503() {
    const CAP: usize = 4;
    let nats = NatsServer::start();
    let extra = ExtraConfig {
        api_server_yaml: vec![("max_connections".into(), CAP.to_string())],
        ..ExtraConfig::default()
    };
    let api = Api::start_extra(&nats.url(), &Options::default(), &extra);
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

    // CAP keep-alive connections, each sending two requests in one write: a quick one, then a 3 s
    // `?wait=`. The server parses the second head from its buffer as soon as it has handed over the
    // first, long before the first's answer comes back through the handler queue: once that answer is
    // read, every connection is busy with a request.
    let quick =
        format!("GET /job/status HTTP/1.1\r\nHost: osapi\r\nAuthorization: Bearer {admin}\r\n\r\n");
    let hold = format!(
        "GET /job/{id}?wait=3s HTTP/1.1\r\nHost: osapi\r\nAuthorization: Bearer {admin}\r\n\r\n"
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
fn a_post_without_a_token_declaring_a_body_gets_401_at_once_and_its_body_is_never_read() {
    let cluster = Cluster::start(&[]);
    let reader = token(&["read"], None);
    let cases = [
        ("no token", String::new(), "401"),
        (
            "a token signed with another key",
            format!(
                "Authorization: Bearer {}\r\n",
                osapi_tests::sign(
                    &osapi_tests::claims(&["admin"], None),
                    "another-signing-key-of-32-bytes-or-more"
                )
            ),
            "401",
        ),
        (
            "a read-only token",
            format!("Authorization: Bearer {reader}\r\n"),
            "403",
        ),
    ];
    // 1024 bytes: tiny_http used to read a body that small itself, before the API saw the token.
    for length in [1024, 900_000] {
        for (what, authorization, want) in &cases {
            let mut stream = connect(&cluster);
            let head = format!(
                "POST /job HTTP/1.1\r\nHost: osapi\r\n{authorization}Content-Type: application/json\r\n\
                 Content-Length: {length}\r\n\r\n"
            );
            let asked = Instant::now();
            stream.write_all(head.as_bytes()).expect("send the head");
            let answer = read_all(&mut stream);
            let took = asked.elapsed();
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {want}")),
                "{what}, {length} bytes announced, none sent: {answer:?}"
            );
            // `read_all` returned: the server closed the connection rather than wait for the body.
            assert!(
                took < Duration::from_secs(2),
                "{what}, {length} bytes: answered and closed only after {took:?}"
            );
        }
    }
}

#[test]
fn tokenless_posts_trickling_small_bodies_do_not_lock_out_a_new_client() {
    const CAP: usize = 4;
    let nats = NatsServer::start();
    let extra = ExtraConfig {
        api_server_yaml: vec![("max_connections".into(), CAP.to_string())],
        ..ExtraConfig::default()
    };
    let api = Api::start_extra(&nats.url(), &Options::default(), &extra);
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

#[test]
fn an_authorized_body_trickled_a_byte_every_4_s_gets_408_at_its_10_s_deadline() {
    let cluster = Cluster::start(&[]);
    let mut stream = connect(&cluster);
    let mut writer = stream.try_clone().expect("clone the socket");
    let head = format!(
        "POST /job HTTP/1.1\r\nHost: osapi\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        admin_token()
    );
    let asked = Instant::now();
    writer.write_all(head.as_bytes()).expect("send the head");
    // A byte every 4 s: each read returns before the 10 s socket timeout, so only a deadline on the
    // whole body stops it (checked only after each read, it answered at the read after 12 s).
    std::thread::spawn(move || {
        for _ in 0..5 {
            if writer.write_all(b" ").is_err() {
                break;
            }
            // The pace of the trickle itself, not a wait for a condition.
            std::thread::sleep(Duration::from_secs(4));
        }
    });
    let answer = read_all(&mut stream);
    let took = asked.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("did not arrive within 10 s"), "{answer:?}");
    assert!(
        took < Duration::from_millis(11_500),
        "answered only after {took:?}"
    );
}

#[test]
fn limits_on_what_one_user_can_make_the_api_hold() {
    let cluster = Cluster::start(&[]);
    let resp = cluster.http("GET", "/job?limit=100000", None);
    resp.assert_error(400);
    assert!(
        resp.body["error"].as_str().unwrap_or("").contains("1000"),
        "{}",
        resp.text
    );
    assert_eq!(cluster.http("GET", "/job?limit=1000", None).status, 200);

    let data_max = 64 * 1024;
    let job = |bytes: usize| json!({"operation": {"type": "test.echo.do", "data": {"blob": "x".repeat(bytes)}}});
    // {"blob":"..."} is 11 bytes more than the string.
    let over = cluster.http("POST", "/job", Some(job(data_max - 10)));
    over.assert_error(413);
    let error = over.body["error"].as_str().unwrap_or("");
    assert!(error.contains("65536"), "{}", over.text);
    assert!(over.text.contains("max_job_data_bytes"), "{}", over.text);
    let at_cap = cluster.http("POST", "/job", Some(job(data_max - 11)));
    assert_eq!(at_cap.status, 201, "{}", at_cap.text);
}
