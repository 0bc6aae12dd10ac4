//! What a command hands back to `main`: text for stdout, an optional note for stderr, an exit code.

use crate::error::CliError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    /// Printed to stderr after stdout (e.g. why a finished command still exits non-zero).
    pub note: Option<String>,
    pub code: u8,
}

impl Output {
    /// Success with `stdout`.
    pub fn text(stdout: String) -> Output {
        Output {
            stdout,
            note: None,
            code: 0,
        }
    }

    /// Print `stdout` and `note`, and exit with `error`'s code.
    pub fn with_error(stdout: String, error: &CliError) -> Output {
        Output {
            stdout,
            note: Some(error.to_string()),
            code: error.exit_code(),
        }
    }
}
