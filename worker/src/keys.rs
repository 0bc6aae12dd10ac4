//! The worker's keys at start-up: the job-signing public keys it trusts (`job.worker.trusted_job_keys`),
//! and a warning for secrets a worker's config should not hold. A worker that trusts no key and is not
//! told `allow_unsigned_jobs: true` refuses to start: it would run nothing, or (worse) anything.

use osapi_common::config::{env_name, Config, WorkerConfig};
use osapi_common::trust::{self, Trust};

/// Reads and parses every trusted key; any unreadable or malformed file stops start-up, naming it.
pub fn load_trust(w: &WorkerConfig) -> Result<Trust, String> {
    let mut keys = Vec::with_capacity(w.trusted_job_keys.len());
    for (i, path) in w.trusted_job_keys.iter().enumerate() {
        let setting = format!("job.worker.trusted_job_keys[{i}]");
        let pem = std::fs::read_to_string(path).map_err(|e| format!("{setting} {path}: {e}"))?;
        let key =
            trust::verifying_key_from_pem(&pem).map_err(|e| format!("{setting} {path}: {e}"))?;
        log::info!("trusting jobs signed by {} ({path})", trust::key_id(&key));
        keys.push(key);
    }
    let trust = Trust::new(keys, w.allow_unsigned_jobs);
    if !trust.can_run_anything() {
        return Err(format!(
            "job.worker.trusted_job_keys is empty: this worker would run no job. List the API's public job key \
             (the .pub of api.server.security.job_signing_key_file), or set job.worker.allow_unsigned_jobs: true \
             for development only (env {})",
            env_name("job.worker.allow_unsigned_jobs")
        ));
    }
    if w.allow_unsigned_jobs {
        log::warn!(
            "job.worker.allow_unsigned_jobs is on: jobs without a signature run here. Development only: \
             anyone who can write to NATS can run anything on this host as this worker's user"
        );
    }
    Ok(trust)
}

/// A worker needs neither the JWT signing key nor the job signing key: whoever reads its config could mint
/// API tokens or sign jobs for the whole fleet. Warn, so that shared configs get split.
pub fn warn_about_secrets(cfg: &Config) {
    let security = &cfg.api.server.security;
    if !security.signing_key.is_empty() {
        log::warn!(
            "this worker's config holds api.server.security.signing_key (the API's JWT key): a worker needs \
             none; give the worker a config of its own without it (README, install)"
        );
    }
    if !security.job_signing_key_file.is_empty() {
        log::warn!(
            "this worker's config names api.server.security.job_signing_key_file (the private job key): a \
             worker needs only the public half in job.worker.trusted_job_keys"
        );
    }
}
