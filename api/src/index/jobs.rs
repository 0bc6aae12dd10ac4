//! The index's jobs by id (`JobMap`, generic over what it holds of a job): their entries in one vector
//! and a hash table of 4-byte positions in it, so a job costs its id and entry (88 bytes with the
//! index's `JobEntry`) plus ~1.6 table slots of 5 bytes.
//!
//! Why not `IndexMap`, which has the same shape: it keeps each key's 8-byte hash beside the entry and
//! 8-byte positions, 14 bytes a job more (~0.8 MiB at 60,000 jobs, what a 20 s `make bench` phase 3
//! leaves in the bucket). A `Uuid` hashes in a few nanoseconds, so a position's hash is computed again
//! when the table grows and when `swap_remove` moves the last entry, rather than stored. Hashing is
//! std's keyed `RandomState`: ids come from KV keys, which anyone allowed to write the bucket chooses.
//! Positions are `u32`: 2^32 jobs would need 350 GiB of entries, so `insert` refuses the one past it.

use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};
use uuid::Uuid;

pub(super) struct JobMap<T> {
    entries: Vec<(Uuid, T)>,
    /// Positions in `entries`, by the hash of the id there.
    table: HashTable<u32>,
    hasher: RandomState,
}

impl<T> Default for JobMap<T> {
    fn default() -> Self {
        JobMap {
            entries: Vec::new(),
            table: HashTable::new(),
            hasher: RandomState::new(),
        }
    }
}

impl<T> JobMap<T> {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn get(&self, id: &Uuid) -> Option<&T> {
        let at = self.position(self.hasher.hash_one(id), id)?;
        self.entries.get(at).map(|(_, e)| e)
    }

    pub(super) fn get_mut(&mut self, id: &Uuid) -> Option<&mut T> {
        let at = self.position(self.hasher.hash_one(id), id)?;
        self.entries.get_mut(at).map(|(_, e)| e)
    }

    /// Inserts `entry` under `id`, returning the entry it replaces (`None` also when the map already
    /// holds `u32::MAX` jobs and refuses it).
    pub(super) fn insert(&mut self, id: Uuid, entry: T) -> Option<T> {
        let hash = self.hasher.hash_one(id);
        if let Some(at) = self.position(hash, &id) {
            let (_, old) = self.entries.get_mut(at)?;
            return Some(std::mem::replace(old, entry));
        }
        let at = u32::try_from(self.entries.len()).ok()?;
        let Self {
            entries,
            table,
            hasher,
        } = self;
        table.insert_unique(hash, at, |at| hash_at(hasher, entries, *at));
        if entries.len() == entries.capacity() {
            // As many entries as the table has room for (7/8 of its slots), rather than the vector's
            // own doubling: 57,344 entries, not 65,536, once the table has 65,536 slots.
            entries.reserve_exact(table.capacity().saturating_sub(entries.len()).max(1));
        }
        entries.push((id, entry));
        None
    }

    /// Where `id`'s entry is: a position stays the entry's until a `swap_remove` moves the last entry
    /// into the place it empties.
    pub(super) fn position_of(&self, id: &Uuid) -> Option<u32> {
        let at = self.position(self.hasher.hash_one(id), id)?;
        u32::try_from(at).ok()
    }

    /// The id and entry at position `at`.
    pub(super) fn at(&self, at: u32) -> Option<(&Uuid, &T)> {
        self.entries.get(at as usize).map(|(id, e)| (id, e))
    }

    /// The entry at position `at`.
    pub(super) fn at_mut(&mut self, at: u32) -> Option<&mut T> {
        self.entries.get_mut(at as usize).map(|(_, e)| e)
    }

    /// Removes `id`'s entry, returning it and the position it had; the last entry takes that place in
    /// the vector (so the entry now at that position, if any, was at position `len()` before).
    pub(super) fn swap_remove(&mut self, id: &Uuid) -> Option<(u32, T)> {
        let hash = self.hasher.hash_one(id);
        let Self { entries, table, .. } = self;
        let found = table
            .find_entry(hash, |at| {
                entries.get(*at as usize).is_some_and(|(k, _)| k == id)
            })
            .ok()?;
        let (at, _) = found.remove();
        let last = entries.len().checked_sub(1)?;
        // The last entry moves to `at`: its position in the table follows.
        let moved = entries.get(last).map(|(k, _)| self.hasher.hash_one(k));
        if let (true, Some(moved)) = (at as usize != last, moved) {
            if let Some(slot) = table.find_mut(moved, |p| *p as usize == last) {
                *slot = at;
            }
        }
        Some((at, entries.swap_remove(at as usize).1))
    }

    /// Where `id` (whose hash is `hash`) sits in `entries`.
    fn position(&self, hash: u64, id: &Uuid) -> Option<usize> {
        let entries = &self.entries;
        self.table
            .find(hash, |at| {
                entries.get(*at as usize).is_some_and(|(k, _)| k == id)
            })
            .map(|at| *at as usize)
    }
}

/// The hash of the id at position `at` (0 for a position past the end, which the map never holds).
fn hash_at<T>(hasher: &RandomState, entries: &[(Uuid, T)], at: u32) -> u64 {
    entries
        .get(at as usize)
        .map_or(0, |(id, _)| hasher.hash_one(id))
}

#[cfg(test)]
mod tests {
    use super::JobMap;
    use std::collections::HashMap;
    use uuid::Uuid;

    /// Against a `HashMap` model, through inserts, replacements and removals from the middle, the end
    /// and of ids it never held, across several growths of the table.
    #[test]
    fn the_map_holds_exactly_what_a_hash_map_would() {
        let mut map: JobMap<u64> = JobMap::default();
        let mut model: HashMap<Uuid, u64> = HashMap::new();
        for n in 0..20_000u64 {
            let id = Uuid::from_u128(u128::from(n % 7_001) * 0x9e37_79b9);
            match n % 5 {
                0..=2 => assert_eq!(map.insert(id, n), model.insert(id, n)),
                3 => {
                    let at = map.position_of(&id);
                    let last = map.len().checked_sub(1).and_then(|l| map.at(l as u32));
                    let last = last.map(|(id, _)| *id);
                    let removed = map.swap_remove(&id);
                    assert_eq!(removed.map(|(_, v)| v), model.remove(&id));
                    assert_eq!(removed.map(|(at, _)| at), at);
                    // The last entry moved into the emptied place (unless it was the one removed).
                    if let (Some(at), Some(last)) = (at, last.filter(|l| *l != id)) {
                        assert_eq!(map.position_of(&last), Some(at));
                        assert_eq!(map.at(at).map(|(id, _)| *id), Some(last));
                    }
                }
                _ => {
                    let never = Uuid::from_u128(u128::from(n) << 64);
                    assert!(map.swap_remove(&never).is_none());
                    assert!(map.get(&never).is_none());
                }
            }
            assert_eq!(map.len(), model.len());
        }
        for (id, value) in &model {
            assert_eq!(map.get(id), Some(value));
            let at = map.position_of(id).expect("a held id has a position");
            assert_eq!(map.at(at), Some((id, value)));
        }
        let ids: Vec<Uuid> = model.keys().copied().collect();
        for id in ids {
            if let Some(v) = map.get_mut(&id) {
                *v += 1;
            }
            let removed = map.swap_remove(&id).map(|(_, v)| v);
            assert_eq!(removed, model.remove(&id).map(|v| v + 1));
        }
        assert_eq!(map.len(), 0);
    }
}
