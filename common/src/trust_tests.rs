//! Unit tests of `trust.rs`: keys as openssl writes them, signatures that hold, and a tampered field of each
//! kind that breaks them; addressing and the deadline.

use super::*;
use crate::job::Operation;
use crate::operation::OperationType;
use serde_json::{json, Value};

/// Made by `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` (a test key, nothing else).
const OPENSSL_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIDshccTHng9U2Jf65LN56YVzwJGCvayGkeYw2PEpOloC
-----END PRIVATE KEY-----
";
const OPENSSL_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAyKzgct1lpJ4QSr4/LOQIsCt+Pq7YXc8UQ21X9zXf03k=
-----END PUBLIC KEY-----
";

fn def() -> JobDef {
    JobDef {
        id: "550e8400-e29b-41d4-a716-446655440000".into(),
        operation: Operation {
            op_type: OperationType::TestEchoDo,
            data: json!({"b": [1, {"y": 2, "x": 1}], "a": "é\"\n"}),
        },
        target_hostname: "group:web".into(),
        expected_hosts: vec!["web1".into(), "web2".into()],
        created: "2026-12-01T00:00:00.000000Z".into(),
        created_us: 1_000_000,
        timeout_ms: 60_000,
        retry_of: Some("650e8400-e29b-41d4-a716-446655440000".into()),
        submitted_by: "alice".into(),
        signature: None,
    }
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn signed(def: JobDef, key: &SigningKey) -> JobDef {
    let signature = sign(&def, key);
    JobDef {
        signature: Some(signature),
        ..def
    }
}

fn trusting(keys: &[&SigningKey]) -> Trust {
    Trust::new(keys.iter().map(|k| k.verifying_key()).collect(), false)
}

#[test]
fn openssl_keys_load_and_sign() {
    let private = signing_key_from_pem(OPENSSL_PRIVATE).unwrap_or_else(|e| panic!("{e}"));
    let public = verifying_key_from_pem(OPENSSL_PUBLIC).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(private.verifying_key(), public);
    let job = signed(def(), &private);
    assert_eq!(
        Trust::new(vec![public], false).check(&job),
        Ok(Accepted::Verified {
            key_id: key_id(&public)
        })
    );
    // Each PEM where the other kind belongs is refused with a message naming the expected format.
    assert!(signing_key_from_pem(OPENSSL_PUBLIC).is_err_and(|e| e.contains("PRIVATE KEY")));
    assert!(verifying_key_from_pem(OPENSSL_PRIVATE).is_err_and(|e| e.contains("PUBLIC KEY")));
    assert!(verifying_key_from_pem("garbage").is_err());
}

#[test]
fn generated_pairs_have_openssls_layout_and_match() {
    let seed = [7_u8; 32];
    let (private, public) = key_pair_pem(seed).unwrap_or_else(|e| panic!("{e}"));
    // PKCS#8 v1 of 48 bytes, exactly what openssl writes: one base64 line of 64 characters.
    let lines: Vec<&str> = private.lines().collect();
    assert_eq!(lines.len(), 3, "{private}");
    assert_eq!(lines[0], "-----BEGIN PRIVATE KEY-----");
    assert!(lines[1].starts_with("MC4CAQAwBQYDK2VwBCIEI"), "{private}");
    assert_eq!(lines[2], "-----END PRIVATE KEY-----");
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"));
    let a = signing_key_from_pem(&private).unwrap_or_else(|e| panic!("{e}"));
    let b = verifying_key_from_pem(&public).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.verifying_key(), b);
    assert_eq!(a.to_bytes(), seed);
}

#[test]
fn canonical_bytes_ignore_map_order_and_the_signature() {
    let a = def();
    let mut b = def();
    b.operation.data = json!({"a": "é\"\n", "b": [1, {"x": 1, "y": 2}]});
    assert_eq!(canonical_bytes(&a), canonical_bytes(&b));
    b.signature = Some(sign(&a, &key(1)));
    assert_eq!(canonical_bytes(&a), canonical_bytes(&b));
    let text = String::from_utf8(canonical_bytes(&a)).unwrap_or_default();
    assert!(text.starts_with(r#"["osapi-job-v1","550e8400"#), "{text}");
    // Byte for byte what jobs already in a bucket were signed over: the fields as one canonical array.
    let array = json!([
        "osapi-job-v1",
        a.id,
        "test.echo.do",
        a.operation.data,
        a.target_hostname,
        a.expected_hosts,
        a.created,
        a.created_us,
        a.timeout_ms,
        a.retry_of,
        a.submitted_by
    ]);
    assert_eq!(text, crate::canonical::to_string(&array));
}

/// (what changed, the change): each must break a signature.
type Tamper = (&'static str, fn(&mut JobDef));

#[test]
fn every_field_a_worker_acts_on_is_covered() {
    let k = key(1);
    let trust = trusting(&[&k]);
    let good = signed(def(), &k);
    assert!(trust.check(&good).is_ok());
    for (what, tamper) in tampers() {
        let mut job = good.clone();
        tamper(&mut job);
        let got = trust.check(&job);
        assert!(
            got.as_ref().is_err_and(|e| e.starts_with("bad signature")),
            "{what}: {got:?}"
        );
    }
}

#[test]
fn the_workers_copy_of_a_broadcast_is_signed_on_its_own() {
    let k = key(1);
    let trust = trusting(&[&k]);
    let whole = signed(def(), &k);
    let mut run = whole.run_copy();
    assert!(run.expected_hosts.is_empty() && run.signature.is_none());
    run.signature = Some(sign_as(&run, Form::Run, &k));
    assert!(trust.check_as(&run, Form::Run).is_ok());
    assert!(trust.check_as(&whole, Form::Whole).is_ok());
    // Neither form's signature holds as the other: the copy read as a whole job (one expecting nobody)
    // or the whole record read as the copy is refused.
    let bad = |got: Result<Accepted, String>| got.is_err_and(|e| e.starts_with("bad signature"));
    assert!(bad(trust.check_as(&run, Form::Whole)));
    assert!(bad(trust.check_as(&whole, Form::Run)));
    let text = String::from_utf8(form_bytes(&run, Form::Run)).unwrap_or_default();
    assert!(
        text.starts_with(r#"["osapi-job-run-v1","550e8400"#),
        "{text}"
    );
    assert!(
        text.contains(r#""group:web","2026-12-01"#),
        "no host list: {text}"
    );
    // The copy's bytes do not depend on the list; every other field is covered as in the whole form.
    assert_eq!(form_bytes(&run, Form::Run), form_bytes(&whole, Form::Run));
    for (what, tamper) in tampers().iter().filter(|(w, _)| !w.starts_with("expected")) {
        let mut job = run.clone();
        tamper(&mut job);
        let got = trust.check_as(&job, Form::Run);
        assert!(bad(got.clone()), "{what}: {got:?}");
    }
}

fn tampers() -> Vec<Tamper> {
    vec![
        ("id", |d| {
            d.id = "750e8400-e29b-41d4-a716-446655440000".into()
        }),
        ("operation type", |d| {
            d.operation.op_type = OperationType::SystemRebootExecute
        }),
        ("operation data", |d| d.operation.data["a"] = json!("-P")),
        ("nested data", |d| d.operation.data["b"][1]["x"] = json!(2)),
        ("target", |d| d.target_hostname = "_all".into()),
        ("expected host added", |d| {
            d.expected_hosts.push("db1".into())
        }),
        ("expected hosts reordered", |d| d.expected_hosts.reverse()),
        ("created", |d| {
            d.created = "2027-01-01T00:00:00.000000Z".into()
        }),
        ("created_us", |d| d.created_us += 3_600_000_000),
        ("timeout", |d| d.timeout_ms = 86_400_000),
        ("retry_of", |d| d.retry_of = None),
        ("submitted_by", |d| d.submitted_by = "mallory".into()),
    ]
}

#[test]
fn untrusted_unsigned_and_malformed_are_rejected() {
    let (trusted, other) = (key(1), key(2));
    let trust = trusting(&[&trusted]);
    let by_other = signed(def(), &other);
    let e = trust.check(&by_other).err().unwrap_or_default();
    assert!(e.contains("does not trust"), "{e}");
    assert!(e.contains(&key_id(&other.verifying_key())), "{e}");
    // Another key's signature under the trusted key's name: still refused.
    let mut forged = by_other.clone();
    if let Some(s) = forged.signature.as_mut() {
        s.key_id = key_id(&trusted.verifying_key());
    }
    assert!(trust
        .check(&forged)
        .is_err_and(|e| e.starts_with("bad signature")));
    assert_eq!(trust.check(&def()), Err("the job is not signed".into()));
    // A valid signature with bytes added or removed: decoded into a fixed buffer, never accepted.
    let good = signed(def(), &trusted);
    let good_sig = good
        .signature
        .as_ref()
        .map(|s| s.sig.clone())
        .unwrap_or_default();
    let raw = B64.decode(&good_sig).unwrap_or_default();
    let longer = B64.encode([&raw[..], &[0]].concat());
    let much_longer = B64.encode([&raw[..], &raw[..]].concat());
    let shorter = B64.encode(&raw[..63]);
    assert!(trust.check(&good).is_ok());
    for sig in ["%%%", "AAAA", "", &longer, &much_longer, &shorter] {
        let mut bad = good.clone();
        if let Some(s) = bad.signature.as_mut() {
            s.sig = sig.to_string();
        }
        assert!(
            trust.check(&bad).is_err_and(|e| e.starts_with("malformed")),
            "{sig}"
        );
    }
}

#[test]
fn two_trusted_keys_let_either_sign() {
    let (old, new) = (key(1), key(2));
    let trust = trusting(&[&old, &new]);
    assert!(trust.check(&signed(def(), &old)).is_ok());
    assert!(trust.check(&signed(def(), &new)).is_ok());
    assert!(trust.check(&signed(def(), &key(3))).is_err());
}

#[test]
fn allow_unsigned_is_for_development_only() {
    assert!(!Trust::new(vec![], false).can_run_anything());
    let open = Trust::new(vec![], true);
    assert!(open.can_run_anything());
    assert_eq!(open.check(&def()), Ok(Accepted::Unverified));
    // With keys, an unsigned job passes (allowed) but a badly signed one does not.
    let k = key(1);
    let mixed = Trust::new(vec![k.verifying_key()], true);
    assert_eq!(mixed.check(&def()), Ok(Accepted::Unverified));
    let mut tampered = signed(def(), &k);
    tampered.timeout_ms += 1;
    assert!(mixed.check(&tampered).is_err());
}

#[test]
fn addressing() {
    let labels: BTreeMap<String, String> = [("group".to_string(), "web.dev".to_string())].into();
    let cases = [
        ("_any", true),
        ("_all", true),
        ("web1", true),
        ("web2", false),
        ("group:web", true),
        ("group:web.dev", true),
        ("group:web.devops", false),
        ("group:db", false),
        ("not a target", false),
    ];
    for (target, want) in cases {
        let mut d = def();
        d.target_hostname = target.into();
        assert_eq!(addressed_to(&d, "web1", &labels), want, "{target}");
    }
}

#[test]
fn deadline() {
    let d = def(); // created at 1 s, timeout 60 s: deadline 61 s
    assert_eq!(expired(&d, "web1", 61_000_000), None);
    assert_eq!(
        expired(&d, "web1", 61_000_001),
        Some("expired: reached web1 after its deadline".into())
    );
}

/// How the signed bytes were made before they were written in place: a JSON array of `Value`s, each
/// written by `canonical::write`. The signature a worker checks must not change with the code.
fn form_bytes_by_values(def: &JobDef, form: Form) -> Vec<u8> {
    let tag = match form {
        Form::Whole => CANONICAL_TAG,
        Form::Run => RUN_TAG,
    };
    let mut fields = vec![
        Value::from(tag),
        Value::from(def.id.as_str()),
        Value::from(def.operation.op_type.as_str()),
        def.operation.data.clone(),
        Value::from(def.target_hostname.as_str()),
    ];
    if form == Form::Whole {
        fields.push(Value::from(def.expected_hosts.clone()));
    }
    fields.extend([
        Value::from(def.created.as_str()),
        Value::from(def.created_us),
        Value::from(def.timeout_ms),
        def.retry_of.as_deref().map_or(Value::Null, Value::from),
        Value::from(def.submitted_by.as_str()),
    ]);
    crate::canonical::to_string(&Value::Array(fields)).into_bytes()
}

#[test]
fn the_signed_bytes_are_those_the_values_gave() {
    let odd = "tab\there \"quoted\" back\\slash \u{1} é€😀 \u{2028}";
    let mut variants = vec![def()];
    let mut d = def();
    d.expected_hosts = vec![];
    d.retry_of = None;
    d.submitted_by = String::new();
    d.created_us = -1;
    d.timeout_ms = u64::MAX;
    variants.push(d);
    let mut d = def();
    d.id = odd.into();
    d.target_hostname = odd.into();
    d.expected_hosts = vec![odd.into(), "".into(), "web3".into()];
    d.created = odd.into();
    d.submitted_by = odd.into();
    d.retry_of = Some(odd.into());
    d.operation.data = json!({ odd: [odd, 1.25, null, true, {"z": {}, "a": []}], "": -7 });
    variants.push(d);
    for d in &variants {
        for form in [Form::Whole, Form::Run] {
            assert_eq!(
                String::from_utf8_lossy(&form_bytes(d, form)),
                String::from_utf8_lossy(&form_bytes_by_values(d, form)),
                "{form:?}"
            );
        }
    }
}
