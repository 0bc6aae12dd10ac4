//! The store's part of drain and undrain: the `drain.{host}` record in the drain bucket (no TTL), changed
//! by compare-and-set (a drain racing an undrain, or the worker recording `cordoned`, never loses an
//! event) and read back by the worker, which stops pulling while it is drained.

use super::Store;
use crate::ctx::now_us;
use osapi_bus::BusError;
use osapi_common::drain::{DrainEvent, DrainRecord, DRAIN, UNDRAIN};
use osapi_common::names::keys;
use osapi_common::timefmt::format_micros;

/// Tries of the read-modify-write before giving up to a 409 (each lost only to another writer).
const CAS_TRIES: usize = 5;

impl Store {
    /// Sets `host`'s drain flag for `by`; `Ok(None)` when no live worker is called `host`. Asking for
    /// what already holds changes nothing (no new event).
    pub fn set_drain(
        &self,
        host: &str,
        drain: bool,
        by: &str,
    ) -> Result<Option<DrainRecord>, BusError> {
        if !self.live_workers().iter().any(|w| w.hostname == host) {
            return Ok(None);
        }
        let bucket = &self.names.drain_bucket;
        let key = keys::drain(host);
        for _ in 0..CAS_TRIES {
            let entry = self.bus.kv_get(bucket, &key)?;
            let revision = entry.as_ref().map(|e| e.revision);
            let mut record: DrainRecord = entry
                .and_then(|e| serde_json::from_slice(&e.value).ok())
                .unwrap_or_default();
            if record.drain == drain {
                return Ok(Some(record));
            }
            record.drain = drain;
            record.push(DrainEvent {
                event: if drain { DRAIN } else { UNDRAIN }.to_string(),
                by: by.to_string(),
                timestamp: format_micros(now_us()),
            });
            let value =
                serde_json::to_vec(&record).map_err(|e| BusError::Protocol(e.to_string()))?;
            let written = match revision {
                None => self.bus.kv_create(bucket, &key, &value),
                Some(rev) => self.bus.kv_update(bucket, &key, &value, rev),
            };
            match written {
                Ok(_) => {
                    log::info!(
                        "worker {host}: {} by {by}",
                        if drain { DRAIN } else { UNDRAIN }
                    );
                    return Ok(Some(record));
                }
                Err(BusError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(BusError::Conflict(format!(
            "drain record of {host} kept changing; try again"
        )))
    }
}
