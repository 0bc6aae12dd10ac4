//! Roles and permissions: what a token's `roles` (or its overriding `permissions` claim) allow.
//! Built in: `read` = job:read, health:read; `write` = read + job:write; `admin` = everything.
//! Custom roles come from `api.server.security.roles`.

use crate::config::RoleConfig;
use std::collections::{BTreeMap, BTreeSet};

pub const JOB_READ: &str = "job:read";
pub const JOB_WRITE: &str = "job:write";
pub const HEALTH_READ: &str = "health:read";
/// Reading the audit trail (`GET /audit`): only `admin` holds it among the built-in roles.
pub const AUDIT_READ: &str = "audit:read";
/// Grants every permission.
pub const ALL: &str = "*";

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
