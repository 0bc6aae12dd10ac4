//! Request handlers, one module per resource; each parses and validates its input with `common`,
//! calls the store, and returns a [`Reply`] or an [`ApiError`](crate::error::ApiError).

pub mod health;
pub mod job;

/// A successful answer: a status and an optional JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Option<serde_json::Value>,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            body: Some(body),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply { status, body: None }
    }
}

/// Serializes a response body (our own types: cannot fail in practice, but never panics either).
pub fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, crate::error::ApiError> {
    serde_json::to_value(v)
        .map_err(|e| crate::error::ApiError::unavailable(format!("encoding: {e}")))
}
