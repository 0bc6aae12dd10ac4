//! One HTTP call to the API, returning status, body and headers whatever the status (4xx/5xx included).

use std::time::Duration;

use serde_json::Value;

/// Bound on every HTTP call the tests make (`?wait=` holds a request for at most 5 s in the helpers).
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the API answered.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The body parsed as JSON, or `Value::Null` when it is empty or not JSON (see `text`).
    pub body: Value,
    /// The raw body.
    pub text: String,
    /// Header names are lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Asserts the documented error shape: a JSON object with a string `error` and `code` equal to the status.
    pub fn assert_error(&self, status: u16) {
        assert_eq!(
            self.status, status,
            "unexpected status, body: {}",
            self.text
        );
        assert!(
            self.body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "error body needs a non-empty string `error`: {}",
            self.text
        );
        assert_eq!(
            self.body["code"].as_u64(),
            Some(u64::from(status)),
            "error body needs `code` == {status}: {}",
            self.text
        );
    }
}

/// Sends `method base_url+path` with an optional raw JSON body and no token. Err only for transport
/// failures (no answer).
pub fn request(
    base_url: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Response, String> {
    request_as(None, base_url, method, path, body)
}

/// [`request`] with `Authorization: Bearer TOKEN` when a token is given.
pub fn request_as(
    token: Option<&str>,
    base_url: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Response, String> {
    request_with(token, base_url, method, path, body, &[])
}

/// [`request_as`] with extra request headers (e.g. `Idempotency-Key`).
pub fn request_with(
    token: Option<&str>,
    base_url: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let agent = ureq::AgentBuilder::new().timeout(HTTP_TIMEOUT).build();
    let url = format!("{base_url}{path}");
    let mut req = agent.request(method, &url);
    if let Some(token) = token {
        req = req.set("Authorization", &format!("Bearer {token}"));
    }
    for (name, value) in headers {
        req = req.set(name, value);
    }
    let result = match body {
        Some(body) => req
            .set("Content-Type", "application/json")
            .send_string(body),
        None => req.call(),
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(ureq::Error::Transport(err)) => return Err(format!("{method} {url}: {err}")),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|name| {
            let value = resp.header(&name)?.to_string();
            Some((name.to_ascii_lowercase(), value))
        })
        .collect();
    let text = resp
        .into_string()
        .map_err(|err| format!("{method} {url}: reading body: {err}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Response {
        status,
        body,
        text,
        headers,
    })
}

/// Submits a `test.echo.do` job for `target` as `token` and waits (polling `GET /job/{id}`) until it
/// has completed; returns its detail. For daemons a test started itself (custom identities), where
/// [`crate::Cluster::run_job`] does not reach.
pub fn echo_job_completed(token: &str, base_url: &str, target: &str, deadline: Duration) -> Value {
    let body = serde_json::json!({
        "operation": {"type": "test.echo.do", "data": {"t": target}},
        "target_hostname": target,
    });
    let created = request_as(
        Some(token),
        base_url,
        "POST",
        "/job",
        Some(&body.to_string()),
    )
    .expect("POST /job");
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut detail = Value::Null;
    crate::wait_until(&format!("the {target} job completed"), deadline, || {
        detail = request_as(Some(token), base_url, "GET", &format!("/job/{id}"), None)
            .map(|r| r.body)
            .unwrap_or(Value::Null);
        detail["status"] == "completed"
    });
    detail
}
