//! The API's error type and the one place errors become HTTP statuses and JSON bodies.

use osapi_bus::BusError;

/// An error answer: `{"error", "details", "code"}` with `code` = the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub error: String,
    pub details: String,
    /// One extra header: `Allow` for 405, `WWW-Authenticate` for 401, `Retry-After` for a full store.
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

/// Seconds a client should wait before retrying against a full store: records expire or are deleted
/// in the meantime; sooner would only meet the same answer.
pub const STORE_FULL_RETRY_AFTER_S: &str = "30";

impl From<BusError> for ApiError {
    /// Each class of NATS trouble to its status (docs/nats.md, "Error classes"): unavailable 503, a full
    /// store 503 with `Retry-After`, a record too large 413, a lost conditional write 409, anything else
    /// 500 with the detail logged (a client cannot cause it and must not be told to retry it).
    fn from(e: BusError) -> ApiError {
        match e {
            BusError::Unavailable(_) => ApiError::unavailable(e.to_string()),
            BusError::StoreFull(why) => ApiError {
                header: Some(("Retry-After", STORE_FULL_RETRY_AFTER_S)),
                ..ApiError::new(
                    503,
                    "job store is full: nothing was stored",
                    format!("{why}; retry after {STORE_FULL_RETRY_AFTER_S}s, once records expire or are deleted (see nats.kv.max_bytes, nats.stream.max_msgs)"),
                )
            },
            BusError::TooLarge(why) => ApiError::new(
                413,
                "job too large to store",
                format!("{why}; send less operation data"),
            ),
            BusError::Conflict(why) => ApiError::new(409, "conflicting write", why),
            BusError::Api { .. } | BusError::Protocol(_) => {
                log::error!("NATS error answering a request: {e}");
                ApiError::new(500, "internal error talking to NATS", "logged by the API")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bus_error_class_has_its_status() {
        let full: ApiError = BusError::StoreFull("maximum bytes exceeded".into()).into();
        assert_eq!(full.status, 503);
        assert!(full.error.contains("store is full"));
        assert_eq!(full.header, Some(("Retry-After", STORE_FULL_RETRY_AFTER_S)));
        let cases = [
            (BusError::Unavailable("x".into()), 503),
            (BusError::TooLarge("x".into()), 413),
            (BusError::Conflict("x".into()), 409),
            (BusError::Protocol("x".into()), 500),
        ];
        for (e, status) in cases {
            assert_eq!(ApiError::from(e.clone()).status, status, "{e}");
        }
    }
}
