//! Tokens for the tests: every test cluster's API is configured with [`SIGNING_KEY`] and the custom role
//! [`CUSTOM_ROLE`]; [`token`] signs any claims with it (or another key, to test rejection).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// `api.server.security.signing_key` of every test API.
pub const SIGNING_KEY: &str = "osapi-test-signing-key-not-for-production";
/// A custom role the test APIs define: `ops` with `job:read` only.
pub const CUSTOM_ROLE: &str = "ops";

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// HS256-signs `claims` with `key`.
pub fn sign(claims: &Value, key: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("signing test token: {e}"))
}

/// Valid claims for `roles` (and an optional `permissions` claim), expiring in an hour.
pub fn claims(roles: &[&str], permissions: Option<&[&str]>) -> Value {
    let mut c = json!({ "sub": "tester", "roles": roles, "iss": "osapi", "iat": now_s(), "exp": now_s() + 3600 });
    if let Some(p) = permissions {
        c["permissions"] = json!(p);
    }
    c
}

/// A valid token for the test clusters.
pub fn token(roles: &[&str], permissions: Option<&[&str]>) -> String {
    sign(&claims(roles, permissions), SIGNING_KEY)
}

/// The token the cluster helpers send: role `admin`.
pub fn admin_token() -> String {
    token(&["admin"], None)
}
