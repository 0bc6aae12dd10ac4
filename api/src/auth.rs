//! Who may do what: `Authorization: Bearer JWT` (HS256 with `api.server.security.signing_key`), checked
//! once per request by the router. Missing, malformed, expired or wrongly signed tokens, `alg: none` and
//! every other algorithm are 401; a valid token without the permission is 403. `nbf` is honoured; `aud`
//! (OSAPI's tokens carry one) is accepted, and must name `api.server.security.audience` when that is
//! set. The check needs only the request head: the server calls it before reading any body. The
//! signature check (HMAC, compared in constant time) is jsonwebtoken's, on ring; nothing here is
//! hand-rolled crypto.

use crate::error::ApiError;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use osapi_common::config::RoleConfig;
use osapi_common::permission;
use serde::Deserialize;
use std::collections::BTreeMap;

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
        }
    }

    /// Checks the `Authorization` header against the permission a route needs; on success, who it is.
    pub fn check(&self, authorization: Option<&str>, needed: &str) -> Result<Caller, ApiError> {
        let Some(key) = &self.key else {
            return Ok(Caller::default());
        };
        let header = authorization.ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("Authorization must be 'Bearer TOKEN'"))?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| ApiError::unauthorized(format!("invalid token: {}", reason(e.kind()))))?
            .claims;
        let granted =
            permission::granted(&claims.roles, claims.permissions.as_deref(), &self.roles);
        if permission::allows(&granted, needed) {
            Ok(Caller {
                sub: claims.sub,
                roles: claims.roles,
            })
        } else {
            Err(ApiError::forbidden(format!(
                "token lacks permission {needed}"
            )))
        }
    }
}

impl Auth {
    /// The caller of a validly signed token, whatever it may do (for the audit trail); `None` otherwise.
    pub fn identify(&self, authorization: Option<&str>) -> Option<Caller> {
        let key = self.key.as_ref()?;
        let token = authorization?
            .strip_prefix("Bearer ")
            .or_else(|| authorization?.strip_prefix("bearer "))?
            .trim();
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .ok()?
            .claims;
        Some(Caller {
            sub: claims.sub,
            roles: claims.roles,
        })
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
