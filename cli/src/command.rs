//! What a command line asks for, once parsed: the global options and one command with its arguments.

use std::path::PathBuf;
use std::time::Duration;

/// Options that apply to every command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Globals {
    pub url: Option<String>,
    pub token: Option<String>,
    pub config: Option<PathBuf>,
    /// Print the server's JSON as is instead of tables.
    pub json: bool,
}

/// Which usage text `--help` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelpTopic {
    Top,
    Job,
    Token,
    Keys,
    Audit,
    NatsPermissions,
}

/// Where the operation's `data` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// No data given: `{}`.
    Empty,
    /// `--data '{...}'`.
    Inline(String),
    /// `--json-file F`.
    File(PathBuf),
}

/// The flags shared by `job add` and `job run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    pub operation: String,
    pub target: Option<String>,
    pub data: DataSource,
    /// `None`: the server's default (60s); `job run` then waits [`crate::args::DEFAULT_JOB_TIMEOUT`].
    pub timeout: Option<Duration>,
    /// `--idempotency-key`: sent as `Idempotency-Key`, so re-running the same command creates nothing new.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCommand {
    Add(Submit),
    Run(Submit),
    Get {
        id: String,
        wait: Option<Duration>,
    },
    List {
        status: Option<String>,
        limit: Option<usize>,
        offset: Option<usize>,
    },
    Delete {
        id: String,
    },
    /// `POST /job/{id}/cancel`.
    Cancel {
        id: String,
    },
    /// `osapi worker drain|undrain HOST`: `POST /job/workers/{host}/drain|undrain`.
    Drain {
        hostname: String,
        drain: bool,
    },
    Retry {
        id: String,
        target: Option<String>,
        idempotency_key: Option<String>,
    },
    Status,
    Workers,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCommand {
    Generate {
        role: String,
        subject: String,
        permissions: Vec<String>,
        ttl: Duration,
    },
    Validate {
        token: String,
    },
}

/// `osapi keys ...`: the job-signing key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysCommand {
    /// Writes `out` (private, 0600) and `out.pub`.
    Generate { out: PathBuf },
}

/// `osapi audit ...`: the API's audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditCommand {
    List {
        limit: Option<u64>,
        offset: Option<u64>,
    },
    /// Every entry to a new JSON Lines file, oldest first.
    Export { out: PathBuf },
}

/// `osapi nats-permissions`: one identity's block for nats-server's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsPermissions {
    /// `None`: the API's block (`--api`); else this worker host's.
    pub hostname: Option<String>,
    /// `--label KEY=VALUE`: the host's labels (its label consumers depend on them).
    pub labels: Vec<(String, String)>,
    /// `--nkey U...`: the identity's public NKey; without it, a placeholder to replace.
    pub nkey: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help(HelpTopic),
    Job(JobCommand),
    Token(TokenCommand),
    Keys(KeysCommand),
    Audit(AuditCommand),
    NatsPermissions(NatsPermissions),
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub globals: Globals,
    pub command: Command,
}
