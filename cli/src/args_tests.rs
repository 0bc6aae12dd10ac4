//! The command line, table-driven: what parses to what, and which mistakes name which argument.

use super::*;

fn argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

fn job(command: JobCommand) -> Command {
    Command::Job(command)
}

fn submit(operation: &str) -> Submit {
    Submit {
        operation: operation.into(),
        target: None,
        data: DataSource::Empty,
        timeout: None,
        idempotency_key: None,
    }
}

#[test]
fn commands_parse() {
    let secs = Duration::from_secs;
    let cases: Vec<(&str, Command)> = vec![
        ("--help", Command::Help(HelpTopic::Top)),
        ("help", Command::Help(HelpTopic::Top)),
        ("job --help", Command::Help(HelpTopic::Job)),
        ("job add -h", Command::Help(HelpTopic::Job)),
        ("job help", Command::Help(HelpTopic::Job)),
        ("token --help", Command::Help(HelpTopic::Token)),
        (
            "job add test.ping.do",
            job(JobCommand::Add(submit("test.ping.do"))),
        ),
        (
            "job run test.sleep.do --target _all -d {\"seconds\":1} --timeout 5s",
            job(JobCommand::Run(Submit {
                target: Some("_all".into()),
                data: DataSource::Inline("{\"seconds\":1}".into()),
                timeout: Some(secs(5)),
                ..submit("test.sleep.do")
            })),
        ),
        (
            "job add test.echo.do --json-file=data.json -t group:web.dev",
            job(JobCommand::Add(Submit {
                target: Some("group:web.dev".into()),
                data: DataSource::File("data.json".into()),
                ..submit("test.echo.do")
            })),
        ),
        (
            "job get ID",
            job(JobCommand::Get {
                id: "ID".into(),
                wait: None,
            }),
        ),
        (
            "job get ID --wait 30s",
            job(JobCommand::Get {
                id: "ID".into(),
                wait: Some(secs(30)),
            }),
        ),
        (
            "job list",
            job(JobCommand::List {
                status: None,
                limit: None,
                offset: None,
            }),
        ),
        (
            "job list --status processing --limit 1000 --offset=20",
            job(JobCommand::List {
                status: Some("processing".into()),
                limit: Some(1000),
                offset: Some(20),
            }),
        ),
        ("job delete ID", job(JobCommand::Delete { id: "ID".into() })),
        ("job cancel ID", job(JobCommand::Cancel { id: "ID".into() })),
        (
            "worker drain web1",
            job(JobCommand::Drain {
                hostname: "web1".into(),
                drain: true,
            }),
        ),
        (
            "worker undrain web1",
            job(JobCommand::Drain {
                hostname: "web1".into(),
                drain: false,
            }),
        ),
        (
            "job retry ID",
            job(JobCommand::Retry {
                id: "ID".into(),
                target: None,
                idempotency_key: None,
            }),
        ),
        (
            "job retry ID -t web1",
            job(JobCommand::Retry {
                id: "ID".into(),
                target: Some("web1".into()),
                idempotency_key: None,
            }),
        ),
        (
            "job retry ID --idempotency-key k-1",
            job(JobCommand::Retry {
                id: "ID".into(),
                target: None,
                idempotency_key: Some("k-1".into()),
            }),
        ),
        (
            "job add test.ping.do --idempotency-key=nightly-7",
            job(JobCommand::Add(Submit {
                idempotency_key: Some("nightly-7".into()),
                ..submit("test.ping.do")
            })),
        ),
        ("job status", job(JobCommand::Status)),
        ("job workers", job(JobCommand::Workers)),
        (
            "token generate -r admin -u alice",
            Command::Token(TokenCommand::Generate {
                role: "admin".into(),
                subject: "alice".into(),
                permissions: vec![],
                ttl: DEFAULT_TOKEN_TTL,
            }),
        ),
        (
            "token generate --role ops --user bob -p job:read -p health:read --ttl 1h",
            Command::Token(TokenCommand::Generate {
                role: "ops".into(),
                subject: "bob".into(),
                permissions: vec!["job:read".into(), "health:read".into()],
                ttl: secs(3600),
            }),
        ),
        (
            "token validate a.b.c",
            Command::Token(TokenCommand::Validate {
                token: "a.b.c".into(),
            }),
        ),
        (
            "job delete -- -odd-id",
            job(JobCommand::Delete {
                id: "-odd-id".into(),
            }),
        ),
    ];
    for (line, want) in cases {
        let got = parse(&argv(line)).map(|inv| inv.command);
        assert_eq!(got, Ok(want), "{line}");
    }
}

#[test]
fn global_options_go_anywhere() {
    let cases: &[(&str, Globals)] = &[
        ("job status", Globals::default()),
        (
            "--url http://h:1 job status --json --token T -c /tmp/c.yaml",
            Globals {
                url: Some("http://h:1".into()),
                token: Some("T".into()),
                config: Some("/tmp/c.yaml".into()),
                json: true,
            },
        ),
        (
            "job --config=x.yaml status",
            Globals {
                config: Some("x.yaml".into()),
                ..Globals::default()
            },
        ),
    ];
    for (line, want) in cases {
        let got = parse(&argv(line)).map(|inv| inv.globals);
        assert_eq!(got.as_ref(), Ok(want), "{line}");
    }
}

#[test]
fn mistakes_are_usage_errors_naming_the_argument() {
    let cases: &[(&str, &str)] = &[
        ("", "missing command"),
        ("jobs list", "'jobs'"),
        ("job", "'job' needs a COMMAND"),
        ("job frobnicate", "'job frobnicate'"),
        ("token refresh", "'token refresh'"),
        ("job list --frob", "'--frob'"),
        ("job list -x", "'-x'"),
        ("job list -json", "'-json'"),
        (
            "job get ID --limit 3",
            "--limit is not accepted by 'job get'",
        ),
        (
            "job status --target _all",
            "--target is not accepted by 'job status'",
        ),
        ("job add", "needs TYPE"),
        ("job add a b", "unexpected argument 'b'"),
        ("job get", "needs ID"),
        ("job status extra", "unexpected argument 'extra'"),
        ("job get ID --wait", "'--wait' needs a value"),
        ("job get ID --wait soon", "--wait:"),
        ("job add x --timeout 0s", "--timeout must be more than 0s"),
        ("job add x --data {} --json-file f", "not both"),
        ("job add x -t a -t b", "--target given more than once"),
        ("job list --limit -1", "'-1'"),
        (
            "job list --limit 0",
            "--limit must be between 1 and 1000, got 0",
        ),
        (
            "job list --limit 1001",
            "--limit must be between 1 and 1000, got 1001",
        ),
        ("job list --limit ten", "--limit: 'ten'"),
        ("job list --status done", "--status: unknown status 'done'"),
        ("job status --json=yes", "--json takes no value"),
        ("--url= job status", "--url: the value is empty"),
        ("token generate -u alice", "needs -r ROLE"),
        ("token generate -r read", "needs -u SUBJECT"),
        ("token generate -r read -u a --ttl 90", "--ttl:"),
        ("token validate", "needs TOKEN"),
    ];
    for (line, want) in cases {
        match parse(&argv(line)) {
            Err(UsageError(message)) => assert!(message.contains(want), "{line}: {message}"),
            Ok(inv) => panic!("{line}: parsed as {inv:?}"),
        }
    }
}

#[test]
fn trust_commands_parse() {
    let cases: Vec<(&str, Command)> = vec![
        (
            "keys generate --out /etc/osapi/job.key",
            Command::Keys(KeysCommand::Generate {
                out: "/etc/osapi/job.key".into(),
            }),
        ),
        ("keys --help", Command::Help(HelpTopic::Keys)),
        (
            "audit list --limit 5",
            Command::Audit(AuditCommand::List {
                limit: Some(5),
                offset: None,
            }),
        ),
        (
            "audit export -o a.jsonl",
            Command::Audit(AuditCommand::Export {
                out: "a.jsonl".into(),
            }),
        ),
        ("audit help", Command::Help(HelpTopic::Audit)),
        (
            "nats-permissions --hostname web1 --label group=web.dev --label rack=r1",
            Command::NatsPermissions(NatsPermissions {
                hostname: Some("web1".into()),
                labels: vec![
                    ("group".into(), "web.dev".into()),
                    ("rack".into(), "r1".into()),
                ],
                nkey: None,
            }),
        ),
        (
            "nats-permissions --api --nkey UABC",
            Command::NatsPermissions(NatsPermissions {
                hostname: None,
                labels: vec![],
                nkey: Some("UABC".into()),
            }),
        ),
        (
            "nats-permissions --help",
            Command::Help(HelpTopic::NatsPermissions),
        ),
    ];
    for (line, want) in cases {
        let got = parse(&argv(line)).map(|i| i.command);
        assert_eq!(got, Ok(want), "{line}");
    }
    let mistakes: &[(&str, &str)] = &[
        ("keys generate", "needs --out PATH"),
        ("keys generate --out k extra", "unexpected argument 'extra'"),
        ("audit export", "needs --out FILE"),
        (
            "audit list --out x",
            "option --out is not accepted by 'audit list'",
        ),
        ("nats-permissions", "needs --hostname H"),
        ("nats-permissions --api --hostname web1", "or --api"),
        (
            "nats-permissions --hostname web1 --label web",
            "expected KEY=VALUE",
        ),
        (
            "nats-permissions --hostname web1 --limit 3",
            "--limit is not accepted",
        ),
        ("nats-permissions web1", "unexpected argument 'web1'"),
    ];
    for (line, want) in mistakes {
        let got = parse(&argv(line)).err().map(|e| e.0).unwrap_or_default();
        assert!(got.contains(want), "{line}: {got}");
    }
}
