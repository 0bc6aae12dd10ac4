//! Unit tests of `network.ping.do`: iputils and busybox output, target and bound checks, error classification.

use super::*;
use crate::ops::tests_support::{ctx_at, fixture};
use crate::ops::ErrorKind;

fn summary(sent: u64, received: u64, loss_percent: f64, rtt_ms: Option<[f64; 3]>) -> Summary {
    Summary {
        sent,
        received,
        loss_percent,
        rtt_ms,
    }
}

#[test]
fn iputils_and_busybox_summaries_parse() {
    let cases = [
        (
            "ping-iputils-ok",
            summary(2, 2, 0.0, Some([0.037, 0.180, 0.324])),
        ),
        (
            "ping-iputils-ipv6",
            summary(3, 3, 0.0, Some([0.058, 0.089, 0.150])),
        ),
        (
            "ping-iputils-partial",
            summary(4, 3, 25.0, Some([10.912, 11.502, 12.401])),
        ),
        ("ping-iputils-loss", summary(3, 0, 100.0, None)),
        ("ping-iputils-unreachable", summary(4, 0, 100.0, None)),
        (
            "ping-busybox-ok",
            summary(2, 2, 0.0, Some([0.058, 0.070, 0.083])),
        ),
        (
            "ping-busybox-duplicates",
            summary(2, 2, 0.0, Some([0.380, 0.526, 0.702])),
        ),
        ("ping-busybox-loss", summary(2, 0, 100.0, None)),
    ];
    for (name, want) in cases {
        assert_eq!(parse_summary(&fixture(name)), Some(want), "{name}");
    }
    assert_eq!(
        parse_summary("PING x (1.2.3.4) 56(84) bytes of data.\n"),
        None
    );
    // No loss figure printed: computed from the counts.
    let bare = "3 packets transmitted, 1 received\n";
    let got = parse_summary(bare).map(|s| s.loss_percent);
    assert!(got.is_some_and(|l| (l - 66.666).abs() < 0.01), "{got:?}");
}

fn output(code: Option<i32>, stdout: &str, stderr: &str, timed_out: bool) -> Output {
    Output {
        code,
        stdout: stdout.into(),
        stderr: stderr.into(),
        timed_out,
    }
}

#[test]
fn outcomes_are_classified() {
    let limit = Duration::from_secs(14);
    // No reply: ping exits 1, the job completes with 100% loss.
    let lost = interpret(
        "192.0.2.1",
        &output(Some(1), &fixture("ping-iputils-loss"), "", false),
        limit,
    );
    assert_eq!(lost.map(|s| s.loss_percent), Ok(100.0));
    let unreachable = output(
        Some(2),
        "",
        "ping: connect: Network is unreachable\n",
        false,
    );
    assert_eq!(
        interpret("10.9.9.9", &unreachable, limit),
        Ok(summary(0, 0, 100.0, None))
    );

    let cases = [
        (
            "ping: nosuch.example: Name or service not known\n",
            ErrorKind::Permanent,
            "unknown host 'nosuch.example'",
        ),
        (
            "ping: bad address 'nosuch.example'\n",
            ErrorKind::Permanent,
            "unknown host 'nosuch.example'",
        ),
        (
            "ping: nosuch.example: Temporary failure in name resolution\n",
            ErrorKind::Transient,
            "nosuch.example",
        ),
        (
            "ping: socktype: SOCK_RAW\nping: socket: Operation not permitted\n",
            ErrorKind::Permanent,
            "exit 2): ping: socktype",
        ),
    ];
    for (stderr, kind, text) in cases {
        let err = interpret("nosuch.example", &output(Some(2), "", stderr, false), limit).err();
        assert!(
            err.as_ref()
                .is_some_and(|e| e.kind == kind && e.message.contains(text)),
            "{stderr}: {err:?}"
        );
    }
    let hung = interpret(
        "10.1.1.1",
        &output(None, "PING 10.1.1.1\n", "", true),
        limit,
    )
    .err();
    assert!(hung.is_some_and(|e| e.kind == ErrorKind::Transient && e.message.contains("14s")));
}

#[test]
fn targets_are_ip_addresses_or_host_names() {
    for good in [
        "127.0.0.1",
        "::1",
        "fe80::1",
        "example.org",
        "web-1.dc2.example.org.",
        "localhost",
    ] {
        assert_eq!(target_error(good), None, "{good}");
    }
    let long = format!("{}.org", "a".repeat(250));
    let bad = [
        "a;rm",
        "-f",
        "a b",
        "",
        "$(reboot)",
        "exa_mple.org",
        "a..b",
        "-x.org",
        long.as_str(),
    ];
    for bad in bad {
        assert!(target_error(bad).is_some(), "{bad}");
    }
}

#[test]
fn arguments_never_go_through_a_shell() {
    let args = ping_args(Path::new("/usr/bin/ping"), 2, 1, "127.0.0.1");
    assert_eq!(args, ["-c", "2", "-W", "1", "-n", "127.0.0.1"]);
}

#[test]
fn bad_requests_fail_before_ping_runs_and_name_the_field() {
    let cases = [
        (json!({"target": "a;rm"}), "field `target`"),
        (
            json!({"target": "127.0.0.1", "count": 0}),
            "field `count` must be between 1 and 20, got 0",
        ),
        (json!({"target": "127.0.0.1", "count": 21}), "field `count`"),
        (
            json!({"target": "127.0.0.1", "timeout": 31}),
            "field `timeout` must be between 1 and 30",
        ),
        (
            json!({"target": "127.0.0.1", "count": "2"}),
            "field `count`",
        ),
        (json!({"target": "127.0.0.1", "count": -1}), "field `count`"),
        (json!({"target": 1}), "field `target`"),
        (
            json!({"target": "127.0.0.1", "size": 9000}),
            "unknown field `size`",
        ),
        (json!({}), "missing field `target`"),
    ];
    let ctx = ctx_at(Path::new("/"));
    for (data, want) in cases {
        let err = ping_do(&data, &ctx).err();
        assert!(
            err.as_ref()
                .is_some_and(|e| e.kind == ErrorKind::Permanent && e.message.contains(want)),
            "{data}: {err:?}"
        );
    }
}
