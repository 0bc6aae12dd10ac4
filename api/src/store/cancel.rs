//! The store's part of `POST /job/{id}/cancel`: one `cancel.{id}` record in the job bucket, written
//! with KV create so a job is cancelled once (by whom and when), and seen by the index (the job's
//! status) and by every worker (which stops it or never starts it; `worker/src/cancel.rs`).

use super::Store;
use crate::ctx::now_us;
use osapi_bus::BusError;
use osapi_common::job::CancelRecord;
use osapi_common::names::keys;
use osapi_common::status::JobStatus;
use osapi_common::timefmt::format_micros;
use uuid::Uuid;

/// What a cancel request did.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    NotFound,
    /// Already finished (or already cancelled): nothing to stop.
    Finished(JobStatus),
    Cancelled,
}

impl Store {
    /// Records the cancel request of `by` unless the job is unknown or finished.
    pub fn cancel(&self, id: &Uuid, by: &str) -> Result<CancelOutcome, BusError> {
        if self.definition(id)?.is_none() {
            return Ok(CancelOutcome::NotFound);
        }
        let now = now_us();
        if let Some(status) = self.index.status(id, now).filter(|s| s.is_terminal()) {
            return Ok(CancelOutcome::Finished(status));
        }
        let record = CancelRecord {
            by: by.to_string(),
            at: format_micros(now),
            at_us: now,
        };
        let value = serde_json::to_vec(&record).map_err(|e| BusError::Protocol(e.to_string()))?;
        let sid = id.to_string();
        match self
            .bus
            .kv_create(&self.names.bucket, &keys::cancel(&sid), &value)
        {
            Ok(revision) => {
                self.wait_own_write(revision);
                log::info!("job {sid} cancelled by {by}");
                Ok(CancelOutcome::Cancelled)
            }
            Err(BusError::Conflict(_)) => Ok(CancelOutcome::Finished(JobStatus::Cancelled)),
            Err(e) => Err(e),
        }
    }
}
