//! The API's error type and the one place errors become HTTP statuses and JSON bodies.

use osapi_bus::BusError;

/// An error answer: `{"error", "details", "code"}` with `code` = the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub error: String,
    pub details: String,
    /// One extra header: `Allow` for 405, `WWW-Authenticate` for 401.
    pub header: Option<(&'static str, &'static str)>,
}

impl ApiError {
    fn new(status: u16, error: impl Into<String>, details: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            details: details.into(),
            header: None,
        }
    }

    /// 400: something the client sent is wrong; `what` says what.
    pub fn bad_request(what: impl Into<String>) -> ApiError {
        ApiError::new(400, what, "the request was not understood; see error")
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(404, what, "")
    }

    pub fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> ApiError {
        ApiError {
            header: Some(("Allow", allow)),
            ..ApiError::new(
                405,
                format!("method {method} not allowed on {path}"),
                format!("allowed: {allow}"),
            )
        }
    }

    /// 401: no valid token.
    pub fn unauthorized(what: impl Into<String>) -> ApiError {
        ApiError {
            header: Some(("WWW-Authenticate", "Bearer")),
            ..ApiError::new(
                401,
                what,
                "send Authorization: Bearer TOKEN (see `osapi token generate`)",
            )
        }
    }

    /// 403: a valid token without the permission.
    pub fn forbidden(what: impl Into<String>) -> ApiError {
        ApiError::new(
            403,
            what,
            "ask for a token whose roles or permissions grant it",
        )
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            format!("request body larger than {limit} bytes"),
            "see api.server.max_body_bytes",
        )
    }

    /// 503: NATS (or this server) cannot take the request now; retrying later may work.
    pub fn unavailable(details: impl Into<String>) -> ApiError {
        ApiError::new(503, "service unavailable", details)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.error, "details": self.details, "code": self.status })
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> ApiError {
        ApiError::unavailable(e.to_string())
    }
}
