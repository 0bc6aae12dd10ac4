//! The index's progress and health per watch: the highest revision each has applied, this API's own
//! writes (a watermark per source) and the waits on them (read-your-writes), and readiness. Its own
//! file beside `index.rs`, which applies the records.

use super::detail::Feed;
use super::state::Readiness;
use super::{Index, Source};
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Index {
    /// The highest revision applied from `source`.
    pub fn applied(&self, source: Source) -> u64 {
        match source {
            Source::Responses => self.detail.responses_applied(),
            _ => self.lock().applied[source.slot()],
        }
    }

    /// This API wrote `revision` to `source`'s bucket (its readers will wait for the watch to apply it).
    pub fn wrote(&self, source: Source, revision: u64) {
        self.written[source.slot()].fetch_max(revision, Ordering::SeqCst);
    }

    /// Blocks until `source`'s watch has applied every write this API had made when called, or
    /// `deadline` passes; true when it has. Read-your-writes for readers of the index.
    pub fn wait_own_writes(&self, source: Source, deadline: Instant) -> bool {
        let revision = self.written[source.slot()].load(Ordering::SeqCst);
        self.wait_applied(source, revision, deadline)
    }

    /// Blocks until `source`'s watch (`Jobs` or `Workers`) has applied `revision` (a caller's own write)
    /// or `deadline` passes; true when it has.
    pub fn wait_applied(&self, source: Source, revision: u64, deadline: Instant) -> bool {
        let st = self.lock();
        self.applied
            .wait_until(st, deadline, |st| st.applied[source.slot()] >= revision)
            .1
    }

    /// `source`'s watch is current as of reconnect number `reconnects`.
    pub fn set_ready(&self, source: Source, reconnects: u64) {
        match source {
            Source::Jobs => self.detail.set_current(Feed::Jobs, Some(reconnects)),
            Source::Responses => return self.detail.set_current(Feed::Responses, Some(reconnects)),
            Source::Workers => {}
        }
        self.lock().ready[source.slot()] = Readiness {
            problem: None,
            checked_at_reconnect: reconnects,
        };
    }

    /// `source`'s part of the index may be stale, and why.
    pub fn set_not_ready(&self, source: Source, why: String) {
        match source {
            Source::Jobs => self.detail.set_current(Feed::Jobs, None),
            Source::Responses => return self.detail.set_current(Feed::Responses, None),
            Source::Workers => {}
        }
        self.lock().ready[source.slot()].problem = Some(why);
    }

    /// `Ok` when every watch is current and was checked since the connection's last reconnect
    /// (`reconnects`); else what is stale and why.
    pub fn readiness(&self, reconnects: u64) -> Result<(), String> {
        let st = self.lock();
        for source in [Source::Jobs, Source::Workers] {
            let r = &st.ready[source.slot()];
            if let Some(why) = &r.problem {
                return Err(format!("{} index not current: {why}", source.name()));
            }
            if r.checked_at_reconnect != reconnects {
                return Err(format!(
                    "{} index not yet checked since NATS came back",
                    source.name()
                ));
            }
        }
        Ok(())
    }
}
