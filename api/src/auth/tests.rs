use super::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

const KEY: &str = "unit-test-signing-key-of-some-length";

fn token(key: &str, roles: &[&str], exp: u64) -> String {
    let claims = json!({ "sub": "tester", "roles": roles, "iss": "osapi", "exp": exp });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("signing: {e}"))
}

fn auth() -> Auth {
    Auth::new(KEY, "", BTreeMap::new())
}

fn bearer_of(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn a_good_token_is_checked_once_and_remembered() {
    let auth = auth();
    let now = jsonwebtoken::get_current_timestamp();
    let header = bearer_of(&token(KEY, &["admin"], now + 3600));
    for _ in 0..3 {
        let verdict = auth.verify(Some(&header));
        assert_eq!(verdict.caller().map(|c| c.sub.as_str()), Some("tester"));
        assert!(verdict.allow("job:write").is_ok());
    }
    assert_eq!(auth.passed.len(), 1);
}

#[test]
fn refused_tokens_are_not_remembered() {
    let auth = auth();
    let now = jsonwebtoken::get_current_timestamp();
    let wrong_key = bearer_of(&token("another-key-entirely", &["admin"], now + 3600));
    let expired = bearer_of(&token(KEY, &["admin"], now - 10));
    for header in [&wrong_key, &expired, &wrong_key] {
        assert!(matches!(auth.verify(Some(header)), Verdict::Invalid(_)));
    }
    assert_eq!(auth.passed.len(), 0);
}

#[test]
fn a_remembered_token_does_not_vouch_for_a_changed_one() {
    let auth = auth();
    let now = jsonwebtoken::get_current_timestamp();
    let good = token(KEY, &["viewer"], now + 3600);
    assert!(auth.verify(Some(&bearer_of(&good))).caller().is_some());
    // The same signature on claims that say admin: a forgery, not the remembered token.
    let (_, signature) = good.rsplit_once('.').unwrap_or_default();
    let admin = token(KEY, &["admin"], now + 3600);
    let (head_claims, _) = admin.rsplit_once('.').unwrap_or_default();
    let forged = bearer_of(&format!("{head_claims}.{signature}"));
    match auth.verify(Some(&forged)) {
        Verdict::Invalid(e) => assert!(e.error.contains("bad signature"), "{}", e.error),
        _ => panic!("the forged token was accepted"),
    }
}

#[test]
fn a_remembered_token_is_refused_by_the_cache_after_its_exp() {
    let auth = auth();
    let now = jsonwebtoken::get_current_timestamp();
    let token = token(KEY, &["admin"], now + 60);
    assert!(auth.verify(Some(&bearer_of(&token))).caller().is_some());
    assert!(auth.passed.get(&token, now + 60).is_some());
    assert!(auth.passed.get(&token, now + 61).is_none());
}
