//! Turns the config's YAML tree (already carrying the env overrides) into the typed [`Config`]:
//! merging over the defaults, with unknown-key and type checks. Every error names the dotted key
//! (and the env variable it came from).

use super::{ConfigError, Discard, Storage};
use crate::duration::parse_duration;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

#[path = "config_sections.rs"]
mod sections;

type Result<T> = std::result::Result<T, ConfigError>;
/// An entry of a free-form map (labels, roles): its key, its dotted path, its value.
type Entry<'v> = (String, String, &'v Value);

/// A map in the tree at a dotted path; `map` is `None` when the key is absent or null (defaults apply).
struct Section<'v> {
    map: Option<&'v Mapping>,
    path: String,
}

impl<'v> Section<'v> {
    fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The value under `key`; a null value counts as absent.
    fn get(&self, key: &str) -> Option<&'v Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A value as an error message shows it: strings quoted, collections by kind.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a map".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// Decodes (here) and validates (config_validate.rs), knowing which keys came from env so errors can say so.
pub(super) struct Decoder {
    pub(super) env_sources: BTreeMap<String, String>,
}

/// Keys that once existed, with what replaces them, so an old config fails with a way forward.
const REMOVED_KEYS: &[(&str, &str)] = &[(
    "job.worker.queue_group",
    "removed; every worker shares the durable pull consumer '{job.worker.consumer.name}-any' for _any \
     jobs (each job to one worker): set job.worker.consumer.name instead",
)];

impl Decoder {
    /// " (from env VAR)" when `path` or one of its parents was set by env.
    fn source_note(&self, path: &str) -> String {
        self.env_sources
            .iter()
            .filter(|(p, _)| {
                path == p.as_str()
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.starts_with(['.', '[']))
            })
            .max_by_key(|(p, _)| p.len())
            .map(|(_, name)| format!(" (from env {name})"))
            .unwrap_or_default()
    }

    pub(super) fn err(&self, path: &str, msg: impl Display) -> ConfigError {
        let shown = if path.is_empty() { "config" } else { path };
        ConfigError(format!("{shown}: {msg}{}", self.source_note(path)))
    }

    fn section<'v>(
        &self,
        value: Option<&'v Value>,
        path: String,
        keys: &[&str],
    ) -> Result<Section<'v>> {
        let map = match value {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(m)) => Some(m),
            Some(other) => {
                return Err(self.err(&path, format!("expected a map, got {}", describe(other))))
            }
        };
        for key in map.into_iter().flat_map(Mapping::keys) {
            let Some(key) = key.as_str() else {
                return Err(self.err(
                    &path,
                    format!("keys must be strings, got {}", describe(key)),
                ));
            };
            if !keys.contains(&key) {
                let full = join(&path, key);
                let hint = REMOVED_KEYS
                    .iter()
                    .find(|(gone, _)| *gone == full)
                    .map(|(_, instead)| format!(": {instead}"))
                    .unwrap_or_default();
                return Err(ConfigError(format!(
                    "unknown config key '{full}'{hint}{}",
                    self.source_note(&full)
                )));
            }
        }
        Ok(Section { map, path })
    }

    fn child<'v>(&self, parent: &Section<'v>, key: &str, keys: &[&str]) -> Result<Section<'v>> {
        self.section(parent.get(key), parent.key(key), keys)
    }

    fn as_string(&self, v: &Value, path: &str) -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(_) | Value::Bool(_) => Err(self.err(
                path,
                format!("expected a string, got {} (quote it)", describe(v)),
            )),
            _ => Err(self.err(path, format!("expected a string, got {}", describe(v)))),
        }
    }

    fn as_duration(&self, v: &Value, path: &str) -> Result<Duration> {
        let Value::String(text) = v else {
            return Err(self.err(
                path,
                format!("expected a duration like '30s', got {}", describe(v)),
            ));
        };
        parse_duration(text).map_err(|e| self.err(path, format!("bad duration '{text}': {e}")))
    }

    fn string(&self, s: &Section, key: &str, out: &mut String) -> Result<()> {
        if let Some(v) = s.get(key) {
            *out = self.as_string(v, &s.key(key))?;
        }
        Ok(())
    }

    fn count(&self, s: &Section, key: &str, out: &mut usize) -> Result<()> {
        if let Some(v) = s.get(key) {
            *out = v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    self.err(
                        &s.key(key),
                        format!("expected a positive integer, got {}", describe(v)),
                    )
                })?;
        }
        Ok(())
    }

    fn int(&self, s: &Section, key: &str, out: &mut i64) -> Result<()> {
        if let Some(v) = s.get(key) {
            *out = v.as_i64().ok_or_else(|| {
                self.err(
                    &s.key(key),
                    format!("expected an integer, got {}", describe(v)),
                )
            })?;
        }
        Ok(())
    }

    fn duration(&self, s: &Section, key: &str, out: &mut Duration) -> Result<()> {
        if let Some(v) = s.get(key) {
            *out = self.as_duration(v, &s.key(key))?;
        }
        Ok(())
    }

    fn storage(&self, s: &Section, key: &str, out: &mut Storage) -> Result<()> {
        let mut text = out.as_str().to_string();
        self.string(s, key, &mut text)?;
        *out = match text.as_str() {
            "file" => Storage::File,
            "memory" => Storage::Memory,
            other => {
                return Err(self.err(
                    &s.key(key),
                    format!("expected file or memory, got '{other}'"),
                ))
            }
        };
        Ok(())
    }

    fn discard(&self, s: &Section, key: &str, out: &mut Discard) -> Result<()> {
        let mut text = out.as_str().to_string();
        self.string(s, key, &mut text)?;
        *out = match text.as_str() {
            "old" => Discard::Old,
            "new" => Discard::New,
            other => {
                return Err(self.err(&s.key(key), format!("expected old or new, got '{other}'")))
            }
        };
        Ok(())
    }

    /// The items of a list key with each item's path (`key[2]`), or `None` when absent.
    fn list<'v>(&self, s: &Section<'v>, key: &str) -> Result<Option<Vec<(String, &'v Value)>>> {
        let Some(v) = s.get(key) else { return Ok(None) };
        let path = s.key(key);
        let Value::Sequence(items) = v else {
            return Err(self.err(&path, format!("expected a list, got {}", describe(v))));
        };
        Ok(Some(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| (format!("{path}[{i}]"), item))
                .collect(),
        ))
    }

    fn string_list(&self, s: &Section, key: &str, out: &mut Vec<String>) -> Result<()> {
        if let Some(items) = self.list(s, key)? {
            *out = items
                .iter()
                .map(|(path, v)| self.as_string(v, path))
                .collect::<Result<_>>()?;
        }
        Ok(())
    }

    fn duration_list(&self, s: &Section, key: &str, out: &mut Vec<Duration>) -> Result<()> {
        if let Some(items) = self.list(s, key)? {
            *out = items
                .iter()
                .map(|(path, v)| self.as_duration(v, path))
                .collect::<Result<_>>()?;
        }
        Ok(())
    }

    /// A map with free-form keys (labels, roles): each entry with its key and path.
    fn entries<'v>(&self, s: &Section<'v>, key: &str) -> Result<Option<Vec<Entry<'v>>>> {
        let Some(v) = s.get(key) else { return Ok(None) };
        let path = s.key(key);
        let Value::Mapping(map) = v else {
            return Err(self.err(&path, format!("expected a map, got {}", describe(v))));
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, item) in map {
            let Some(k) = k.as_str() else {
                return Err(self.err(&path, format!("keys must be strings, got {}", describe(k))));
            };
            out.push((k.to_string(), join(&path, k), item));
        }
        Ok(Some(out))
    }

    fn flag(&self, s: &Section, key: &str, out: &mut bool) -> Result<()> {
        if let Some(v) = s.get(key) {
            *out = v.as_bool().ok_or_else(|| {
                self.err(
                    &s.key(key),
                    format!("expected true or false, got {}", describe(v)),
                )
            })?;
        }
        Ok(())
    }
}
