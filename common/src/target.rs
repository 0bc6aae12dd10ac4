//! Job targets (`_any`, `_all`, a hostname, `KEY:VALUE` labels), their validation, the subject route they
//! publish to, and hierarchical label matching.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Where a job goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Exactly one live worker, load-balanced by the shared consumer.
    Any,
    /// Every worker.
    All,
    /// The worker with this hostname.
    Host(String),
    /// Every worker whose label `key` equals `value` or starts with it at a dot boundary.
    Label { key: String, value: String },
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a hostname: `[A-Za-z0-9_.-]+`, not starting or ending with `.`, no empty segment.
pub fn validate_hostname(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("hostname is empty".into());
    }
    if h.len() > 253 {
        return Err(format!("hostname '{h}' is longer than 253 characters"));
    }
    if !h.split('.').all(is_token) {
        return Err(format!(
            "hostname '{h}' must match [A-Za-z0-9_.-]+ with no empty dot-separated part"
        ));
    }
    Ok(())
}

/// Checks a label key (`[A-Za-z0-9_-]+`).
pub fn validate_label_key(k: &str) -> Result<(), String> {
    if is_token(k) {
        Ok(())
    } else {
        Err(format!("label key '{k}' must match [A-Za-z0-9_-]+"))
    }
}

/// Checks a label value: dot-separated segments, each `[A-Za-z0-9_-]+`.
pub fn validate_label_value(v: &str) -> Result<(), String> {
    if !v.is_empty() && v.split('.').all(is_token) {
        Ok(())
    } else {
        Err(format!(
            "label value '{v}': dot-separated segments must match [A-Za-z0-9_-]+"
        ))
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wrap = |e: String| format!("target '{s}': {e}");
        match s {
            "" | "_any" => Ok(Target::Any),
            "_all" => Ok(Target::All),
            _ => {
                if let Some((key, value)) = s.split_once(':') {
                    validate_label_key(key).map_err(wrap)?;
                    validate_label_value(value).map_err(wrap)?;
                    return Ok(Target::Label {
                        key: key.to_string(),
                        value: value.to_string(),
                    });
                }
                if s.starts_with('_') {
                    return Err(wrap(
                        "names starting with '_' are reserved (use _any or _all)".into(),
                    ));
                }
                validate_hostname(s).map_err(wrap)?;
                Ok(Target::Host(s.to_string()))
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Any => f.write_str("_any"),
            Target::All => f.write_str("_all"),
            Target::Host(h) => f.write_str(h),
            Target::Label { key, value } => write!(f, "{key}:{value}"),
        }
    }
}

impl Target {
    /// The routing part of the notification subject (after `jobs.{query|modify}.`).
    pub fn route(&self) -> String {
        match self {
            Target::Any => "_any".to_string(),
            Target::All => "_all".to_string(),
            Target::Host(h) => format!("host.{h}"),
            Target::Label { key, value } => format!("label.{key}.{value}"),
        }
    }

    /// Whether a [`route`](Self::route) is a broadcast's (`_all`, a label): every matching host gets it.
    pub fn is_broadcast_route(route: &str) -> bool {
        route == "_all" || route.starts_with("label.")
    }

    /// Whether a worker with this hostname and these labels receives the job.
    /// `_any` matches every worker (though only one of them runs it).
    pub fn matches(&self, hostname: &str, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Target::Any | Target::All => true,
            Target::Host(h) => h == hostname,
            Target::Label { key, value } => labels
                .get(key)
                .is_some_and(|have| label_value_matches(value, have)),
        }
    }

    /// Broadcast targets record at submission which live workers they expect to answer.
    pub fn is_broadcast(&self) -> bool {
        matches!(self, Target::All | Target::Label { .. })
    }
}

/// `wanted` matches `have` when equal, or when `have` starts with `wanted` followed by a dot:
/// `web.dev` matches `web.dev` and `web.dev.us-east`, never `web.devops`.
pub fn label_value_matches(wanted: &str, have: &str) -> bool {
    match have.strip_prefix(wanted) {
        Some("") => true,
        Some(rest) => rest.starts_with('.'),
        None => false,
    }
}

/// Every prefix of a label value at dot boundaries, shortest first: `web.dev.us-east` ->
/// `web`, `web.dev`, `web.dev.us-east`. A worker subscribes to one label route per prefix.
pub fn label_prefixes(value: &str) -> Vec<String> {
    let segments: Vec<&str> = value.split('.').collect();
    (1..=segments.len())
        .map(|n| segments[..n].join("."))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_route_is_the_route_of_a_broadcast_target() {
        for t in ["_any", "_all", "web1", "group:web.dev", "env:prod"] {
            let target: Target = t.parse().expect(t);
            assert_eq!(
                Target::is_broadcast_route(&target.route()),
                target.is_broadcast(),
                "{t}"
            );
        }
    }

    #[test]
    fn parse_table() {
        let ok = [
            ("_any", Target::Any),
            ("", Target::Any),
            ("_all", Target::All),
            ("web1", Target::Host("web1".into())),
            ("web1.example.com", Target::Host("web1.example.com".into())),
            (
                "group:web.dev",
                Target::Label {
                    key: "group".into(),
                    value: "web.dev".into(),
                },
            ),
        ];
        for (s, want) in ok {
            assert_eq!(s.parse::<Target>(), Ok(want), "{s}");
        }
        let bad = [
            ("group:web dev", "segments must match"),
            ("bad host!", "must match"),
            ("group:", "segments must match"),
            (":web", "label key"),
            ("group:web..dev", "segments must match"),
            (".web1", "empty dot-separated part"),
            ("web1.", "empty dot-separated part"),
            ("_some", "reserved"),
            ("a*b", "must match"),
            ("a>b", "must match"),
        ];
        for (s, needle) in bad {
            let err = s.parse::<Target>().expect_err(s);
            assert!(err.contains(needle), "{s}: {err}");
            assert!(err.contains(s), "{s}: error should name the target: {err}");
        }
    }

    #[test]
    fn routes() {
        let cases = [
            ("_any", "_any"),
            ("_all", "_all"),
            ("web1", "host.web1"),
            ("group:web.dev", "label.group.web.dev"),
        ];
        for (s, route) in cases {
            assert_eq!(
                s.parse::<Target>().map(|t| t.route()),
                Ok(route.to_string())
            );
        }
    }

    #[test]
    fn hierarchical_matching() {
        let cases = [
            ("web.dev", "web.dev", true),
            ("web.dev", "web.dev.us-east", true),
            ("web", "web.dev.us-east", true),
            ("web.dev", "web.devops", false),
            ("web.dev.us-east", "web.dev", false),
            ("db", "web.db", false),
        ];
        for (wanted, have, want) in cases {
            assert_eq!(
                label_value_matches(wanted, have),
                want,
                "{wanted} vs {have}"
            );
        }
        let labels: BTreeMap<String, String> =
            [("group".to_string(), "web.dev.us-east".to_string())].into();
        assert!("group:web"
            .parse::<Target>()
            .is_ok_and(|t| t.matches("h", &labels)));
        assert!(!"env:web"
            .parse::<Target>()
            .is_ok_and(|t| t.matches("h", &labels)));
        assert!("h".parse::<Target>().is_ok_and(|t| t.matches("h", &labels)));
        assert!(!"h2"
            .parse::<Target>()
            .is_ok_and(|t| t.matches("h", &labels)));
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            label_prefixes("web.dev.us-east"),
            ["web", "web.dev", "web.dev.us-east"]
        );
        assert_eq!(label_prefixes("db"), ["db"]);
    }
}
