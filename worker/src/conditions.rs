//! This host's node conditions for the heartbeat: the figures `system.status.get` reads (under
//! `host_root`, so tests use a fixture tree), judged by `osapi_common::conditions` against
//! `job.worker.conditions`, each keeping the time of its last change across beats.

use crate::clock::now_us;
use crate::ops::{system, OpContext};
use osapi_common::conditions::{self, Condition, Disk, Readings, Thresholds};
use osapi_common::timefmt::format_micros;
use serde_json::{json, Value};
use std::sync::Mutex;

/// The conditions as last reported, so a status that did not change keeps its transition time.
pub struct Conditions {
    ctx: OpContext,
    thresholds: Thresholds,
    last: Mutex<Vec<Condition>>,
}

impl Conditions {
    pub fn new(ctx: OpContext, thresholds: Thresholds) -> Conditions {
        Conditions {
            ctx,
            thresholds,
            last: Mutex::new(Vec::new()),
        }
    }

    /// Reads the host now and returns the conditions.
    pub fn now(&self) -> Vec<Condition> {
        let status = system::status_get(&json!({}), &self.ctx).unwrap_or(Value::Null);
        let evaluated = conditions::evaluate(&readings(&status), &self.thresholds);
        let now = now_us();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let next = conditions::update(&last, evaluated, (now, &format_micros(now)));
        for c in next
            .iter()
            .filter(|c| c.last_transition_us == now && c.status)
        {
            log::warn!("node condition {}: {}", c.kind, c.message);
        }
        *last = next.clone();
        next
    }
}

/// `system.status.get`'s answer as the rule's figures; a part that failed is `None`.
fn readings(status: &Value) -> Readings {
    let num = |v: &Value| v.as_u64();
    let memory = match (
        num(&status["memory"]["total"]),
        num(&status["memory"]["available"]),
    ) {
        (Some(total), Some(available)) => Some((total, available)),
        _ => None,
    };
    let disks = status["disk"].as_array().map(|list| {
        list.iter()
            .filter_map(|d| {
                Some(Disk {
                    mount: d["mount"].as_str()?.to_string(),
                    total: num(&d["total"])?,
                    used: num(&d["used"])?,
                })
            })
            .collect()
    });
    Readings {
        memory,
        load1: status["load"]["load1"].as_f64(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        disks,
    }
}
