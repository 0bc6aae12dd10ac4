//! HTTP to the osapi API with ureq: one request per call, bounded by a timeout, the bearer token on
//! every request, and every failure turned into a [`CliError`] carrying the server's own message.

use crate::error::CliError;
use serde_json::Value;
use std::time::Duration;

/// Bound on one request, on top of any `?wait=` the server is asked to hold it for.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An answer with a 2xx status: its status and its body as sent (possibly empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// The body as JSON; an empty or non-JSON body is a failure naming the request.
    pub fn json(&self) -> Result<Value, CliError> {
        serde_json::from_str(&self.body).map_err(|e| {
            CliError::Failed(format!(
                "the server answered {} with a body that is not JSON: {e}",
                self.status
            ))
        })
    }
}

/// Where requests go and with which token.
pub struct Client {
    base_url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// `base_url` like `http://127.0.0.1:8080` (a trailing `/` is fine); an empty token sends none.
    pub fn new(base_url: &str, token: Option<String>) -> Client {
        Client {
            base_url: base_url.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(REQUEST_TIMEOUT)
                .build(),
        }
    }

    /// `GET path`; `hold` is how long the server may hold the answer (`?wait=`), added to the timeout.
    pub fn get(&self, path: &str, hold: Duration) -> Result<Reply, CliError> {
        self.send("GET", path, hold, None, None)
    }

    /// `POST path`, with an `Idempotency-Key` header when a key is given.
    pub fn post(
        &self,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Reply, CliError> {
        self.send("POST", path, Duration::ZERO, body, idempotency_key)
    }

    /// [`Client::post`] of a request the server may hold for `hold` (`?wait=`), added to the timeout.
    pub fn post_held(
        &self,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
        hold: Duration,
    ) -> Result<Reply, CliError> {
        self.send("POST", path, hold, body, idempotency_key)
    }

    pub fn delete(&self, path: &str) -> Result<Reply, CliError> {
        self.send("DELETE", path, Duration::ZERO, None, None)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        hold: Duration,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Reply, CliError> {
        let url = format!("{}{path}", self.base_url);
        let mut request = self
            .agent
            .request(method, &url)
            .timeout(REQUEST_TIMEOUT + hold)
            .set("Accept", "application/json");
        if let Some(token) = &self.token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        if let Some(key) = idempotency_key {
            request = request.set("Idempotency-Key", key);
        }
        let result = match body {
            Some(json) => request.send_json(json),
            None => request.call(),
        };
        let response = match result {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                return Err(status_error(method, path, status, &text));
            }
            Err(ureq::Error::Transport(t)) => return Err(transport_error(&self.base_url, &t)),
        };
        let status = response.status();
        let body = response.into_string().map_err(|e| {
            CliError::Unreachable(format!("{method} {path}: reading the answer failed: {e}"))
        })?;
        Ok(Reply { status, body })
    }
}

/// An HTTP error answer: the server's `error` and `details`, or the raw text when it is not JSON.
/// 503 (NATS unavailable, server overloaded) is "unreachable"; every other status a failure.
pub fn status_error(method: &str, path: &str, status: u16, body: &str) -> CliError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut message = match field("error") {
        Some(error) => error,
        None if body.trim().is_empty() => "no details given".to_string(),
        None => body.trim().to_string(),
    };
    if let Some(details) = field("details") {
        message = format!("{message} ({details})");
    }
    let text = format!("{method} {path}: HTTP {status}: {message}");
    if status == 503 {
        CliError::Unreachable(text)
    } else {
        CliError::Failed(text)
    }
}

/// No HTTP answer at all: a bad URL is the user's mistake (exit 2), anything else means unreachable.
fn transport_error(base_url: &str, t: &ureq::Transport) -> CliError {
    match t.kind() {
        ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
            CliError::Usage(format!("bad API URL '{base_url}': {t}"))
        }
        kind => {
            // The transport's Display repeats the URL; name it once and keep the cause.
            let mut cause = kind.to_string();
            if let Some(message) = t.message() {
                cause = format!("{cause}: {message}");
            }
            if let Some(source) = std::error::Error::source(t) {
                cause = format!("{cause}: {source}");
            }
            CliError::Unreachable(format!("cannot reach the API at {base_url}: {cause}"))
        }
    }
}

/// Percent-encodes one path segment or query value (everything but RFC 3986 unreserved characters).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_messages() {
        let cases: &[(u16, &str, &str, u8)] = &[
            (
                400,
                r#"{"code":400,"details":"see error","error":"job id 'x' is not a UUID"}"#,
                "GET /job/x: HTTP 400: job id 'x' is not a UUID (see error)",
                1,
            ),
            (
                404,
                r#"{"error":"job not found","code":404}"#,
                "GET /job/x: HTTP 404: job not found",
                1,
            ),
            (
                503,
                r#"{"error":"NATS unavailable"}"#,
                "GET /job/x: HTTP 503: NATS unavailable",
                3,
            ),
            (502, "Bad gateway\n", "GET /job/x: HTTP 502: Bad gateway", 1),
            (500, "", "GET /job/x: HTTP 500: no details given", 1),
        ];
        for (status, body, want, code) in cases {
            let got = status_error("GET", "/job/x", *status, body);
            assert_eq!(got.to_string(), *want, "status {status}");
            assert_eq!(got.exit_code(), *code, "status {status}");
        }
    }

    #[test]
    fn encodes_segments() {
        assert_eq!(encode("2f1e-AB_c.~"), "2f1e-AB_c.~");
        assert_eq!(encode("a/b c?&"), "a%2Fb%20c%3F%26");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn connection_refused_is_unreachable() {
        // Port 1 on loopback: nothing listens there, so the connect is refused at once.
        let client = Client::new("http://127.0.0.1:1/", None);
        let err = client.get("/job/status", Duration::ZERO).err();
        assert!(matches!(err, Some(CliError::Unreachable(_))), "{err:?}");
        let bad = Client::new("nota url", None)
            .get("/job", Duration::ZERO)
            .err();
        assert!(matches!(bad, Some(CliError::Usage(_))), "{bad:?}");
    }
}
