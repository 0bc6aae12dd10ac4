//! `osapi`: the command line client of the osapi job API, and the tool that makes its JWTs.
//!
//! `main` parses the command line (`args.rs`), loads the config when a command needs it, runs the
//! command (`job.rs` over `client.rs`, `token.rs`, or `keys.rs`) and turns the outcome into an exit code:
//! 0 ok, 1 failed, 2 usage or config error, 3 server unreachable/unavailable or wait timed out.

mod args;
mod audit;
mod client;
mod command;
mod error;
mod job;
mod keys;
mod nats_permissions;
mod output;
mod table;
mod token;
mod usage;
mod wait;

use client::Client;
use command::{Command, Globals, HelpTopic, Invocation, TokenCommand};
use error::CliError;
use osapi_common::config::{Config, CONFIG_ENV, DEFAULT_CONFIG_PATH};
use output::Output;
use std::io::Write;
use std::process::ExitCode;

/// Env variables that override the config's `api.client` (and are overridden by the flags).
const URL_ENV: &str = "OSAPI_URL";
const TOKEN_ENV: &str = "OSAPI_TOKEN";

fn main() -> ExitCode {
    let outcome = std::env::args_os()
        .skip(1)
        .map(|arg| {
            arg.into_string()
                .map_err(|bad| CliError::Usage(format!("argument {bad:?} is not valid UTF-8")))
        })
        .collect::<Result<Vec<String>, CliError>>()
        .and_then(|args| run(&args));
    let output = match outcome {
        Ok(output) => output,
        Err(error) => Output::with_error(String::new(), &error),
    };
    // A closed stdout (`osapi job list | head -1`) is not worth a second error.
    let mut stdout = std::io::stdout().lock();
    if !output.stdout.is_empty() {
        let newline = if output.stdout.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        let _ = write!(stdout, "{}{newline}", output.stdout);
        let _ = stdout.flush();
    }
    if let Some(note) = &output.note {
        let _ = writeln!(std::io::stderr(), "osapi: {note}");
    }
    ExitCode::from(output.code)
}

fn run(args: &[String]) -> Result<Output, CliError> {
    let Invocation { globals, command } = args::parse(args)?;
    match command {
        Command::Help(topic) => Ok(Output::text(usage(topic).to_string())),
        Command::Job(job) => {
            let config = load_config(&globals)?;
            let client = client_for(&globals, &config);
            job::execute(&client, &job, globals.json)
        }
        Command::Keys(cmd) => keys::execute(&cmd),
        Command::NatsPermissions(cmd) => {
            let config = load_config(&globals)?;
            nats_permissions::execute(&cmd, &config)
        }
        Command::Audit(cmd) => {
            let config = load_config(&globals)?;
            let client = client_for(&globals, &config);
            audit::execute(&client, &cmd, globals.json)
        }
        Command::Token(cmd) => {
            let config = load_config(&globals)?;
            run_token(&cmd, &config)
        }
    }
}

fn usage(topic: HelpTopic) -> &'static str {
    match topic {
        HelpTopic::Top => usage::TOP,
        HelpTopic::Job => usage::JOB,
        HelpTopic::Token => usage::TOKEN,
        HelpTopic::Keys => usage::KEYS,
        HelpTopic::Audit => usage::AUDIT,
        HelpTopic::NatsPermissions => usage::NATS_PERMISSIONS,
    }
}

/// A config that cannot be read or is invalid is the user's to fix: exit 2. One exception: when no config
/// is named, the default file is skipped if this user may not read it (installed, it is root's alone,
/// mode 0600, because it holds the signing key), so job commands still work from the flags and
/// `OSAPI_URL`/`OSAPI_TOKEN`. Reading `/dev/null` instead gives every default plus the env overrides.
fn load_config(globals: &Globals) -> Result<Config, CliError> {
    let named =
        globals.config.is_some() || std::env::var_os(CONFIG_ENV).is_some_and(|v| !v.is_empty());
    let denied = std::fs::File::open(DEFAULT_CONFIG_PATH)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
    let path = if !named && denied {
        Some(std::path::Path::new("/dev/null"))
    } else {
        globals.config.as_deref()
    };
    Config::load(path).map_err(|e| CliError::Usage(e.to_string()))
}

/// URL and token: the flag, else the env variable, else the config's `api.client`.
fn client_for(globals: &Globals, config: &Config) -> Client {
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let url = globals
        .url
        .clone()
        .or_else(|| from_env(URL_ENV))
        .unwrap_or_else(|| config.api.client.url.clone());
    let token = globals
        .token
        .clone()
        .or_else(|| from_env(TOKEN_ENV))
        .or_else(|| Some(config.api.client.bearer_token.clone()));
    Client::new(&url, token)
}

fn run_token(cmd: &TokenCommand, config: &Config) -> Result<Output, CliError> {
    let security = &config.api.server.security;
    match cmd {
        TokenCommand::Generate {
            role,
            subject,
            permissions,
            ttl,
        } => {
            let request = token::Request {
                role,
                subject,
                permissions,
                ttl: *ttl,
            };
            let claims = token::claims(&request, &security.roles, token::now_s()?)?;
            Ok(Output::text(token::encode(&claims, &security.signing_key)?))
        }
        TokenCommand::Validate { token } => {
            let claims = token::validate(token, &security.signing_key)?;
            let text = serde_json::to_string_pretty(&claims)
                .map_err(|e| CliError::Failed(format!("cannot print the claims: {e}")))?;
            Ok(Output::text(text))
        }
    }
}
