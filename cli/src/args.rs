//! The command line, parsed by hand: global options (`--url`, `--token`, `--config`, `--json`,
//! `--help`) may appear anywhere; each command accepts only its own options. Every mistake is a
//! [`UsageError`] naming the offending argument.

use crate::command::{
    AuditCommand, Command, DataSource, Globals, HelpTopic, Invocation, JobCommand, KeysCommand,
    NatsPermissions, Submit, TokenCommand,
};
use osapi_common::status::JobStatus;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

mod options;

use options::{allowed_options, set_once, split, Options, Split};

/// Default `--timeout` of `job add` / `job run`: the job's own timeout and how long `run` waits.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `--ttl` of `token generate`.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(90 * 86_400);
/// The page sizes `GET /job` takes (the API answers 400 outside them): refused here first, clearly.
pub const JOB_LIST_LIMITS: std::ops::RangeInclusive<usize> = 1..=1000;

/// A command line that cannot be run; exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses argv without `argv[0]`.
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    let Split { words, options } = split(args)?;
    let mut globals = Globals::default();
    let mut config = None;
    let mut local: Vec<(&'static str, String)> = Vec::new();
    let mut help = false;
    for (name, value) in options {
        let value = value.unwrap_or_default();
        match name {
            "help" => help = true,
            "json" => globals.json = true,
            "url" => set_once(&mut globals.url, name, value)?,
            "token" => set_once(&mut globals.token, name, value)?,
            "config" => set_once(&mut config, name, value)?,
            _ => local.push((name, value)),
        }
    }
    globals.config = config.map(PathBuf::from);

    let group = words.first().map(String::as_str);
    let topic = match group {
        None | Some("help") => HelpTopic::Top,
        Some("job") | Some("worker") => HelpTopic::Job,
        Some("token") => HelpTopic::Token,
        Some("keys") => HelpTopic::Keys,
        Some("audit") => HelpTopic::Audit,
        Some("nats-permissions") => HelpTopic::NatsPermissions,
        Some(other) => {
            return Err(UsageError(format!(
                "unknown command '{other}' (try --help)"
            )))
        }
    };
    let sub = words.get(1).map(String::as_str);
    if help || group == Some("help") || sub == Some("help") {
        let command = Command::Help(topic);
        return Ok(Invocation { globals, command });
    }
    if group == Some("nats-permissions") {
        let opts = Options {
            name: "nats-permissions",
            values: local,
        };
        let command = nats_permissions(&opts, &words[1..])?;
        return Ok(Invocation { globals, command });
    }
    let (Some(group), Some(sub)) = (group, sub) else {
        let what = match group {
            None => "missing command".to_string(),
            Some(g) => format!("'{g}' needs a COMMAND"),
        };
        return Err(UsageError(format!("{what} (try --help)")));
    };
    let name = format!("{group} {sub}");
    let Some(allowed) = allowed_options(&name) else {
        let hint = format!("try osapi {group} --help");
        return Err(UsageError(format!("unknown command '{name}' ({hint})")));
    };
    if let Some((bad, _)) = local.iter().find(|(n, _)| !allowed.contains(n)) {
        return Err(UsageError(format!(
            "option --{bad} is not accepted by '{name}'"
        )));
    }
    let opts = Options {
        name: &name,
        values: local,
    };
    let command = build(&opts, &words[2..])?;
    Ok(Invocation { globals, command })
}

/// The command `opts.name` (known to exist) from its options and positional arguments.
fn build(opts: &Options<'_>, positional: &[String]) -> Result<Command, UsageError> {
    let name = opts.name;
    let job = match name {
        "job add" => JobCommand::Add(submit(opts, positional)?),
        "job run" => JobCommand::Run(submit(opts, positional)?),
        "job get" => JobCommand::Get {
            id: one(name, "ID", positional)?,
            wait: opts.duration("wait")?,
        },
        "job list" => {
            none(name, positional)?;
            let status = opts.single("status")?;
            if let Some(s) = &status {
                s.parse::<JobStatus>()
                    .map_err(|e| UsageError(format!("--status: {e}")))?;
            }
            let limit = opts.count("limit")?;
            if let Some(n) = limit.filter(|n| !JOB_LIST_LIMITS.contains(n)) {
                return Err(UsageError(format!(
                    "--limit must be between {} and {}, got {n}",
                    JOB_LIST_LIMITS.start(),
                    JOB_LIST_LIMITS.end()
                )));
            }
            JobCommand::List {
                status,
                limit,
                offset: opts.count("offset")?,
            }
        }
        "job delete" => JobCommand::Delete {
            id: one(name, "ID", positional)?,
        },
        "job cancel" => JobCommand::Cancel {
            id: one(name, "ID", positional)?,
        },
        "worker drain" | "worker undrain" => JobCommand::Drain {
            hostname: one(name, "HOST", positional)?,
            drain: name == "worker drain",
        },
        "job retry" => JobCommand::Retry {
            id: one(name, "ID", positional)?,
            target: opts.single("target")?,
            idempotency_key: opts.single("idempotency-key")?,
        },
        "job status" => none(name, positional).map(|_| JobCommand::Status)?,
        "job workers" => none(name, positional).map(|_| JobCommand::Workers)?,
        "token generate" => {
            none(name, positional)?;
            let required = |key: &str, flag: &str| {
                opts.single(key)?
                    .ok_or_else(|| UsageError(format!("'{name}' needs {flag}")))
            };
            return Ok(Command::Token(TokenCommand::Generate {
                role: required("role", "-r ROLE")?,
                subject: required("user", "-u SUBJECT")?,
                permissions: opts.all("permission"),
                ttl: opts.duration("ttl")?.unwrap_or(DEFAULT_TOKEN_TTL),
            }));
        }
        "keys generate" => {
            none(name, positional)?;
            let out = opts
                .single("out")?
                .ok_or_else(|| UsageError(format!("'{name}' needs --out PATH")))?;
            return Ok(Command::Keys(KeysCommand::Generate {
                out: PathBuf::from(out),
            }));
        }
        "audit list" => {
            none(name, positional)?;
            let limit = opts.count("limit")?.map(|n| n as u64);
            let offset = opts.count("offset")?.map(|n| n as u64);
            return Ok(Command::Audit(AuditCommand::List { limit, offset }));
        }
        "audit export" => {
            none(name, positional)?;
            let out = opts
                .single("out")?
                .ok_or_else(|| UsageError(format!("'{name}' needs --out FILE")))?;
            return Ok(Command::Audit(AuditCommand::Export {
                out: PathBuf::from(out),
            }));
        }
        "token validate" => {
            let token = one(name, "TOKEN", positional)?;
            return Ok(Command::Token(TokenCommand::Validate { token }));
        }
        _ => return Err(UsageError(format!("unknown command '{name}' (try --help)"))),
    };
    Ok(Command::Job(job))
}

fn submit(opts: &Options<'_>, positional: &[String]) -> Result<Submit, UsageError> {
    let operation = one(opts.name, "TYPE", positional)?;
    let data = match (opts.single("data")?, opts.single("json-file")?) {
        (Some(_), Some(_)) => {
            return Err(UsageError(
                "give --data or --json-file, not both".to_string(),
            ));
        }
        (Some(text), None) => DataSource::Inline(text),
        (None, Some(path)) => DataSource::File(PathBuf::from(path)),
        (None, None) => DataSource::Empty,
    };
    let timeout = opts.duration("timeout")?;
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(UsageError("--timeout must be more than 0s".to_string()));
    }
    Ok(Submit {
        operation,
        target: opts.single("target")?,
        data,
        timeout,
        idempotency_key: opts.single("idempotency-key")?,
    })
}

/// `nats-permissions (--hostname H [--label K=V]... | --api) [--nkey U...]`.
fn nats_permissions(opts: &Options<'_>, positional: &[String]) -> Result<Command, UsageError> {
    let name = opts.name;
    none(name, positional)?;
    let allowed = allowed_options(name).unwrap_or(&[]);
    if let Some((bad, _)) = opts.values.iter().find(|(n, _)| !allowed.contains(n)) {
        return Err(UsageError(format!(
            "option --{bad} is not accepted by '{name}'"
        )));
    }
    let api = opts.values.iter().any(|(n, _)| *n == "api");
    let hostname = opts.single("hostname")?;
    let labels = opts
        .all("label")
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(UsageError(format!("--label '{l}': expected KEY=VALUE"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hostname = match (api, hostname) {
        (true, None) if labels.is_empty() => None,
        (false, Some(h)) => Some(h),
        _ => {
            return Err(UsageError(format!(
                "'{name}' needs --hostname H [--label K=V]... for a worker, or --api"
            )))
        }
    };
    Ok(Command::NatsPermissions(NatsPermissions {
        hostname,
        labels,
        nkey: opts.single("nkey")?,
    }))
}

/// Exactly one positional argument, named `what` in messages.
fn one(name: &str, what: &str, positional: &[String]) -> Result<String, UsageError> {
    match positional {
        [only] => Ok(only.clone()),
        [] => Err(UsageError(format!("'{name}' needs {what}"))),
        [_, extra, ..] => Err(UsageError(format!(
            "unexpected argument '{extra}' for '{name}'"
        ))),
    }
}

fn none(name: &str, positional: &[String]) -> Result<(), UsageError> {
    match positional.first() {
        Some(extra) => Err(UsageError(format!(
            "unexpected argument '{extra}' for '{name}'"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
