//! Canonical JSON: the same value always gives the same bytes, whatever order its objects' keys were in.
//! Keys are sorted (by bytes) at every level, nothing is spaced, arrays keep their order, scalars are
//! serde_json's own text. Used for what a job signature covers (`trust::canonical_bytes`) and for what
//! "the same request" means to an `Idempotency-Key` (api/src/idempotency.rs). Pure.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `v` as canonical JSON text.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// Appends `v` as canonical JSON text to `out`.
pub fn write(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            out.push('{');
            for (i, (k, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", Value::from(k.as_str()));
                write(item, out);
            }
            out.push('}');
        }
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_sorted_at_every_level_arrays_kept_in_order() {
        let a: Value =
            serde_json::from_str(r#"{"b": [3, {"z": 1, "a": null}], "a": "x\"y", "é": 1.5}"#)
                .expect("json");
        let b: Value =
            serde_json::from_str(r#"{"é":1.5,"a":"x\"y","b":[3,{"a":null,"z":1}]}"#).expect("json");
        let want = r#"{"a":"x\"y","b":[3,{"a":null,"z":1}],"é":1.5}"#;
        assert_eq!(to_string(&a), want);
        assert_eq!(to_string(&b), want);
        assert_eq!(to_string(&json!([2, 1])), "[2,1]");
        assert_eq!(to_string(&json!(true)), "true");
        assert_eq!(to_string(&json!({})), "{}");
    }
}
