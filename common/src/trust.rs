//! Whether a worker may run a job: the Ed25519 signature over every field a worker acts on (the API
//! signs, each worker verifies against the keys it trusts), and the job's time and place (addressed to
//! this host, not past its deadline). Pure: keys arrive as PEM text, the clock as `now_us`; reading key
//! files is the daemons' business. Signature checks are ed25519-dalek's (`verify_strict`), nothing here
//! is hand-rolled crypto.

use crate::job::{JobDef, JobSignature};
use crate::target::Target;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, KeypairBytes};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::collections::BTreeMap;

pub use ed25519_dalek::{SigningKey as JobSigningKey, VerifyingKey as JobVerifyingKey};

/// Domain separation: these bytes are a job of this format, never anything else signed by the same key.
const CANONICAL_TAG: &str = "osapi-job-v1";
/// The same for the workers' copy of a broadcast (`run.{id}`): bytes of one form never verify as the other.
const RUN_TAG: &str = "osapi-job-run-v1";

/// What a signature covers. The reader knows which record it read, and checks it as that form only:
/// nothing in a record chooses how it is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The whole definition, `jobs.{id}`: every field, `expected_hosts` included.
    Whole,
    /// The workers' copy of a broadcast, `run.{id}` (`JobDef::run_copy`): every field but
    /// `expected_hosts`, which a host needs only for a job older than itself (it then reads the whole).
    Run,
}

/// The bytes a job's signature covers: every field a worker acts on, in a fixed order, as a JSON array
/// whose objects have their keys sorted (so the bytes do not depend on how a map was ordered).
/// `expected_hosts` keeps its order (the API writes it once; reordering it is a change).
pub fn canonical_bytes(def: &JobDef) -> Vec<u8> {
    form_bytes(def, Form::Whole)
}

/// The bytes `form`'s signature covers (`Form::Whole`: [`canonical_bytes`]): the fields written in
/// place, each as `canonical::write` writes its JSON value.
pub fn form_bytes(def: &JobDef, form: Form) -> Vec<u8> {
    use crate::canonical::{write, write_scalar};
    let mut out = String::with_capacity(256);
    let tag = match form {
        Form::Whole => CANONICAL_TAG,
        Form::Run => RUN_TAG,
    };
    out.push('[');
    for head in [tag, &def.id, def.operation.op_type.as_str()] {
        write_scalar(head, &mut out);
        out.push(',');
    }
    write(&def.operation.data, &mut out);
    out.push(',');
    write_scalar(&def.target_hostname, &mut out);
    // Run: the list is not there at all (not an empty one: that is a whole job expecting nobody).
    if form == Form::Whole {
        out.push_str(",[");
        for (i, host) in def.expected_hosts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_scalar(host, &mut out);
        }
        out.push(']');
    }
    out.push(',');
    write_scalar(&def.created, &mut out);
    out.push(',');
    write_scalar(&def.created_us, &mut out);
    out.push(',');
    write_scalar(&def.timeout_ms, &mut out);
    out.push(',');
    write_scalar(&def.retry_of, &mut out);
    out.push(',');
    write_scalar(&def.submitted_by, &mut out);
    out.push(']');
    out.into_bytes()
}

/// The name a key goes by in a signature and in log lines: its 32 public bytes in base64.
pub fn key_id(key: &VerifyingKey) -> String {
    B64.encode(key.as_bytes())
}

/// A job signing key (`api.server.security.job_signing_key_file`): PEM PKCS#8, as
/// `openssl genpkey -algorithm ed25519` writes it.
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, String> {
    SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| format!("not an Ed25519 private key in PEM PKCS#8 (BEGIN PRIVATE KEY): {e}"))
}

/// A trusted key (`job.worker.trusted_job_keys`): PEM SubjectPublicKeyInfo, as `openssl pkey -pubout` writes it.
pub fn verifying_key_from_pem(pem: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_public_key_pem(pem)
        .map_err(|e| format!("not an Ed25519 public key in PEM (BEGIN PUBLIC KEY): {e}"))
}

/// A new key pair's PEM texts (private PKCS#8 v1, exactly openssl's layout; public SPKI) from 32 random bytes.
pub fn key_pair_pem(seed: [u8; 32]) -> Result<(String, String), String> {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    let key = SigningKey::from_bytes(&seed);
    let private = KeypairBytes {
        secret_key: seed,
        public_key: None,
    }
    .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
    .map_err(|e| format!("encoding the private key: {e}"))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| format!("encoding the public key: {e}"))?;
    Ok((private.to_string(), public))
}

/// The signature the API stores with a job (`signature` in `jobs.{id}`).
pub fn sign(def: &JobDef, key: &SigningKey) -> JobSignature {
    sign_as(def, Form::Whole, key)
}

/// The signature over `form`'s bytes of `def` (`Form::Run`: for `run.{id}`).
pub fn sign_as(def: &JobDef, form: Form, key: &SigningKey) -> JobSignature {
    let sig = key.sign(&form_bytes(def, form));
    JobSignature {
        key_id: key_id(&key.verifying_key()),
        sig: B64.encode(sig.to_bytes()),
    }
}

/// How a job passed the signature check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Signed by this trusted key.
    Verified { key_id: String },
    /// Let through unverified because `allow_unsigned_jobs` is on (development only).
    Unverified,
}

/// What a worker trusts: the keys of `job.worker.trusted_job_keys`, and `allow_unsigned_jobs`.
#[derive(Debug, Clone)]
pub struct Trust {
    /// Each key with its id (`key_id`), made once rather than at every check.
    keys: Vec<(String, VerifyingKey)>,
    allow_unsigned: bool,
}

impl Trust {
    /// A worker with no key and no `allow_unsigned` would reject every job: the daemon refuses to start
    /// instead (see [`Trust::can_run_anything`]).
    pub fn new(keys: Vec<VerifyingKey>, allow_unsigned: bool) -> Trust {
        Trust {
            keys: keys.into_iter().map(|k| (key_id(&k), k)).collect(),
            allow_unsigned,
        }
    }

    pub fn can_run_anything(&self) -> bool {
        !self.keys.is_empty() || self.allow_unsigned
    }

    /// Checks `def.signature` against the trusted keys. The error is the reason, for `rejected: REASON`.
    /// With `allow_unsigned`, an unsigned job (or any job when no key is trusted) passes unverified; a
    /// signed job is still verified whenever there are keys to verify it with.
    pub fn check(&self, def: &JobDef) -> Result<Accepted, String> {
        self.check_as(def, Form::Whole)
    }

    /// [`Trust::check`] of a record read as `form` (`Form::Run`: a `run.{id}` record).
    pub fn check_as(&self, def: &JobDef, form: Form) -> Result<Accepted, String> {
        let Some(signature) = &def.signature else {
            return if self.allow_unsigned {
                Ok(Accepted::Unverified)
            } else {
                Err("the job is not signed".into())
            };
        };
        if self.keys.is_empty() && self.allow_unsigned {
            return Ok(Accepted::Unverified);
        }
        let Some((_, key)) = self.keys.iter().find(|(id, _)| *id == signature.key_id) else {
            return Err(format!(
                "signed by key {}, which this worker does not trust",
                signature.key_id
            ));
        };
        // Decoded into the stack: room for one byte more than a signature, so a longer one is seen.
        let mut bytes = [0u8; Signature::BYTE_SIZE + 1];
        let len = match B64.decode_slice(signature.sig.as_bytes(), &mut bytes) {
            Ok(len) => len,
            Err(base64::DecodeSliceError::OutputSliceTooSmall) => bytes.len(),
            Err(base64::DecodeSliceError::DecodeError(_)) => {
                return Err("malformed signature (not base64)".to_string())
            }
        };
        let sig = Signature::from_slice(&bytes[..len])
            .map_err(|_| "malformed signature (not 64 bytes)".to_string())?;
        key.verify_strict(&form_bytes(def, form), &sig)
            .map_err(|_| "bad signature: the job was changed after it was signed".to_string())?;
        Ok(Accepted::Verified {
            key_id: signature.key_id.clone(),
        })
    }
}

/// Whether the job is this host's to run: its target names this hostname, a label prefix it has,
/// `_all` or `_any`. A notification that reached a host its job does not address (a signed job's id
/// published on another host's subject) is not run there.
pub fn addressed_to(def: &JobDef, hostname: &str, labels: &BTreeMap<String, String>) -> bool {
    def.target_hostname
        .parse::<Target>()
        .is_ok_and(|t| t.matches(hostname, labels))
}

/// The error recorded for a job that reached `hostname` after its deadline (`created + timeout`).
pub fn expired(def: &JobDef, hostname: &str, now_us: i64) -> Option<String> {
    (now_us > def.deadline_us()).then(|| format!("expired: reached {hostname} after its deadline"))
}

#[cfg(test)]
#[path = "trust_tests.rs"]
mod tests;
