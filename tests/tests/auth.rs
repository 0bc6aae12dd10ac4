//! Authentication and permissions over HTTP: every 401 variant, 403, roles, a custom role, the
//! `permissions` claim, and the open endpoints.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use osapi_tests::{claims, sign, token, Cluster, CUSTOM_ROLE, SIGNING_KEY};
use serde_json::json;

const JOB: &str = r#"{"operation":{"type":"test.ping.do","data":{}},"target_hostname":"_any"}"#;

fn unsigned(header: serde_json::Value, claims: &serde_json::Value) -> String {
    let part = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", part(&header), part(claims))
}

#[test]
fn bad_tokens_are_401() {
    let c = Cluster::start(&[]);
    let mut expired = claims(&["admin"], None);
    expired["exp"] = json!(1_000_000);
    let mut no_exp = claims(&["admin"], None);
    no_exp.as_object_mut().map(|o| o.remove("exp"));
    let mut other_issuer = claims(&["admin"], None);
    other_issuer["iss"] = json!("someone-else");
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims(&["admin"], None),
        &jsonwebtoken::EncodingKey::from_secret(SIGNING_KEY.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("empty bearer", Some(String::new())),
        ("not a JWT", Some("abc.def".into())),
        ("expired", Some(sign(&expired, SIGNING_KEY))),
        (
            "wrong key",
            Some(sign(
                &claims(&["admin"], None),
                "another-signing-key-of-32-bytes-or-more",
            )),
        ),
        ("no exp", Some(sign(&no_exp, SIGNING_KEY))),
        ("wrong issuer", Some(sign(&other_issuer, SIGNING_KEY))),
        (
            "alg none",
            Some(unsigned(
                json!({"alg": "none", "typ": "JWT"}),
                &claims(&["admin"], None),
            )),
        ),
        ("HS512", Some(hs512)),
        (
            "RS256 header on an HMAC body",
            Some({
                let good = token(&["admin"], None);
                let rest = good
                    .split_once('.')
                    .map(|(_, r)| r.to_string())
                    .unwrap_or_default();
                format!(
                    "{}.{rest}",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#)
                )
            }),
        ),
    ];
    for (what, tok) in cases {
        for (method, path, body) in [("GET", "/job", None), ("POST", "/job", Some(JOB))] {
            let resp = c.http_as(tok.as_deref(), method, path, body);
            assert_eq!(resp.status, 401, "{what}: {method} {path} -> {}", resp.text);
            resp.assert_error(401);
            assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{what}");
        }
    }
    // A scheme other than Bearer.
    let resp = osapi_tests::request_as(None, &c.api.base_url(), "GET", "/job/status", None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status, 401);
    assert_eq!(
        c.http("GET", "/job/status", None).status,
        200,
        "admin still works"
    );
}

#[test]
fn roles_and_permissions_decide_403() {
    let c = Cluster::start(&[]);
    let read = token(&["read"], None);
    let write = token(&["write"], None);
    let custom = token(&[CUSTOM_ROLE], None);
    let admin_narrowed = token(&["admin"], Some(&["job:read"]));
    let read_widened = token(&["read"], Some(&["job:read", "job:write"]));
    let unknown_role = token(&["wizard"], None);
    let cases: &[(&str, &str, &str, Option<&str>, u16)] = &[
        ("read", &read, "GET", None, 200),
        ("read", &read, "POST", Some(JOB), 403),
        ("write", &write, "GET", None, 200),
        ("write", &write, "POST", Some(JOB), 201),
        ("custom role ops (job:read)", &custom, "GET", None, 200),
        (
            "custom role ops (job:read)",
            &custom,
            "POST",
            Some(JOB),
            403,
        ),
        (
            "admin narrowed by permissions",
            &admin_narrowed,
            "GET",
            None,
            200,
        ),
        (
            "admin narrowed by permissions",
            &admin_narrowed,
            "POST",
            Some(JOB),
            403,
        ),
        (
            "read widened by permissions",
            &read_widened,
            "POST",
            Some(JOB),
            201,
        ),
        ("unknown role", &unknown_role, "GET", None, 403),
    ];
    for (what, tok, method, body, want) in cases {
        let resp = c.http_as(Some(tok), method, "/job", *body);
        assert_eq!(resp.status, *want, "{what}: {method} /job -> {}", resp.text);
        if *want == 403 {
            resp.assert_error(403);
            assert!(
                resp.body["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("permission")),
                "{}",
                resp.text
            );
        }
    }
    let id = c.create_job("test.ping.do", json!({}), "_any");
    assert_eq!(
        c.http_as(Some(&read), "DELETE", &format!("/job/{id}"), None)
            .status,
        403
    );
    assert_eq!(
        c.http_as(Some(&read), "POST", &format!("/job/{id}/retry"), None)
            .status,
        403
    );
    assert_eq!(
        c.http_as(Some(&read), "GET", &format!("/job/{id}"), None)
            .status,
        200
    );
    assert_eq!(
        c.http_as(Some(&read), "GET", "/job/workers", None).status,
        200
    );
}

#[test]
fn open_endpoints_need_no_token() {
    let c = Cluster::start(&[]);
    for path in ["/health", "/health/ready", "/openapi.yaml"] {
        let resp = c.http_as(None, "GET", path, None);
        assert_eq!(resp.status, 200, "{path}: {}", resp.text);
    }
    let spec = c.http_as(None, "GET", "/openapi.yaml", None);
    assert!(
        spec.text.contains("/job/{id}/retry") && spec.text.contains("openapi:"),
        "{}",
        spec.text
    );
    // Unknown routes stay 404 and wrong methods 405 without a token: nothing to authorize.
    assert_eq!(c.http_as(None, "GET", "/nope", None).status, 404);
    assert_eq!(c.http_as(None, "PUT", "/job", None).status, 405);
}

/// The API remembers tokens that passed (so the check runs once per token): what it remembers must
/// still end at the token's `exp`, and must never vouch for different bytes carrying its signature.
#[test]
fn a_token_used_while_valid_is_refused_once_it_expires_and_vouches_for_nothing_else() {
    let c = Cluster::start(&[]);
    let now = jsonwebtoken::get_current_timestamp();
    let mut short = claims(&["read"], None);
    short["exp"] = json!(now + 2);
    let short = sign(&short, SIGNING_KEY);
    assert_eq!(c.http_as(Some(&short), "GET", "/job", None).status, 200);
    // Its signature on claims that say admin.
    let admin = token(&["admin"], None);
    let signature = short.rsplit_once('.').map(|(_, s)| s).unwrap_or_default();
    let head_claims = admin.rsplit_once('.').map(|(h, _)| h).unwrap_or_default();
    let forged = format!("{head_claims}.{signature}");
    let resp = c.http_as(Some(&forged), "POST", "/job", Some(JOB));
    assert_eq!(resp.status, 401, "forged: {}", resp.text);
    assert!(resp.text.contains("bad signature"), "{}", resp.text);
    // Used again and again until it expires: the answer turns to 401 "expired", not before its exp.
    let now_s = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let mut last = None;
    osapi_tests::wait_until(
        "the expired token's 401",
        std::time::Duration::from_secs(15),
        || {
            let resp = c.http_as(Some(&short), "GET", "/job", None);
            let refused = resp.status == 401;
            if !refused {
                assert_eq!(resp.status, 200, "{}", resp.text);
            }
            last = Some((resp, now_s()));
            refused
        },
    );
    let (resp, at) = last.unwrap_or_else(|| panic!("no answer"));
    assert!(resp.text.contains("expired"), "{}", resp.text);
    assert!(at > now + 2, "refused at {at}, before its exp {}", now + 2);
}
