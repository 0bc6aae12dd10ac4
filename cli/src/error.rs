//! What can go wrong in a command, and the exit code each kind maps to (in one place).

use crate::args::UsageError;
use std::fmt;

/// A command's failure, classified by what the user or a script should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// The command line or the config is wrong: exit 2.
    Usage(String),
    /// The request was answered with an error, a job failed, a token is invalid: exit 1.
    Failed(String),
    /// The server cannot be reached, is unavailable (503), or a wait ran out of time: exit 3.
    Unreachable(String),
}

impl CliError {
    pub const EXIT_FAILED: u8 = 1;
    pub const EXIT_USAGE: u8 = 2;
    pub const EXIT_UNREACHABLE: u8 = 3;

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) => Self::EXIT_FAILED,
            CliError::Usage(_) => Self::EXIT_USAGE,
            CliError::Unreachable(_) => Self::EXIT_UNREACHABLE,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Failed(m) | CliError::Unreachable(m) => f.write_str(m),
        }
    }
}

impl From<UsageError> for CliError {
    fn from(e: UsageError) -> Self {
        CliError::Usage(e.0)
    }
}
