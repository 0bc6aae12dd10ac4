//! Clients that try to hurt the API with size and time: bodies over `max_body_bytes` (413 before the body is
//! read), connections that stall half-way, many `?wait=` requests at once, and more requests held up by a
//! frozen NATS than the API takes in. The API keeps answering everyone else promptly throughout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use osapi_tests::{admin_token, request_as, wait_until, Cluster, ExtraConfig, Options};

/// The default `api.server.max_body_bytes`.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A plain request must be answered within this while the API is under attack.
const PROMPT: Duration = Duration::from_secs(2);

fn connect(cluster: &Cluster) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", cluster.api.port())).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set read timeout");
    stream
}

/// Reads what the server sends until it closes or the read timeout passes; returns the text so far.
fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") && headers_done_with_body(&answer) {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// True once a whole answer (head and the body its Content-Length announces) has arrived.
fn headers_done_with_body(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    body.len() >= length
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

/// GET /job/status as admin; asserts 200 within [`PROMPT`].
fn assert_prompt(cluster: &Cluster, while_what: &str) {
    let asked = Instant::now();
    let resp = cluster.http("GET", "/job/status", None);
    let took = asked.elapsed();
    assert_eq!(
        resp.status, 200,
        "GET /job/status {while_what}: {}",
        resp.text
    );
    assert!(took < PROMPT, "GET /job/status {while_what} took {took:?}");
}

#[test]
fn bodies_over_the_limit_are_413_without_being_read() {
    let cluster = Cluster::start(&[]);
    let token = admin_token();
    for length in [MAX_BODY_BYTES + 1, 1 << 40] {
        // Headers only: the body is never sent, so a 413 proves the server did not wait for it.
        let mut stream = connect(&cluster);
        let head = format!(
            "POST /job HTTP/1.1\r\nHost: osapi\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).expect("send headers");
        let asked = Instant::now();
        let answer = read_answer(&mut stream);
        assert!(
            status_line(&answer).contains(" 413 "),
            "Content-Length {length}, no body sent: {answer}"
        );
        assert!(asked.elapsed() < PROMPT, "413 took {:?}", asked.elapsed());
        assert!(answer.contains("\"code\":413"), "{answer}");
    }

    // Chunked: no length up front; the server stops reading once the body passes the limit.
    let mut stream = connect(&cluster);
    let head = format!(
        "POST /job HTTP/1.1\r\nHost: osapi\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send headers");
    let chunk = vec![b' '; 64 * 1024];
    let chunks = MAX_BODY_BYTES / chunk.len() + 2;
    for _ in 0..chunks {
        let sent = stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .and_then(|()| stream.write_all(&chunk))
            .and_then(|()| stream.write_all(b"\r\n"));
        if sent.is_err() {
            break; // the server answered and closed: fine, its answer is read below
        }
    }
    let answer = read_answer(&mut stream);
    assert!(
        status_line(&answer).contains(" 413 "),
        "chunked body over the limit: {answer}"
    );

    assert_prompt(&cluster, "after the oversized bodies");
    let all = cluster.http("GET", "/job?limit=1000", None);
    assert_eq!(
        all.body["total_items"], 0,
        "nothing was created: {}",
        all.text
    );
}

#[test]
fn stalled_connections_neither_block_others_nor_live_forever() {
    const STALLED: usize = 50;
    let cluster = Cluster::start(&[]);
    let token = admin_token();
    let opened = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..STALLED)
        .map(|n| {
            let mut stream = connect(&cluster);
            let half = if n % 2 == 0 {
                // Half a request head.
                "GET /job/status HTTP/1.1\r\nHost: osapi\r\nAuth".to_string()
            } else {
                // A whole head, then a little of the body it announces: a body reader waits for the
                // rest, within the body deadline.
                format!(
                    "POST /job HTTP/1.1\r\nHost: osapi\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"operation\":"
                )
            };
            stream
                .write_all(half.as_bytes())
                .expect("send half a request");
            stream
        })
        .collect();

    for round in 0..5 {
        assert_prompt(
            &cluster,
            &format!("with {STALLED} stalled connections (round {round})"),
        );
    }

    // The server gives up on each stalled connection by itself: it closes it (EOF or reset), or answers
    // it with an error (a body that never came is a 408; tiny_http closes the socket after it).
    let (done_tx, done_rx) = mpsc::channel();
    for (n, mut stream) in stalled.drain(..).enumerate() {
        let done_tx = done_tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0_u8; 1024];
            let outcome = match stream.read(&mut buf) {
                Ok(0) => "closed".to_string(),
                Ok(got) => {
                    let text = String::from_utf8_lossy(&buf[..got]).into_owned();
                    text.lines().next().unwrap_or_default().to_string()
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => String::new(),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => String::new(),
                Err(e) => format!("reset: {e}"),
            };
            let _ = done_tx.send((n, outcome, opened.elapsed()));
        });
    }
    drop(done_tx);
    let results: Vec<(usize, String, Duration)> = done_rx.iter().collect();
    assert_eq!(results.len(), STALLED);
    for (n, outcome, after) in results {
        let given_up = outcome == "closed"
            || outcome.starts_with("reset")
            || outcome.starts_with("HTTP/1.1 4");
        assert!(
            given_up,
            "stalled connection {n} still open after {after:?} ({outcome:?})"
        );
        assert!(
            after < Duration::from_secs(16),
            "stalled connection {n} given up only after {after:?} ({outcome})"
        );
    }
    assert_prompt(&cluster, "after the stalled connections");
}

#[test]
fn many_waiting_clients_do_not_starve_the_others() {
    const WAITERS: usize = 40;
    // The API's cap on requests held by ?wait=: half of its 32 handler threads (api/src/main.rs).
    const WAITERS_CAP: usize = 16;
    let cluster = Cluster::start(&[]);
    // Nobody is called `ghost`: the job stays pending for its whole minute.
    let body = json!({
        "operation": {"type": "test.ping.do", "data": {}},
        "target_hostname": "ghost",
        "timeout": "60s",
    });
    let id = cluster.submit(body);

    let (tx, rx) = mpsc::channel();
    let base_url = cluster.api.base_url();
    for _ in 0..WAITERS {
        let (tx, base_url, path) = (tx.clone(), base_url.clone(), format!("/job/{id}?wait=60s"));
        std::thread::spawn(move || {
            let asked = Instant::now();
            let resp = request_as(Some(&admin_token()), &base_url, "GET", &path, None);
            let _ = tx.send((resp.map(|r| (r.status, r.body)), asked.elapsed()));
        });
    }
    drop(tx);

    // Past the cap on waiters, a wait answers at once with the job as it stands.
    let mut quick = 0;
    wait_until(
        "the waits past the cap to answer at once",
        Duration::from_secs(20),
        || {
            while let Ok((resp, took)) = rx.try_recv() {
                let (status, body) = resp.unwrap_or_else(|err| panic!("a waiting client: {err}"));
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["status"], "pending", "{body}");
                assert!(
                    took < Duration::from_secs(10),
                    "an uncapped wait took {took:?}"
                );
                quick += 1;
            }
            quick >= WAITERS - WAITERS_CAP
        },
    );
    for round in 0..5 {
        assert_prompt(
            &cluster,
            &format!("with the waiters holding (round {round})"),
        );
        let resp = cluster.http("GET", "/job?limit=5", None);
        assert_eq!(resp.status, 200, "{}", resp.text);
    }

    // Deleting the job releases whoever still waits on it.
    let resp = cluster.http("DELETE", &format!("/job/{id}"), None);
    assert_eq!(resp.status, 204, "{}", resp.text);
    let mut released = 0;
    for (resp, took) in rx.iter() {
        let (status, body) = resp.unwrap_or_else(|err| panic!("a waiting client: {err}"));
        assert!(matches!(status, 200 | 404), "{status} {body}");
        assert!(
            took < Duration::from_secs(30),
            "a released wait took {took:?}"
        );
        released += 1;
    }
    assert_eq!(quick + released, WAITERS, "every client got an answer");
}

/// The listener must outlive any quiet spell: nothing else in the suite leaves an API without new
/// connections for longer than its socket timeout (10 s), so this test does, on purpose.
#[test]
fn the_api_keeps_accepting_after_a_quiet_spell() {
    let mut cluster = Cluster::start(&[]);
    let quiet = Duration::from_secs(12);
    std::thread::sleep(quiet); // the fault is time itself: no condition to wait on
    let resp = cluster.try_http("GET", "/health");
    let resp = resp.unwrap_or_else(|err| {
        panic!(
            "no answer after {quiet:?} without connections: {err}\n{}",
            cluster.api.log_tail()
        )
    });
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert!(cluster.api.exited().is_none(), "the API is alive");
}

/// Requests the API holds at once: 32 on their connections' threads, 32 on the handler threads, 256
/// queued for the handlers (`api/src/server.rs`).
const API_HOLDS: usize = 32 + 32 + 256;
/// Requests past that, each refused at once.
const PAST_CAPACITY: usize = 40;

#[test]
fn requests_past_what_the_api_holds_are_refused_at_once_and_the_rest_answered() {
    let extra = ExtraConfig {
        nats_yaml: vec![("request_timeout".into(), "'20s'".into())],
        ..ExtraConfig::default()
    };
    let cluster = Cluster::start_extra(&[], &Options::default(), &extra);
    let (base, token) = (cluster.api.base_url(), admin_token());
    // Every `GET /audit` waits on NATS, frozen here: none can be answered until it resumes, so each
    // answer before that is a refusal, and the 40 refusals mean all 360 requests arrived.
    let refused = AtomicUsize::new(0);
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let paused = cluster.nats.paused();
        let clients: Vec<_> = (0..API_HOLDS + PAST_CAPACITY)
            .map(|_| {
                let (base, token, refused) = (&base, &token, &refused);
                s.spawn(move || {
                    let answer = request_as(Some(token), base, "GET", "/audit", None)
                        .map_or((0, String::new()), |r| (r.status, r.text));
                    if answer.0 == 503 {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    answer
                })
            })
            .collect();
        wait_until("the requests past capacity refused", PROMPT * 5, || {
            refused.load(Ordering::SeqCst) >= PAST_CAPACITY
        });
        drop(paused);
        clients
            .into_iter()
            .map(|c| c.join().expect("client thread"))
            .collect()
    });
    let busy = answers
        .iter()
        .filter(|(status, text)| *status == 503 && text.contains("too many requests in progress"))
        .count();
    let ok = answers.iter().filter(|(status, _)| *status == 200).count();
    let other: Vec<&(u16, String)> = answers
        .iter()
        .filter(|(s, _)| *s != 200 && *s != 503)
        .collect();
    assert_eq!(busy, PAST_CAPACITY, "refused at once");
    assert_eq!(ok, API_HOLDS, "held, then answered once NATS resumed");
    assert!(other.is_empty(), "{other:?}");
}
