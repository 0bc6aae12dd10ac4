//! What the index costs a job: the heap bytes it holds after 50,000 finished one-host jobs, counted by a
//! test-only allocator that adds up what each thread holds in glibc malloc chunks (request plus header,
//! rounded up to 16 bytes, at least 32), so the figure is the heap's and does not depend on what other
//! tests run at the same time. The API's own figure under a real bucket is `make bench` phase 5.

use super::super::{Index, Record, Source};
use osapi_common::job::{HostState, JobDef, Operation};
use osapi_common::names::keys;
use osapi_common::operation::OperationType;
use osapi_common::status::{Grace, HostStatus};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use uuid::Uuid;

/// The system allocator, counting per thread the glibc chunk bytes held.
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
}

/// What glibc malloc takes for a request of `size` bytes: a chunk of the request plus its 8-byte header,
/// rounded up to 16, at least 32.
fn chunk(size: usize) -> isize {
    isize::try_from((size + 8).next_multiple_of(16).max(32)).unwrap_or(isize::MAX)
}

fn count(delta: isize) {
    // `try_with`: a thread's locals may be gone while it frees its last allocations.
    let _ = HELD.try_with(|h| h.set(h.get() + delta));
}

// SAFETY: every call is passed straight to `System`; the counter only adds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(chunk(layout.size()));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-chunk(layout.size()));
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(chunk(layout.size()));
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(chunk(new_size) - chunk(layout.size()));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn held() -> isize {
    HELD.with(Cell::get)
}

const JOBS: u32 = 50_000;
const GRACE: Grace = Grace {
    running_us: 5_000,
    retryable_us: 20_000,
};

fn apply(index: &Index, key: &str, value: &impl serde::Serialize, revision: u64) {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let record = Record {
        key,
        value: Some(&bytes),
        revision,
    };
    index.apply(Source::Jobs, &record, 1_000_000_000);
}

/// Like the bench's bucket: jobs created one after another, each finished by one of two hosts.
fn fill(index: &Index) {
    let mut revision = 0;
    for n in 0..JOBS {
        let id = Uuid::from_u128(0x5eed_0000_0000 + u128::from(n)).to_string();
        let host = ["bench1", "bench2"][n as usize % 2];
        let created_us = 1_000 * i64::from(n);
        let def = JobDef {
            id: id.clone(),
            operation: Operation {
                op_type: OperationType::SystemHostnameGet,
                data: serde_json::json!({}),
            },
            target_hostname: "_any".into(),
            expected_hosts: vec![],
            created: String::new(),
            created_us,
            timeout_ms: 30_000,
            retry_of: None,
            submitted_by: String::new(),
            signature: None,
        };
        let state = HostState {
            hostname: host.into(),
            status: HostStatus::Completed,
            attempts: 1,
            error: None,
            duration: None,
            events: vec![],
            updated_us: created_us + 500,
            response: None,
        };
        revision += 1;
        apply(index, &keys::job(&id), &def, revision);
        revision += 1;
        apply(index, &keys::state(&id, host), &state, revision);
    }
}

#[test]
fn an_indexed_job_costs_at_most_110_bytes_of_heap() {
    let before = held();
    let index = Index::new(GRACE);
    fill(&index);
    assert_eq!(index.stats(1_000_000_000).total, JOBS as usize);
    let per_job = (held() - before) / JOBS as isize;
    eprintln!(
        "the index holds {per_job} heap bytes a job ({JOBS} one-host jobs; an entry is {} bytes)",
        std::mem::size_of::<super::JobEntry>()
    );
    assert!(
        per_job <= 110,
        "the index holds {per_job} heap bytes a job, more than 110"
    );
}
