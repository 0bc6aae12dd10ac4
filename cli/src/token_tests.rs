//! Round trips and rejections of `osapi token`.

use super::*;

const KEY: &str = "test-signing-key-of-at-least-32-bytes";
const NOW_S: u64 = 1_700_000_000;

fn request<'a>(role: &'a str, permissions: &'a [String]) -> Request<'a> {
    Request {
        role,
        subject: "alice",
        permissions,
        ttl: Duration::from_secs(3600),
    }
}

fn custom_roles() -> BTreeMap<String, RoleConfig> {
    let ops = RoleConfig {
        permissions: vec!["job:read".to_string()],
    };
    BTreeMap::from([("ops".to_string(), ops)])
}

#[test]
fn generate_then_validate_round_trips() {
    let perms = vec!["job:read".to_string(), "health:read".to_string()];
    let now = now_s().expect("clock");
    let claims = claims(&request("write", &perms), &BTreeMap::new(), now).expect("claims");
    let token = encode(&claims, KEY).expect("token");
    let back = validate(&token, KEY).expect("valid");
    let want = serde_json::json!({
        "sub": "alice", "roles": ["write"], "permissions": ["job:read", "health:read"],
        "iss": "osapi", "iat": now, "exp": now + 3600,
    });
    assert_eq!(back, want);
    let typed: Claims = serde_json::from_value(back).expect("typed claims");
    assert_eq!(typed, claims);
}

#[test]
fn permissions_are_left_out_when_none_given() {
    let claims = claims(&request("read", &[]), &BTreeMap::new(), NOW_S).expect("claims");
    let json = serde_json::to_value(&claims).expect("json");
    assert!(json.get("permissions").is_none(), "{json}");
    assert_eq!(claims.exp, NOW_S + 3600);
}

#[test]
fn roles_builtin_and_custom_are_known_others_are_usage_errors() {
    let cases: &[(&str, bool)] = &[
        ("read", true),
        ("write", true),
        ("admin", true),
        ("ops", true),
        ("root", false),
        ("Admin", false),
    ];
    for (role, ok) in cases {
        let got = claims(&request(role, &[]), &custom_roles(), NOW_S);
        match (ok, got) {
            (true, Ok(c)) => assert_eq!(c.roles, vec![role.to_string()]),
            (false, Err(CliError::Usage(m))) => assert!(m.contains(role), "{m}"),
            (_, other) => panic!("role {role}: {other:?}"),
        }
    }
}

#[test]
fn malformed_permissions_and_zero_ttl_are_usage_errors() {
    for bad in ["job", ":read", "job:", "job read", "job:read:x"] {
        let perms = vec![bad.to_string()];
        let got = claims(&request("read", &perms), &BTreeMap::new(), NOW_S);
        assert!(matches!(got, Err(CliError::Usage(_))), "{bad}: {got:?}");
    }
    let mut zero = request("read", &[]);
    zero.ttl = Duration::ZERO;
    assert!(matches!(
        claims(&zero, &BTreeMap::new(), NOW_S),
        Err(CliError::Usage(_))
    ));
}

#[test]
fn expired_token_is_rejected() {
    let old = claims(&request("read", &[]), &BTreeMap::new(), NOW_S - 7200).expect("claims");
    let token = encode(&old, KEY).expect("token");
    let err = validate(&token, KEY).expect_err("expired");
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn wrong_key_is_rejected() {
    let now = now_s().expect("clock");
    let claims = claims(&request("admin", &[]), &BTreeMap::new(), now).expect("claims");
    let token = encode(&claims, "another-signing-key-of-32-bytes-or-more").expect("token");
    let err = validate(&token, KEY).expect_err("wrong key");
    assert!(err.to_string().contains("signature"), "{err}");
}

#[test]
fn alg_none_and_other_algorithms_are_rejected() {
    // {"alg":"none","typ":"JWT"} . {"sub":"eve","roles":["admin"],"iss":"osapi","iat":1700000000,"exp":4102444800} . (no signature)
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJldmUiLCJyb2xlcyI6WyJhZG1pbiJdLCJpc3MiOiJvc2FwaSIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjo0MTAyNDQ0ODAwfQ.";
    assert!(matches!(validate(none, KEY), Err(CliError::Failed(_))));

    let now = now_s().expect("clock");
    let claims = claims(&request("admin", &[]), &BTreeMap::new(), now).expect("claims");
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims,
        &EncodingKey::from_secret(KEY.as_bytes()),
    )
    .expect("token");
    let err = validate(&hs512, KEY).expect_err("HS512");
    assert!(err.to_string().contains("HS256"), "{err}");
}

#[test]
fn missing_exp_or_wrong_issuer_is_rejected() {
    let key = EncodingKey::from_secret(KEY.as_bytes());
    let header = Header::new(Algorithm::HS256);
    let no_exp = serde_json::json!({"sub": "a", "roles": ["read"], "iss": "osapi", "iat": NOW_S});
    let token = jsonwebtoken::encode(&header, &no_exp, &key).expect("token");
    assert!(validate(&token, KEY)
        .expect_err("no exp")
        .to_string()
        .contains("'exp'"));

    let other =
        serde_json::json!({"sub": "a", "roles": ["read"], "iss": "evil", "exp": 4_102_444_800u64});
    let token = jsonwebtoken::encode(&header, &other, &key).expect("token");
    assert!(validate(&token, KEY)
        .expect_err("issuer")
        .to_string()
        .contains("issuer"));

    assert!(validate("not-a-token", KEY).is_err());
}

#[test]
fn empty_signing_key_names_the_key() {
    let claims = claims(&request("read", &[]), &BTreeMap::new(), NOW_S).expect("claims");
    for err in [
        encode(&claims, "").expect_err("empty"),
        validate("x.y.z", "").expect_err("empty"),
    ] {
        let text = err.to_string();
        assert!(text.contains("api.server.security.signing_key"), "{text}");
        assert!(
            text.contains("OSAPI_API_SERVER_SECURITY_SIGNING_KEY"),
            "{text}"
        );
        assert_eq!(err.exit_code(), 2);
    }
}

#[test]
fn short_signing_key_is_refused() {
    let claims = claims(&request("read", &[]), &BTreeMap::new(), NOW_S).expect("claims");
    let err = encode(&claims, "only-31-bytes-long-not-enough!!").expect_err("short key");
    let text = err.to_string();
    assert!(text.contains("31 bytes") && text.contains("32"), "{text}");
    assert_eq!(err.exit_code(), 2);
}
