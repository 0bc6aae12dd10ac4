//! The store's door to the idempotency bucket: `Idempotency-Key` records under `idem.{hash}`, claimed
//! with KV create (compare-and-set on "never written"), taken over and answered with KV update
//! (compare-and-set on the revision read), so two requests racing for one key cannot both win.

use super::Store;
use osapi_bus::BusError;
use osapi_common::idempotency::Record;
use std::time::Duration;

fn encode(record: &Record) -> Result<Vec<u8>, BusError> {
    serde_json::to_vec(record).map_err(|e| BusError::Protocol(e.to_string()))
}

impl Store {
    /// The bound on every NATS call, which is also how long a request waits for a racing twin.
    pub fn request_timeout(&self) -> Duration {
        self.bus.request_timeout()
    }

    /// The record under `key` and its revision, `None` when there is none (never used, or expired).
    pub fn idempotency_read(&self, key: &str) -> Result<Option<(Record, u64)>, BusError> {
        let Some(entry) = self.bus.kv_get(&self.names.idempotency_bucket, key)? else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&entry.value).map_err(|e| {
            BusError::Protocol(format!("idempotency record {key} does not parse: {e}"))
        })?;
        Ok(Some((record, entry.revision)))
    }

    /// Writes `record` under `key` if the key is free (`revision` `None`) or still at `revision`.
    /// `Ok(Some(new revision))` when this call won, `Ok(None)` when another request got there first.
    pub fn idempotency_write(
        &self,
        key: &str,
        record: &Record,
        revision: Option<u64>,
    ) -> Result<Option<u64>, BusError> {
        let value = encode(record)?;
        let bucket = &self.names.idempotency_bucket;
        let written = match revision {
            None => self.bus.kv_create(bucket, key, &value),
            Some(rev) => self.bus.kv_update(bucket, key, &value, rev),
        };
        match written {
            Ok(rev) => Ok(Some(rev)),
            Err(BusError::Conflict(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
