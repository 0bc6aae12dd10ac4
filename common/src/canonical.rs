//! Canonical JSON: the same value always gives the same bytes, whatever order its objects' keys were in.
//! Keys are sorted (by bytes) at every level, nothing is spaced, arrays keep their order, scalars are
//! serde_json's own text. Used for what a job signature covers (`trust::canonical_bytes`) and for what
//! "the same request" means to an `Idempotency-Key` (api/src/idempotency.rs). Pure.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

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
            out.push('{');
            // serde_json's map is already sorted unless a crate in the build turns on its
            // `preserve_order`: then the keys are sorted here.
            if map.keys().is_sorted() {
                write_entries(map.iter(), out);
            } else {
                let sorted: BTreeMap<&String, &Value> = map.iter().collect();
                write_entries(sorted.into_iter(), out);
            }
            out.push('}');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_entries<'a>(entries: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut String) {
    for (i, (k, item)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_scalar(k.as_str(), out);
        out.push(':');
        write(item, out);
    }
}

/// Appends a string, number, bool or null as serde_json writes it (the text `write` gives it as a
/// `Value`), without making a `Value` of it first.
pub fn write_scalar<T: Serialize + ?Sized>(v: &T, out: &mut String) {
    // Writing to a String cannot fail, and serde_json writes only whole UTF-8 sequences.
    let _ = serde_json::to_writer(Appender(out), v);
}

/// serde_json's writer into a `String`: each piece it writes is whole UTF-8 (escapes fall between
/// characters), checked rather than assumed.
struct Appender<'a>(&'a mut String);

impl std::io::Write for Appender<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = std::str::from_utf8(buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        self.0.push_str(text);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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

    #[test]
    fn scalars_are_serde_jsons_own_text() {
        let mut every_ascii: String = (0u8..128).map(char::from).collect();
        every_ascii.push_str("é€😀\u{2028}");
        for v in [
            json!(every_ascii),
            json!(""),
            json!(-9_007_199_254_740_993_i64),
            json!(u64::MAX),
            json!(1.5),
            json!(null),
            json!(false),
        ] {
            let mut out = String::new();
            write_scalar(&v, &mut out);
            assert_eq!(out, v.to_string());
            let mut keyed = String::new();
            write(&json!({ every_ascii.clone(): v }), &mut keyed);
            assert_eq!(keyed, format!("{{{}:{}}}", json!(every_ascii), v));
        }
    }
}
