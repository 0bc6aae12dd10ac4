//! The audit stream's messages and how a page of entries is found in them, without NATS (unit-tested).
//!
//! Under load the publisher writes what is queued as one message, `{"start": N, "entries": [...]}`: the
//! entries in the order they were queued, numbered from `start` on, counted over the stream's life. The
//! numbers run on from message to message (the publisher appends only after the last message it read,
//! `Nats-Expected-Last-Sequence`), so a page by entry offset finds its message by a binary search on
//! sequence, and the total is the last message's end minus the first's start. A message written before
//! batching holds one entry object, and counts as one entry numbered `seq - 1` (every message holds at
//! least one entry, so numbers then match sequences, and the first batch after them continues from there).

use super::Entry;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Entries one message holds at most.
pub const BATCH_ENTRIES: usize = 64;
/// Bytes of encoded entries one message holds at most (one larger entry still goes alone): well under
/// NATS's 1 MiB payload and a small `audit.max_bytes`.
pub const BATCH_BYTES: usize = 16 * 1024;

#[derive(Serialize)]
struct Batch<'a> {
    start: u64,
    entries: &'a [Entry],
}

/// The message for `entries` numbered from `start`.
pub fn encode(start: u64, entries: &[Entry]) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Batch { start, entries })
}

/// One stored message as a reader sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The number of its first entry.
    pub start: u64,
    /// How many numbers it takes.
    pub len: u64,
    /// Its entries, oldest first (none when the message is unreadable: it still takes one number).
    pub entries: Vec<Value>,
}

impl Stored {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// The message stored at `seq`: a batch, an entry written before batching, or unreadable (logged).
pub fn decode(seq: u64, bytes: &[u8]) -> Stored {
    let legacy = |entries| Stored {
        start: seq.saturating_sub(1),
        len: 1,
        entries,
    };
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => match (m.get("start").and_then(Value::as_u64), m.get("entries")) {
            (Some(start), Some(Value::Array(entries))) => Stored {
                start,
                len: entries.len() as u64,
                entries: entries.clone(),
            },
            _ => legacy(vec![Value::Object(m)]),
        },
        Ok(other) => {
            log::warn!("unreadable audit message {seq} skipped: not an object: {other}");
            legacy(Vec::new())
        }
        Err(e) => {
            log::warn!("unreadable audit message {seq} skipped: {e}");
            legacy(Vec::new())
        }
    }
}

/// Reads stored messages by sequence, in the order asked; `None` for one no longer stored.
pub type Fetch<'a, E> = dyn FnMut(&[u64]) -> Result<Vec<Option<Stored>>, E> + 'a;

/// `(total, entries)`: `limit` entries from the `offset`-th newest on, newest first, of a stream holding
/// sequences `first_seq..=last_seq`. Costs one fetch of the two ends, a binary search for the message
/// holding the newest entry wanted (one fetch when no batch is in the way), then a fetch per `limit`
/// messages walked back.
pub fn page<E>(
    first_seq: u64,
    last_seq: u64,
    offset: u64,
    limit: u64,
    fetch: &mut Fetch<'_, E>,
) -> Result<(u64, Vec<Value>), E> {
    let first_seq = first_seq.max(1);
    if last_seq < first_seq {
        return Ok((0, Vec::new()));
    }
    let mut known: BTreeMap<u64, Option<Stored>> = BTreeMap::new();
    let ends = fetch(&[first_seq, last_seq])?;
    let mut ends = ends.into_iter();
    let (Some(Some(first)), Some(Some(last))) = (ends.next(), ends.next()) else {
        // The stream's ends went away meanwhile (expired, or discarded by a write): nothing to read now.
        return Ok((0, Vec::new()));
    };
    let end = last.end();
    let total = end.saturating_sub(first.start);
    if offset >= total || limit == 0 {
        return Ok((total, Vec::new()));
    }
    // The newest entry wanted; it is at or after the first message's start.
    let n = end - 1 - offset;
    // The message holding it: the last one starting at or before `n`. Every message holds one entry at
    // least, so a message's start is at least its sequence minus one: none after `n + 1` can.
    let (mut lo, mut hi) = (first_seq, last_seq.min(n.saturating_add(1)));
    known.insert(first_seq, Some(first));
    known.insert(last_seq, Some(last));
    let mut probe_hi = true;
    while lo < hi {
        let mid = if probe_hi {
            hi
        } else {
            lo + (hi - lo).div_ceil(2)
        };
        probe_hi = false;
        if let std::collections::btree_map::Entry::Vacant(slot) = known.entry(mid) {
            slot.insert(fetch(&[mid])?.into_iter().next().flatten());
        }
        match known.get(&mid) {
            Some(Some(s)) if s.start > n => hi = mid - 1,
            // Starting at or before `n`, or gone (discarded from the front meanwhile).
            _ => lo = mid,
        }
    }
    let mut items = Vec::with_capacity(limit.min(1000) as usize);
    let mut seq = lo;
    loop {
        let want = limit - items.len() as u64;
        let from = seq.saturating_sub(want - 1).max(first_seq);
        let seqs: Vec<u64> = (from..=seq)
            .rev()
            .filter(|s| !known.contains_key(s))
            .collect();
        let mut got = fetch(&seqs)?.into_iter();
        for s in (from..=seq).rev() {
            let stored = match known.remove(&s) {
                Some(k) => k,
                None => got.next().flatten(),
            };
            let Some(stored) = stored else { continue };
            for (k, e) in stored.entries.iter().enumerate().rev() {
                if stored.start + k as u64 <= n && (items.len() as u64) < limit {
                    items.push(e.clone());
                }
            }
        }
        if items.len() as u64 >= limit || from <= first_seq {
            break;
        }
        seq = from - 1;
    }
    Ok((total, items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(n: u64) -> Entry {
        Entry {
            id: format!("e{n}"),
            timestamp: String::new(),
            user: "u".into(),
            roles: vec!["admin".into()],
            method: "POST".into(),
            path: format!("/job/{n}"),
            code: 201,
            duration_ms: 1,
            source: String::new(),
            job_id: None,
        }
    }

    #[test]
    fn a_batch_reads_back_as_its_entries_in_order() {
        let entries: Vec<Entry> = (7..10).map(entry).collect();
        let bytes = encode(7, &entries).expect("encode");
        let stored = decode(3, &bytes);
        assert_eq!(stored.start, 7);
        assert_eq!(stored.len, 3);
        assert_eq!(stored.end(), 10);
        let back: Vec<Entry> = stored
            .entries
            .iter()
            .map(|v| serde_json::from_value(v.clone()).expect("an entry"))
            .collect();
        assert_eq!(back, entries);
    }

    #[test]
    fn an_entry_written_before_batching_is_one_entry_numbered_by_its_sequence() {
        let old = serde_json::to_vec(&entry(1)).expect("encode");
        let stored = decode(5, &old);
        assert_eq!((stored.start, stored.len), (4, 1));
        assert_eq!(
            stored.entries,
            [serde_json::to_value(entry(1)).expect("value")]
        );
        // Garbage takes its number and shows nothing.
        let bad = decode(6, b"not json");
        assert_eq!((bad.start, bad.len, bad.entries.len()), (5, 1, 0));
        assert_eq!(decode(7, b"[1]").entries.len(), 0);
    }

    /// A stream of messages holding `sizes` entries each (0 = a message from before batching), entries
    /// numbered on; its first `discarded` messages gone. Returns the messages by sequence and every
    /// entry still stored, oldest first.
    fn stream(sizes: &[u64], discarded: usize) -> (BTreeMap<u64, Vec<u8>>, Vec<Value>) {
        let (mut msgs, mut all, mut next) = (BTreeMap::new(), Vec::new(), 0u64);
        for (i, &size) in sizes.iter().enumerate() {
            let seq = i as u64 + 1;
            let (bytes, count) = if size == 0 {
                (serde_json::to_vec(&entry(next)).expect("encode"), 1)
            } else {
                let es: Vec<Entry> = (next..next + size).map(entry).collect();
                (encode(next, &es).expect("encode"), size)
            };
            if i >= discarded {
                msgs.insert(seq, bytes);
                all.extend(
                    (next..next + count).map(|n| serde_json::to_value(entry(n)).expect("v")),
                );
            }
            next += count;
        }
        (msgs, all)
    }

    fn read(
        msgs: &BTreeMap<u64, Vec<u8>>,
        offset: u64,
        limit: u64,
        fetches: &mut usize,
    ) -> (u64, Vec<Value>) {
        let first = msgs.keys().next().copied().unwrap_or(0);
        let last = msgs.keys().last().copied().unwrap_or(0);
        let mut fetch = |seqs: &[u64]| -> Result<Vec<Option<Stored>>, ()> {
            *fetches += 1;
            Ok(seqs
                .iter()
                .map(|s| msgs.get(s).map(|b| decode(*s, b)))
                .collect())
        };
        page(first, last, offset, limit, &mut fetch).expect("no error")
    }

    #[test]
    fn pages_over_batches_match_one_entry_per_message() {
        // Old single entries, then batches of every size, some of one; with the front discarded or not.
        let sizes = [0, 0, 0, 1, 5, 1, 1, 64, 2, 3, 1, 17, 1, 1, 1, 9];
        for discarded in [0, 2, 4, 8] {
            let (msgs, all) = stream(&sizes, discarded);
            let newest_first: Vec<Value> = all.iter().rev().cloned().collect();
            for offset in [0, 1, 2, 5, 10, 40, 60, 100, all.len() as u64 - 1, 500] {
                for limit in [0, 1, 3, 7, 50, 1000] {
                    let (total, items) = read(&msgs, offset, limit, &mut 0);
                    assert_eq!(
                        total,
                        all.len() as u64,
                        "total, front {discarded} discarded"
                    );
                    let want: Vec<Value> = newest_first
                        .iter()
                        .skip(offset as usize)
                        .take(limit as usize)
                        .cloned()
                        .collect();
                    assert_eq!(
                        items, want,
                        "offset {offset} limit {limit}, front {discarded} discarded"
                    );
                }
            }
        }
    }

    #[test]
    fn a_trail_without_batches_costs_no_search() {
        let (msgs, _) = stream(&[0; 50], 0);
        let mut fetches = 0;
        let (total, items) = read(&msgs, 10, 5, &mut fetches);
        assert_eq!(total, 50);
        assert_eq!(items[0]["id"], json!("e39"));
        // The two ends, the guess (right at once), one batch of the page.
        assert_eq!(fetches, 3);
    }

    #[test]
    fn an_empty_or_vanished_stream_is_an_empty_page() {
        let (total, items) = read(&BTreeMap::new(), 0, 10, &mut 0);
        assert_eq!((total, items.len()), (0, 0));
        let mut gone = |seqs: &[u64]| -> Result<Vec<Option<Stored>>, ()> {
            Ok(seqs.iter().map(|_| None).collect())
        };
        assert_eq!(page(3, 9, 0, 10, &mut gone), Ok((0, Vec::new())));
    }
}
