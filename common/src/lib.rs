//! Domain rules of osapi, shared by the API, the worker and the CLI.
//!
//! Invariant: this crate does no IO (no NATS, no HTTP, no threads, no clock reads except
//! through the `now` arguments callers pass in), so everything here is unit-tested with plain values.

pub mod canonical;
pub mod conditions;
pub mod config;
pub mod drain;
pub mod duration;
pub mod idempotency;
pub mod job;
pub mod names;
pub mod nats_permissions;
pub mod operation;
pub mod permission;
pub mod status;
pub mod target;
pub mod timefmt;
pub mod trust;
pub mod view;
