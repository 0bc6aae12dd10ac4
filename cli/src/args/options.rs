//! The option layer of the command line: every known option, which command accepts which, argv
//! split into words and options, and typed reads of a command's options.

use super::UsageError;
use osapi_common::duration::parse_duration;
use std::time::Duration;

/// One known option: its long name, optional short letter, and whether it takes a value.
struct OptSpec {
    long: &'static str,
    short: Option<char>,
    takes_value: bool,
}

const fn opt(long: &'static str, short: Option<char>, takes_value: bool) -> OptSpec {
    OptSpec {
        long,
        short,
        takes_value,
    }
}

/// Every option of every command; which command accepts which is in [`allowed_options`].
const OPTIONS: &[OptSpec] = &[
    opt("url", None, true),
    opt("token", None, true),
    opt("config", Some('c'), true),
    opt("json", None, false),
    opt("help", Some('h'), false),
    opt("target", Some('t'), true),
    opt("data", Some('d'), true),
    opt("json-file", None, true),
    opt("timeout", None, true),
    opt("wait", None, true),
    opt("status", None, true),
    opt("limit", None, true),
    opt("offset", None, true),
    opt("role", Some('r'), true),
    opt("user", Some('u'), true),
    opt("permission", Some('p'), true),
    opt("ttl", None, true),
    opt("idempotency-key", None, true),
    opt("out", Some('o'), true),
    opt("hostname", None, true),
    opt("label", None, true),
    opt("nkey", None, true),
    opt("api", None, false),
];

/// The command-specific options a command accepts (globals are always accepted); `None`: no such command.
pub(super) fn allowed_options(command: &str) -> Option<&'static [&'static str]> {
    let options: &'static [&'static str] = match command {
        "job add" | "job run" => &["target", "data", "json-file", "timeout", "idempotency-key"],
        "job get" => &["wait"],
        "job list" => &["status", "limit", "offset"],
        "job retry" => &["target", "idempotency-key"],
        "token generate" => &["role", "user", "permission", "ttl"],
        "keys generate" | "audit export" => &["out"],
        "audit list" => &["limit", "offset"],
        "nats-permissions" => &["hostname", "label", "nkey", "api"],
        "job delete" | "job cancel" | "job status" | "job workers" | "token validate" => &[],
        "worker drain" | "worker undrain" => &[],
        _ => return None,
    };
    Some(options)
}

/// The command line split into words and options (in order, values attached).
pub(super) struct Split {
    pub(super) words: Vec<String>,
    pub(super) options: Vec<(&'static str, Option<String>)>,
}

/// Splits argv (without `argv[0]`): `--name value`, `--name=value`, `-x value`, `--` ends options.
pub(super) fn split(args: &[String]) -> Result<Split, UsageError> {
    let mut out = Split {
        words: Vec::new(),
        options: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            out.words.extend(rest.by_ref().cloned());
            break;
        }
        let (spec, inline) = if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (body, None),
            };
            let spec = OPTIONS.iter().find(|o| o.long == name);
            (spec, inline)
        } else if arg.len() > 1 && arg.starts_with('-') {
            let mut letters = arg.chars().skip(1);
            let spec = match (letters.next(), letters.next()) {
                (Some(letter), None) => OPTIONS.iter().find(|o| o.short == Some(letter)),
                _ => None,
            };
            (spec, None)
        } else {
            out.words.push(arg.clone());
            continue;
        };
        let Some(spec) = spec else {
            return Err(UsageError(format!("unknown option '{arg}' (try --help)")));
        };
        let value = match (spec.takes_value, inline) {
            (false, Some(_)) => {
                return Err(UsageError(format!("option --{} takes no value", spec.long)));
            }
            (false, None) => None,
            (true, Some(value)) => Some(value),
            (true, None) => match rest.next() {
                Some(value) => Some(value.clone()),
                None => return Err(UsageError(format!("option '{arg}' needs a value"))),
            },
        };
        out.options.push((spec.long, value));
    }
    Ok(out)
}

pub(super) fn set_once(
    slot: &mut Option<String>,
    name: &str,
    value: String,
) -> Result<(), UsageError> {
    if slot.is_some() {
        return Err(UsageError(format!("option --{name} given more than once")));
    }
    if value.is_empty() {
        return Err(UsageError(format!("option --{name}: the value is empty")));
    }
    *slot = Some(value);
    Ok(())
}

/// The command-specific options given, with the command's name for messages.
pub(super) struct Options<'a> {
    pub(super) name: &'a str,
    pub(super) values: Vec<(&'static str, String)>,
}

impl Options<'_> {
    pub(super) fn all(&self, key: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _)| *n == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// An option given at most once, non-empty.
    pub(super) fn single(&self, key: &str) -> Result<Option<String>, UsageError> {
        let mut found = None;
        for value in self.all(key) {
            set_once(&mut found, key, value)?;
        }
        Ok(found)
    }

    pub(super) fn duration(&self, key: &str) -> Result<Option<Duration>, UsageError> {
        self.single(key)?
            .map(|text| parse_duration(&text).map_err(|e| UsageError(format!("--{key}: {e}"))))
            .transpose()
    }

    pub(super) fn count(&self, key: &str) -> Result<Option<usize>, UsageError> {
        self.single(key)?
            .map(|text| {
                text.parse::<usize>().map_err(|_| {
                    UsageError(format!("--{key}: '{text}' is not a non-negative integer"))
                })
            })
            .transpose()
    }
}
