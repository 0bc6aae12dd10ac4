//! Who may do what: `Authorization: Bearer JWT` (HS256 with `api.server.security.signing_key`), checked
//! once per request, from the head, by the server (`verify`), whose verdict the router and the audit
//! trail then use. Missing, malformed, expired or wrongly signed tokens, `alg: none` and
//! every other algorithm are 401; a valid token without the permission is 403. `nbf` is honoured; `aud`
//! (OSAPI's tokens carry one) is accepted, and must name `api.server.security.audience` when that is
//! set. The check needs only the request head: the server calls it before reading any body. The
//! signature check (HMAC, compared in constant time) is jsonwebtoken's, on ring; nothing here is
//! hand-rolled crypto. A token that passed is remembered until its `exp` (`cache.rs`), so the check
//! runs once per token rather than once per request.

mod cache;

use crate::error::ApiError;
use cache::TokenCache;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use osapi_common::config::RoleConfig;
use osapi_common::permission;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The `iss` every osapi token carries.
const ISSUER: &str = "osapi";

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    /// Required and checked by jsonwebtoken; read here to know how long the verdict may be kept.
    exp: u64,
}

/// Who made a request: the token's `sub` and `roles` (empty without authentication).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub sub: String,
    pub roles: Vec<String>,
}

/// The signing key and custom roles, or nothing when the API runs unauthenticated (`--no-auth`).
pub struct Auth {
    key: Option<DecodingKey>,
    validation: Validation,
    roles: BTreeMap<String, RoleConfig>,
    /// Tokens that passed, until they expire.
    passed: TokenCache,
}

/// What a validly signed, current token grants: who it is and every permission its roles give.
#[derive(Debug)]
pub struct Grant {
    pub caller: Caller,
    pub granted: BTreeSet<String>,
}

impl Auth {
    /// `signing_key` empty = no authentication at all (only allowed on loopback, see `main.rs`);
    /// `audience` empty = `aud` not checked.
    pub fn new(signing_key: &str, audience: &str, roles: BTreeMap<String, RoleConfig>) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        validation.validate_nbf = true;
        if audience.is_empty() {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        } else {
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        }
        Auth {
            key: (!signing_key.is_empty())
                .then(|| DecodingKey::from_secret(signing_key.as_bytes())),
            validation,
            roles,
            passed: TokenCache::default(),
        }
    }

    /// Verifies the `Authorization` header: the one token check a request gets (the server calls it
    /// from the head, before any body is read); what it found then answers both "may it?" (`allow`)
    /// and "who was it?" (the audit trail).
    pub fn verify(&self, authorization: Option<&str>) -> Verdict {
        self.verify_at(authorization, jsonwebtoken::get_current_timestamp())
    }

    /// [`Auth::verify`] at `now` (seconds since the epoch), the time the cache judges expiry by;
    /// jsonwebtoken reads the clock itself.
    fn verify_at(&self, authorization: Option<&str>, now: u64) -> Verdict {
        let Some(key) = &self.key else {
            return Verdict::Open;
        };
        let token = match bearer(authorization) {
            Ok(token) => token,
            Err(e) => return Verdict::Invalid(e),
        };
        if let Some(grant) = self.passed.get(token, now) {
            return Verdict::Valid(grant);
        }
        match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
            Ok(data) => {
                let claims = data.claims;
                let grant = Arc::new(Grant {
                    granted: permission::granted(
                        &claims.roles,
                        claims.permissions.as_deref(),
                        &self.roles,
                    ),
                    caller: Caller {
                        sub: claims.sub,
                        roles: claims.roles,
                    },
                });
                self.passed.put(token, claims.exp, grant.clone(), now);
                Verdict::Valid(grant)
            }
            Err(e) => Verdict::Invalid(ApiError::unauthorized(format!(
                "invalid token: {}",
                reason(e.kind())
            ))),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(authorization: Option<&str>) -> Result<&str, ApiError> {
    let header = authorization.ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization must be 'Bearer TOKEN'"))
}

/// What one request's token turned out to be.
pub enum Verdict {
    /// The API runs without authentication (`--no-auth`): everything is allowed, to nobody in particular.
    Open,
    /// A validly signed, current token: who it is and every permission its roles grant.
    Valid(Arc<Grant>),
    /// No token, or one that is not valid: the 401 to answer when a route needs a permission.
    Invalid(ApiError),
}

impl Verdict {
    /// Whether the request may do what needs `needed`: who it is, or 401 (no valid token) or 403
    /// (a valid token without that permission).
    pub fn allow(&self, needed: &str) -> Result<Caller, ApiError> {
        match self {
            Verdict::Open => Ok(Caller::default()),
            Verdict::Valid(grant) if permission::allows(&grant.granted, needed) => {
                Ok(grant.caller.clone())
            }
            Verdict::Valid(_) => Err(ApiError::forbidden(format!(
                "token lacks permission {needed}"
            ))),
            Verdict::Invalid(e) => Err(e.clone()),
        }
    }

    /// The caller of a validly signed token, whatever it may do (for the audit trail).
    pub fn caller(&self) -> Option<&Caller> {
        match self {
            Verdict::Valid(grant) => Some(&grant.caller),
            _ => None,
        }
    }
}

fn reason(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "only HS256 is accepted",
        ErrorKind::InvalidIssuer => "issuer is not osapi",
        ErrorKind::ImmatureSignature => "not valid yet (nbf is in the future)",
        ErrorKind::InvalidAudience => "audience (aud) is not this API's",
        ErrorKind::MissingRequiredClaim(_) => {
            "a required claim (exp, iss, sub, and aud when an audience is set) is missing"
        }
        _ => "malformed (expected an HS256 JWT)",
    }
}

#[cfg(test)]
mod tests;
