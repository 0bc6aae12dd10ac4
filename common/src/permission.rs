//! Roles and permissions: what a token's `roles` (or its overriding `permissions` claim) allow.
//! Built in: `read` = job:read, health:read; `write` = read + job:write; `admin` = everything.
//! Custom roles come from `api.server.security.roles`; they may not reuse the built-in names and may
//! grant only permissions the API knows. Also the rule on the key that signs tokens.

use crate::config::RoleConfig;
use std::collections::{BTreeMap, BTreeSet};

pub const JOB_READ: &str = "job:read";
pub const JOB_WRITE: &str = "job:write";
pub const HEALTH_READ: &str = "health:read";
/// Fleet administration (drain, undrain): only `admin` (`*`) holds it among the built-in roles.
pub const JOB_ADMIN: &str = "job:admin";
/// Reading the audit trail (`GET /audit`): only `admin` holds it among the built-in roles.
pub const AUDIT_READ: &str = "audit:read";
/// Grants every permission.
pub const ALL: &str = "*";
/// The roles every token may name; a custom role of the same name would be silently shadowed.
pub const BUILT_IN_ROLES: &[&str] = &["read", "write", "admin"];
/// Every permission a role may grant (`job:admin` and `audit:read` guard the drain and audit routes).
pub const KNOWN: &[&str] = &[JOB_READ, JOB_WRITE, HEALTH_READ, JOB_ADMIN, AUDIT_READ];
/// HS256 keys shorter than this are refused: RFC 7518 §3.2 asks for a key at least as long as the
/// hash (256 bits), and a short key can be guessed offline from any token.
pub const SIGNING_KEY_BYTES_MIN: usize = 32;

/// Whether a permission name is one a role may grant: a known one, `RESOURCE:*` of a known resource,
/// or `*`.
pub fn is_known(permission: &str) -> bool {
    if permission == ALL || KNOWN.contains(&permission) {
        return true;
    }
    permission.strip_suffix(":*").is_some_and(|resource| {
        KNOWN
            .iter()
            .any(|k| k.split_once(':').is_some_and(|(r, _)| r == resource))
    })
}

/// A custom role's definition: its name is not a built-in one and every permission is known.
pub fn check_role(name: &str, permissions: &[String]) -> Result<(), String> {
    if BUILT_IN_ROLES.contains(&name) {
        return Err(format!(
            "custom role '{name}' reuses a built-in role name ({}): pick another name",
            BUILT_IN_ROLES.join(", ")
        ));
    }
    match permissions.iter().find(|p| !is_known(p)) {
        Some(p) => Err(format!(
            "role '{name}': unknown permission '{p}' (known: {}, RESOURCE:*, *)",
            KNOWN.join(", ")
        )),
        None => Ok(()),
    }
}

/// The signing key is long enough (`SIGNING_KEY_BYTES_MIN`).
pub fn check_signing_key(key: &str) -> Result<(), String> {
    if key.len() < SIGNING_KEY_BYTES_MIN {
        return Err(format!(
            "is {} bytes long; an HS256 key must have at least {SIGNING_KEY_BYTES_MIN} (e.g. `openssl rand -base64 48`)",
            key.len()
        ));
    }
    Ok(())
}

/// The permissions a built-in or custom role grants; `None` for a role nobody defined.
pub fn role_permissions(role: &str, custom: &BTreeMap<String, RoleConfig>) -> Option<Vec<String>> {
    let owned = |ps: &[&str]| ps.iter().map(|p| p.to_string()).collect();
    match role {
        "read" => Some(owned(&[JOB_READ, HEALTH_READ])),
        "write" => Some(owned(&[JOB_READ, HEALTH_READ, JOB_WRITE])),
        "admin" => Some(owned(&[ALL])),
        other => custom.get(other).map(|r| r.permissions.clone()),
    }
}

/// What a token grants: its `permissions` claim when present (it overrides the roles), else the union of
/// its known roles' permissions (unknown roles grant nothing).
pub fn granted(
    roles: &[String],
    explicit: Option<&[String]>,
    custom: &BTreeMap<String, RoleConfig>,
) -> BTreeSet<String> {
    match explicit {
        Some(ps) => ps.iter().cloned().collect(),
        None => roles
            .iter()
            .filter_map(|r| role_permissions(r, custom))
            .flatten()
            .collect(),
    }
}

/// Whether `granted` covers `needed` (`resource:action`): exactly, by `resource:*`, or by `*`.
pub fn allows(granted: &BTreeSet<String>, needed: &str) -> bool {
    if granted.contains(ALL) || granted.contains(needed) {
        return true;
    }
    needed
        .split_once(':')
        .is_some_and(|(resource, _)| granted.contains(&format!("{resource}:*")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_definitions() {
        // (name, permissions, error contains; "" = accepted)
        let cases: &[(&str, &[&str], &str)] = &[
            ("ops", &["job:read", "health:read"], ""),
            ("ops", &["job:*", "*", "audit:read", "job:admin"], ""),
            ("ops", &[], ""),
            ("read", &["job:read"], "reuses a built-in role name"),
            ("admin", &[], "reuses a built-in role name"),
            ("ops", &["job:raed"], "unknown permission 'job:raed'"),
            ("ops", &["jobs:*"], "unknown permission 'jobs:*'"),
            ("ops", &["JOB:READ"], "unknown permission"),
            ("ops", &[""], "unknown permission ''"),
        ];
        for (name, perms, want) in cases {
            let got = check_role(name, &strings(perms));
            match (got, want.is_empty()) {
                (Ok(()), true) => {}
                (Err(e), false) => assert!(e.contains(want), "{name} {perms:?}: {e}"),
                (got, _) => panic!("{name} {perms:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn signing_key_length() {
        assert!(check_signing_key(&"k".repeat(31)).is_err());
        assert!(check_signing_key(&"k".repeat(32)).is_ok());
        let e = check_signing_key("short").unwrap_err();
        assert!(e.contains("5 bytes") && e.contains("32"), "{e}");
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn roles_and_overrides() {
        let custom: BTreeMap<String, RoleConfig> = [(
            "ops".to_string(),
            RoleConfig {
                permissions: strings(&["job:read"]),
            },
        )]
        .into();
        // (roles, permissions claim, needed, allowed)
        type Case<'a> = (&'a [&'a str], Option<&'a [&'a str]>, &'a str, bool);
        let cases: &[Case] = &[
            (&["read"], None, JOB_READ, true),
            (&["read"], None, JOB_WRITE, false),
            (&["write"], None, JOB_WRITE, true),
            (&["admin"], None, "anything:else", true),
            (&["admin"], None, AUDIT_READ, true),
            (&["write"], None, AUDIT_READ, false),
            (&["read"], None, AUDIT_READ, false),
            (&["ops"], None, JOB_READ, true),
            (&["ops"], None, JOB_WRITE, false),
            (&["nobody"], None, JOB_READ, false),
            (&["admin"], Some(&["job:read"]), JOB_WRITE, false),
            (&["read"], Some(&["job:*"]), JOB_WRITE, true),
            (&[], Some(&[]), JOB_READ, false),
        ];
        for (roles, explicit, needed, want) in cases {
            let explicit = explicit.map(strings);
            let g = granted(&strings(roles), explicit.as_deref(), &custom);
            assert_eq!(allows(&g, needed), *want, "{roles:?} {explicit:?} {needed}");
        }
    }
}
