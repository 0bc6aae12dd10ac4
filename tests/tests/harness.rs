//! Self-test of the harness: a private nats-server starts on a free port, stops, restarts on the same port with
//! the same store, and leaves nothing behind. Needs only nats-server, not the osapi binaries.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use osapi_tests::{parse_rfc3339_micros, wait_until, NatsServer};

fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

#[test]
fn nats_server_starts_stops_and_restarts_on_the_same_port() {
    let mut nats = NatsServer::start();
    let port = nats.port();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));
    assert!(accepts(port), "nats-server should accept TCP on {port}");
    assert!(nats.is_running());

    nats.stop();
    assert!(!nats.is_running());
    assert!(
        !accepts(port),
        "nats-server should be gone from {port} after stop()"
    );

    nats.restart();
    assert_eq!(nats.port(), port, "restart keeps the port");
    assert!(
        accepts(port),
        "nats-server should accept TCP on {port} after restart()"
    );

    let dir = nats.dir().to_path_buf();
    assert!(
        dir.join("jetstream").is_dir(),
        "JetStream store under {}",
        dir.display()
    );
    drop(nats);
    assert!(!dir.exists(), "drop removes {}", dir.display());
    wait_until(
        "the port to be released after drop",
        Duration::from_secs(5),
        || !accepts(port),
    );
}

#[test]
fn nats_server_speaks_nats_with_jetstream() {
    use std::io::{BufRead, BufReader};
    let nats = NatsServer::start();
    let stream = TcpStream::connect(("127.0.0.1", nats.port())).expect("connect to nats-server");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set read timeout");
    let mut info = String::new();
    BufReader::new(stream)
        .read_line(&mut info)
        .expect("nats-server greets with INFO");
    assert!(info.starts_with("INFO "), "greeting: {info}");
    let info: serde_json::Value =
        serde_json::from_str(info.trim_start_matches("INFO ").trim()).expect("INFO is JSON");
    assert_eq!(
        info["port"].as_u64(),
        Some(u64::from(nats.port())),
        "{info}"
    );
    assert_eq!(info["jetstream"], true, "JetStream must be on: {info}");
}

#[test]
fn two_servers_get_different_ports_and_dirs() {
    let a = NatsServer::start();
    let b = NatsServer::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
}

#[test]
fn parses_the_api_timestamp_format() {
    assert_eq!(
        parse_rfc3339_micros("2026-11-29T05:00:00.123456Z"),
        Some(1_795_928_400_123_456)
    );
}
