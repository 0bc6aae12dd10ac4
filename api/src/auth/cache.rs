//! Tokens already verified: a client sends the same token on every request (a script, the CLI, each
//! keep-alive connection), so the full check (base64, two JSON parses, the HMAC, the role table) runs
//! once per token, not once per request. A hit is the same token, byte for byte, that passed that
//! check: the map is keyed by the token's SHA-256 (the bearer tokens themselves are not kept), and a hit
//! is still refused from the second its `exp` has passed, as the full check would refuse it. Only
//! tokens that passed are stored; a refused one is checked again each time it is sent. Bounded: at most
//! [`ENTRIES_MAX`] tokens of at most [`TOKEN_BYTES_MAX`] bytes; when it is full, the expired go first,
//! then everything (a client cycling through many valid tokens only turns the cache off for itself).
//! The cache belongs to one [`super::Auth`]: a new key or role table comes with a new, empty one.

use super::Grant;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Tokens kept at most (a deployment has a few clients with a token each, re-minted now and then).
pub(super) const ENTRIES_MAX: usize = 64;
/// Longer tokens are checked every time instead (they are unusual; the bound keeps the cache small).
pub(super) const TOKEN_BYTES_MAX: usize = 2048;

struct Entry {
    /// The token's `exp`, seconds since the epoch: valid up to and including this second.
    exp: u64,
    grant: Arc<Grant>,
}

#[derive(Default)]
pub(super) struct TokenCache {
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenCache {
    /// What `token` was found to grant, when it passed the full check before and has not expired at
    /// `now` (seconds since the epoch).
    pub(super) fn get(&self, token: &str, now: u64) -> Option<Arc<Grant>> {
        if token.len() > TOKEN_BYTES_MAX {
            return None;
        }
        let key = key(token);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&key) {
            Some(entry) if now <= entry.exp => Some(entry.grant.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Keeps what `token` grants until `exp`; call only for a token that has just passed the full check.
    pub(super) fn put(&self, token: &str, exp: u64, grant: Arc<Grant>, now: u64) {
        if token.len() > TOKEN_BYTES_MAX || exp < now {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= ENTRIES_MAX {
            map.retain(|_, entry| now <= entry.exp);
        }
        if map.len() >= ENTRIES_MAX {
            map.clear();
        }
        map.insert(key(token), Entry { exp, grant });
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Caller;

    fn grant(sub: &str) -> Arc<Grant> {
        Arc::new(Grant {
            caller: Caller {
                sub: sub.into(),
                roles: vec!["admin".into()],
            },
            granted: Default::default(),
        })
    }

    #[test]
    fn a_kept_token_holds_through_its_exp_second_and_not_one_after() {
        let cache = TokenCache::default();
        cache.put("a.b.c", 1_000, grant("alice"), 900);
        assert_eq!(
            cache.get("a.b.c", 900).map(|g| g.caller.sub.clone()),
            Some("alice".into())
        );
        assert!(cache.get("a.b.c", 1_000).is_some());
        assert!(cache.get("a.b.c", 1_001).is_none());
        assert_eq!(cache.len(), 0, "an expired entry goes when it is found");
    }

    #[test]
    fn only_the_same_token_byte_for_byte_hits() {
        let cache = TokenCache::default();
        cache.put("a.b.c", 1_000, grant("alice"), 900);
        for other in ["a.b.C", "a.b.c ", "a.b.", ""] {
            assert!(cache.get(other, 900).is_none(), "{other:?}");
        }
    }

    #[test]
    fn expired_and_overlong_tokens_are_not_kept() {
        let cache = TokenCache::default();
        cache.put("a.b.c", 899, grant("alice"), 900);
        let long = "x".repeat(TOKEN_BYTES_MAX + 1);
        cache.put(&long, 1_000, grant("bob"), 900);
        assert_eq!(cache.len(), 0);
        assert!(cache.get(&long, 900).is_none());
    }

    #[test]
    fn a_full_cache_drops_the_expired_first_then_everything() {
        let cache = TokenCache::default();
        for i in 0..ENTRIES_MAX {
            let exp = if i % 2 == 0 { 950 } else { 2_000 };
            cache.put(&format!("t{i}"), exp, grant("x"), 900);
        }
        assert_eq!(cache.len(), ENTRIES_MAX);
        cache.put("new", 2_000, grant("y"), 1_000);
        assert_eq!(cache.len(), ENTRIES_MAX / 2 + 1);
        assert!(cache.get("t1", 1_000).is_some(), "a current token stays");
        for i in 0..ENTRIES_MAX {
            cache.put(&format!("u{i}"), 2_000, grant("z"), 1_000);
        }
        assert!(cache.len() <= ENTRIES_MAX, "{}", cache.len());
        let last = format!("u{}", ENTRIES_MAX - 1);
        assert!(cache.get(&last, 1_000).is_some(), "the newest is kept");
    }
}
