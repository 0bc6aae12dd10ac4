//! Request handlers, one module per resource; each parses and validates its input with `common`,
//! calls the store, and returns a [`Reply`] or an [`ApiError`](crate::error::ApiError).

pub mod cancel;
pub mod drain;
pub mod health;
pub mod job;

/// What a successful answer carries.
#[derive(Debug)]
pub enum Body {
    None,
    Json(serde_json::Value),
    /// JSON already encoded (a large answer serialized once, straight from its type).
    JsonBytes(Vec<u8>),
    /// Fixed text with its content type (the OpenAPI spec).
    Text(&'static str, &'static str),
}

/// A successful answer: a status and a body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Body,
    /// The job the answer created, for the audit trail (which would otherwise look in a JSON body).
    pub job_id: Option<String>,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            body: Body::Json(body),
            job_id: None,
        }
    }

    /// `body` encoded as JSON straight from its type (no `Value` in between: the job details of every
    /// `GET /job/{id}` are the bulk of what the API encodes).
    pub fn json_of<T: serde::Serialize>(
        status: u16,
        body: &T,
    ) -> Result<Reply, crate::error::ApiError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| crate::error::ApiError::unavailable(format!("encoding: {e}")))?;
        Ok(Reply {
            status,
            body: Body::JsonBytes(bytes),
            job_id: None,
        })
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: Body::None,
            job_id: None,
        }
    }
}

/// Serializes a response body (our own types: cannot fail in practice, but never panics either).
pub fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, crate::error::ApiError> {
    serde_json::to_value(v)
        .map_err(|e| crate::error::ApiError::unavailable(format!("encoding: {e}")))
}
