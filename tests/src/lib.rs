//! Test harness for osapi's integration tests: a private nats-server on a free port with its own store, the real
//! `osapi-api` and `osapi-worker` binaries (built by `cargo build --workspace --bins`), and HTTP helpers.
//!
//! Every wait is a poll of a condition with a deadline that panics with a clear message on timeout; nothing sleeps
//! and hopes. Every test starts its own [`Cluster`] (its own nats-server), so tests are independent and run in
//! parallel. When a test panics, each process prints the tail of its log as it is dropped.
//!
//! Environment: `OSAPI_NATS_SERVER` (nats-server binary; else /usr/sbin/nats-server, else PATH),
//! `OSAPI_BIN_DIR` (where osapi-api and osapi-worker are; else the cargo target dir of the test binary),
//! Every test API requires tokens signed with [`SIGNING_KEY`]; the [`Cluster`] helpers send an admin token.
//! `OSAPI_TEST_KEEP` (keep the temp dirs of a failed test: configs, full logs, NATS store).
//! The daemons never see the caller's `OSAPI_*` variables, which would override their config files.

mod attacker;
mod auth;
mod bins;
mod cluster;
mod daemons;
pub mod edge;
mod http;
mod nats;
pub mod operator;
mod timestamp;
mod wait;

pub use attacker::Attacker;
pub use auth::{admin_token, claims, sign, token, CUSTOM_ROLE, JOB_KEY, JOB_KEY_PUB, SIGNING_KEY};
pub use bins::{binary, command};
pub use cluster::{Cluster, WorkerSpec, FLEET};
pub use daemons::{Api, ExtraConfig, Options, Worker};
pub use http::{echo_job_completed, request, request_as, request_with, Response};
pub use nats::{NatsCluster, NatsServer, Paused};
pub use timestamp::{max_overlap, parse_rfc3339_micros};
pub use wait::{free_port, wait_until};

/// Job statuses after which nothing changes any more.
pub const TERMINAL_STATUSES: [&str; 4] = ["completed", "failed", "partial_failure", "cancelled"];

/// True when `status` is one of [`TERMINAL_STATUSES`].
pub fn is_terminal(status: &str) -> bool {
    TERMINAL_STATUSES.contains(&status)
}
