//! Tokens for the tests: every test cluster's API is configured with [`SIGNING_KEY`] and the custom role
//! [`CUSTOM_ROLE`], and signs jobs with [`JOB_KEY`], which the test workers trust; [`token`] signs any claims with it (or another key, to test rejection).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// `api.server.security.signing_key` of every test API.
pub const SIGNING_KEY: &str = "osapi-test-signing-key-not-for-production";
/// The job-signing key of every test API (made by `openssl genpkey -algorithm ed25519`; a test key only).
pub const JOB_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIPmlcIZsmttb9MJ4iNk1Ra3uKeRvsatJX6UgZCSFwdtV
-----END PRIVATE KEY-----
";
/// Its public half (`openssl pkey -pubout`), which every test worker trusts.
pub const JOB_KEY_PUB: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAR5K8lOkHsxesVQ6qrMPVcPCDpD0cJ7Z9QV9XL8XQIOc=
-----END PUBLIC KEY-----
";
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
