//! The HTTP edge from an attacker's side, one request at a time: an endless header line, too many or too large
//! headers, a head that is not ASCII or not headers, a head that never ends, a body announced without a token or trickled with one; and, with a token,
//! asking the API to hold more than it should (`limit`, `operation.data`). Each test talks raw TCP or HTTP to
//! the real `osapi-api` and reads its memory from `/proc/PID/status`; many connections at once are in
//! `hostile_connections.rs`.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use osapi_tests::edge::{proc_status, read_all};
use osapi_tests::{admin_token, token, Cluster};

/// What an endless header may grow the API's memory by: it reads 8 KiB of the line at most.
const RSS_GROWTH_MAX_KB: u64 = 16 * 1024;

fn connect(cluster: &Cluster) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", cluster.api.port())).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set read timeout");
    stream
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

#[test]
fn heads_that_are_not_ascii_or_not_headers_get_a_400_naming_the_fault_whole_or_split() {
    let cluster = Cluster::start(&[]);
    // What each gets: a 400 naming what was wrong (then the connection closes: where the next request
    // would start is not known), or, for a head whose lines never end in CRLF, nothing: the client
    // closed its side before the head was whole.
    let heads: [(&str, &[u8], Option<&str>); 6] = [
        (
            "a non-ASCII header value",
            b"GET /health HTTP/1.1\r\nHost: osapi\r\nX-Name: caf\xc3\xa9\r\n\r\n",
            Some("not ASCII"),
        ),
        (
            "a non-ASCII request line",
            b"GET /h\xffalth HTTP/1.1\r\nHost: osapi\r\n\r\n",
            Some("not ASCII"),
        ),
        (
            "a request line without a version",
            b"GET /health\r\nHost: osapi\r\n\r\n",
            Some("the request line is not METHOD TARGET HTTP/VERSION"),
        ),
        (
            "a header line without a colon",
            b"GET /health HTTP/1.1\r\nHost osapi\r\n\r\n",
            Some("a header line is not NAME: VALUE"),
        ),
        (
            "a header name with a space",
            b"GET /health HTTP/1.1\r\nX Y: z\r\n\r\n",
            Some("a header line is not NAME: VALUE"),
        ),
        (
            "a bare LF line end",
            b"GET /health HTTP/1.1\nHost: osapi\n\n",
            None,
        ),
    ];
    for (what, head, want) in heads {
        // Whole, and in two writes (the line the parser sees then spans two reads, or not: either way
        // the answer must be the same).
        for split in [head.len(), head.len() / 2] {
            let mut stream = connect(&cluster);
            stream.write_all(&head[..split]).expect("send");
            stream.flush().expect("flush");
            stream.write_all(&head[split..]).expect("send the rest");
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let answer = read_all(&mut stream);
            match want {
                None => assert_eq!(answer, "", "{what} (split at {split})"),
                Some(details) => {
                    assert!(
                        answer.starts_with("HTTP/1.1 400"),
                        "{what} (split at {split}): {answer:?}"
                    );
                    assert!(
                        answer.contains(details) && answer.contains("\"code\":400"),
                        "{what} (split at {split}): the answer names the fault: {answer:?}"
                    );
                }
            }
        }
    }
    // A good head split in the middle of a line is answered.
    let good = b"GET /health HTTP/1.1\r\nHost: osapi\r\nConnection: close\r\n\r\n";
    let mut stream = connect(&cluster);
    stream.write_all(&good[..30]).expect("send");
    stream.write_all(&good[30..]).expect("send the rest");
    let answer = read_all(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert_eq!(cluster.http("GET", "/health", None).status, 200);
}
