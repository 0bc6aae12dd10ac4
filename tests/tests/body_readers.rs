//! The API's body readers (`api/src/server/readers.rs`) run only while a body is awaited: none at rest,
//! one started when an authorized request's body has not arrived with its head, and that request is
//! answered once its body comes. Threads are read from `/proc/PID/task/*/comm` of the real `osapi-api`.

use osapi_tests::{admin_token, wait_until, Cluster};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Threads of `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/PID/task");
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[test]
fn a_body_reader_starts_only_when_a_body_is_awaited() {
    let cluster = Cluster::start(&[]);
    let pid = cluster.api.pid();
    // Requests whose bodies came with their heads never need one.
    for _ in 0..3 {
        let mut s = TcpStream::connect(("127.0.0.1", cluster.api.port())).expect("connect");
        let body = "{}";
        let head = format!(
            "POST /job HTTP/1.1\r\nHost: osapi\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            admin_token(),
            body.len()
        );
        s.write_all(head.as_bytes()).expect("send a request");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    }
    assert_eq!(threads_named(pid, "body-"), 0, "no body reader at rest");

    let mut s = TcpStream::connect(("127.0.0.1", cluster.api.port())).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let body = "{\"operation\": 1}";
    let head = format!(
        "POST /job HTTP/1.1\r\nHost: osapi\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        admin_token(),
        body.len()
    );
    s.write_all(head.as_bytes()).expect("send a head");
    wait_until(
        "a body reader waits for the body",
        Duration::from_secs(10),
        || threads_named(pid, "body-") == 1,
    );
    s.write_all(body.as_bytes()).expect("send the body");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 422"),
        "the body was read and judged: {answer}"
    );
    assert_eq!(threads_named(pid, "body-"), 1, "one reader was enough");
}
