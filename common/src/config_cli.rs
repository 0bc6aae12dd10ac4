//! The daemons' command line: `--config PATH` (or `-c`, `--config=PATH`) and `--help`.

use super::ConfigError;
use std::path::PathBuf;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliArgs {
    /// Start, with the config path if one was given.
    Run { config: Option<PathBuf> },
    /// `--help` / `-h`: print usage and exit.
    Help,
}

/// Parses `--config PATH`, `-c PATH`, `--config=PATH` and `--help`/`-h` from argv (skipping `argv[0]`).
/// Anything else, a missing PATH or a repeated `--config` is an error naming the argument.
pub fn parse_cli_args(args: &[String]) -> Result<CliArgs, ConfigError> {
    let mut config: Option<PathBuf> = None;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let path = match arg.as_str() {
            "--help" | "-h" => return Ok(CliArgs::Help),
            "--config" | "-c" => rest
                .next()
                .ok_or_else(|| ConfigError(format!("{arg} needs a PATH")))?
                .clone(),
            other => match other.strip_prefix("--config=") {
                Some(path) => path.to_string(),
                None => {
                    return Err(ConfigError(format!(
                        "unknown argument '{other}' (try --help)"
                    )))
                }
            },
        };
        if path.is_empty() {
            return Err(ConfigError(format!("{arg}: the config PATH is empty")));
        }
        if config.is_some() {
            return Err(ConfigError(format!("{arg}: --config given more than once")));
        }
        config = Some(PathBuf::from(path));
    }
    Ok(CliArgs::Run { config })
}
