//! `osapi token generate|validate`: HS256 JWTs signed with `api.server.security.signing_key`, with the
//! claims the API checks (`sub`, `roles`, optional `permissions`, `iss: osapi`, `iat`, `exp`).

use crate::error::CliError;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use osapi_common::config::{env_name, RoleConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `iss` of every osapi token.
pub const ISSUER: &str = "osapi";
/// Roles every server knows; others must be defined in `api.server.security.roles`.
pub const BUILTIN_ROLES: [&str; 3] = ["read", "write", "admin"];
const SIGNING_KEY: &str = "api.server.security.signing_key";

/// The claims of an osapi token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<String>,
    /// When present, these replace the permissions the roles would give.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    pub iss: String,
    pub iat: u64,
    pub exp: u64,
}

/// What `token generate` was asked for.
pub struct Request<'a> {
    pub role: &'a str,
    pub subject: &'a str,
    pub permissions: &'a [String],
    pub ttl: Duration,
}

/// Seconds since the Unix epoch.
pub fn now_s() -> Result<u64, CliError> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| CliError::Failed("the system clock is before 1970".to_string()))
}

/// Checks the request against the known roles and builds the claims, issued at `now_s`.
pub fn claims(
    req: &Request<'_>,
    custom_roles: &BTreeMap<String, RoleConfig>,
    now_s: u64,
) -> Result<Claims, CliError> {
    if !BUILTIN_ROLES.contains(&req.role) && !custom_roles.contains_key(req.role) {
        let mut known: Vec<&str> = BUILTIN_ROLES.to_vec();
        known.extend(custom_roles.keys().map(String::as_str));
        return Err(CliError::Usage(format!(
            "unknown role '{}' (known: {}; custom roles go in api.server.security.roles)",
            req.role,
            known.join(", ")
        )));
    }
    if let Some(bad) = req.permissions.iter().find(|p| !is_permission(p)) {
        return Err(CliError::Usage(format!(
            "permission '{bad}' must look like RESOURCE:ACTION, e.g. job:read"
        )));
    }
    if req.ttl.as_secs() == 0 {
        return Err(CliError::Usage("--ttl must be at least 1s".to_string()));
    }
    let exp = now_s
        .checked_add(req.ttl.as_secs())
        .ok_or_else(|| CliError::Usage("--ttl is too large".to_string()))?;
    Ok(Claims {
        sub: req.subject.to_string(),
        roles: vec![req.role.to_string()],
        permissions: (!req.permissions.is_empty()).then(|| req.permissions.to_vec()),
        iss: ISSUER.to_string(),
        iat: now_s,
        exp,
    })
}

/// `job:read`, `health:read`, `job:*`: two non-empty parts of `[A-Za-z0-9_*-]`.
fn is_permission(p: &str) -> bool {
    let part_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*'))
    };
    p.split_once(':')
        .is_some_and(|(resource, action)| part_ok(resource) && part_ok(action))
}

fn require_key(signing_key: &str) -> Result<&[u8], CliError> {
    if signing_key.is_empty() {
        return Err(CliError::Usage(format!(
            "{SIGNING_KEY} is empty: set it in the config or in ${}",
            env_name(SIGNING_KEY)
        )));
    }
    // The API refuses to start with a shorter key, so a token signed with one is of no use.
    osapi_common::permission::check_signing_key(signing_key)
        .map_err(|e| CliError::Usage(format!("{SIGNING_KEY} {e}")))?;
    Ok(signing_key.as_bytes())
}

/// Signs the claims with HS256.
pub fn encode(claims: &Claims, signing_key: &str) -> Result<String, CliError> {
    let key = EncodingKey::from_secret(require_key(signing_key)?);
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
        .map_err(|e| CliError::Failed(format!("cannot sign the token: {e}")))
}

/// Verifies an HS256 token (signature, `exp`, `iss: osapi`, `sub`) and returns all its claims.
pub fn validate(token: &str, signing_key: &str) -> Result<Value, CliError> {
    let key = DecodingKey::from_secret(require_key(signing_key)?);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    // Checked on this machine's clock: no grace for a token that has run out.
    validation.leeway = 0;
    let data = jsonwebtoken::decode::<Value>(token.trim(), &key, &validation)
        .map_err(|e| CliError::Failed(format!("invalid token: {}", reason(e.kind()))))?;
    Ok(data.claims)
}

fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "it has expired".to_string(),
        ErrorKind::InvalidSignature => {
            format!("bad signature (signed with another {SIGNING_KEY}?)")
        }
        ErrorKind::InvalidAlgorithm => "the algorithm is not HS256".to_string(),
        ErrorKind::InvalidIssuer => format!("the issuer is not '{ISSUER}'"),
        ErrorKind::MissingRequiredClaim(claim) => format!("the claim '{claim}' is missing"),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            "not a JWT (expected HEADER.CLAIMS.SIGNATURE in base64url)".to_string()
        }
        // An unknown `alg` such as `none` fails while the header is read.
        ErrorKind::Json(e) => format!("malformed header or claims ({e}); only HS256 is accepted"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
