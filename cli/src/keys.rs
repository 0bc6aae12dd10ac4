//! `osapi keys generate --out PATH`: a new Ed25519 job-signing key pair, PATH (private, PEM PKCS#8, mode
//! 0600 from the moment it exists) and PATH.pub (public, PEM), as openssl writes them. Never overwrites:
//! replacing a key by accident would stop every worker that trusts the old one.

use crate::command::KeysCommand;
use crate::error::CliError;
use crate::output::Output;
use osapi_common::trust;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub fn execute(cmd: &KeysCommand) -> Result<Output, CliError> {
    match cmd {
        KeysCommand::Generate { out } => generate(out),
    }
}

fn generate(out: &Path) -> Result<Output, CliError> {
    let public_path = PathBuf::from(format!("{}.pub", out.display()));
    for path in [out, public_path.as_path()] {
        if path.exists() {
            return Err(CliError::Failed(format!(
                "{} exists; not overwriting a key (remove it first, or choose another --out)",
                path.display()
            )));
        }
    }
    let mut seed = [0_u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| CliError::Failed(format!("no randomness from the OS: {e}")))?;
    let (private, public) = trust::key_pair_pem(seed).map_err(CliError::Failed)?;
    seed.fill(0);
    write_new(out, private.as_bytes(), 0o600)?;
    write_new(&public_path, public.as_bytes(), 0o644)?;
    let key = trust::verifying_key_from_pem(&public).map_err(CliError::Failed)?;
    Ok(Output::text(format!(
        "wrote {} (private: api.server.security.job_signing_key_file) and {} (public: job.worker.trusted_job_keys)\nkey id {}",
        out.display(),
        public_path.display(),
        trust::key_id(&key)
    )))
}

/// Creates `path` (failing if it exists) with `mode` already set, so the key is never readable by others.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    let fail =
        |e: std::io::Error| CliError::Failed(format!("cannot write {}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}
