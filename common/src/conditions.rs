//! Node conditions in every heartbeat (`MemoryPressure`, `HighLoad`, `DiskPressure`, as the original
//! OSAPI reports them): the threshold rule and the time of each condition's last change. Pure: the
//! worker reads the figures (under `host_root`) and passes them and `now`.

use serde::{Deserialize, Serialize};

/// The three conditions, in the order they are reported.
pub const TYPES: [&str; 3] = [MEMORY_PRESSURE, HIGH_LOAD, DISK_PRESSURE];
pub const MEMORY_PRESSURE: &str = "MemoryPressure";
pub const HIGH_LOAD: &str = "HighLoad";
pub const DISK_PRESSURE: &str = "DiskPressure";

/// `job.worker.conditions`: when each condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Memory used (total - available) over this percent of total.
    pub memory_pressure_percent: u64,
    /// load1 over this many times the CPU count.
    pub high_load_per_cpu: u64,
    /// Any real filesystem used over this percent.
    pub disk_pressure_percent: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            memory_pressure_percent: 90,
            high_load_per_cpu: 2,
            disk_pressure_percent: 90,
        }
    }
}

/// One filesystem's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    pub mount: String,
    pub total: u64,
    pub used: u64,
}

/// What the host says now; a figure that could not be read is `None` (its condition is then `false`,
/// with the reason saying so, rather than a guess).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    /// (total, available) bytes.
    pub memory: Option<(u64, u64)>,
    pub load1: Option<f64>,
    pub cpus: usize,
    pub disks: Option<Vec<Disk>>,
}

/// One condition as the heartbeat carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: bool,
    /// The figures behind the status, e.g. `memory 95% used (threshold 90%)`.
    pub message: String,
    /// RFC 3339 time of the last change of `status` (the first evaluation counts as one).
    pub last_transition: String,
    pub last_transition_us: i64,
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The rule: `(type, status, message)` for each of [`TYPES`].
pub fn evaluate(r: &Readings, t: &Thresholds) -> [(&'static str, bool, String); 3] {
    let memory = match r.memory {
        Some((total, available)) => {
            let used = percent(total.saturating_sub(available), total);
            let limit = t.memory_pressure_percent as f64;
            (
                used > limit,
                format!("memory {used:.0}% used (threshold {limit:.0}%)"),
            )
        }
        None => (false, "memory figures unreadable".to_string()),
    };
    let load = match r.load1 {
        Some(load1) => {
            let limit = (t.high_load_per_cpu as f64) * r.cpus.max(1) as f64;
            (
                load1 > limit,
                format!(
                    "load1 {load1:.2} (threshold {limit:.2}: {}x {} CPUs)",
                    t.high_load_per_cpu,
                    r.cpus.max(1)
                ),
            )
        }
        None => (false, "load figures unreadable".to_string()),
    };
    let disk = match &r.disks {
        Some(disks) => {
            let limit = t.disk_pressure_percent as f64;
            let fullest = disks
                .iter()
                .map(|d| (percent(d.used, d.total), d.mount.as_str()))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            match fullest {
                Some((used, mount)) => (
                    used > limit,
                    format!("fullest filesystem {mount} {used:.0}% used (threshold {limit:.0}%)"),
                ),
                None => (false, "no real filesystem found".to_string()),
            }
        }
        None => (false, "disk figures unreadable".to_string()),
    };
    [
        (MEMORY_PRESSURE, memory.0, memory.1),
        (HIGH_LOAD, load.0, load.1),
        (DISK_PRESSURE, disk.0, disk.1),
    ]
}

/// The new conditions: `evaluated` now, each keeping its `last_transition` from `previous` while its
/// status has not changed.
pub fn update(
    previous: &[Condition],
    evaluated: [(&'static str, bool, String); 3],
    now: (i64, &str),
) -> Vec<Condition> {
    evaluated
        .into_iter()
        .map(|(kind, status, message)| {
            let before = previous
                .iter()
                .find(|c| c.kind == kind && c.status == status);
            Condition {
                kind: kind.to_string(),
                status,
                message,
                last_transition: before.map_or(now.1.to_string(), |c| c.last_transition.clone()),
                last_transition_us: before.map_or(now.0, |c| c.last_transition_us),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn readings(mem_used_pct: u64, load1: f64, disk_used_pct: u64) -> Readings {
        Readings {
            memory: Some((100 * GIB, (100 - mem_used_pct) * GIB)),
            load1: Some(load1),
            cpus: 4,
            disks: Some(vec![
                Disk {
                    mount: "/".into(),
                    total: 100,
                    used: 10,
                },
                Disk {
                    mount: "/var".into(),
                    total: 100,
                    used: disk_used_pct,
                },
            ]),
        }
    }

    fn statuses(r: &Readings, t: &Thresholds) -> [bool; 3] {
        let [m, l, d] = evaluate(r, t);
        [m.1, l.1, d.1]
    }

    #[test]
    fn thresholds_are_strictly_over() {
        let t = Thresholds::default();
        let cases = [
            (readings(50, 1.0, 50), [false, false, false]),
            (readings(90, 8.0, 90), [false, false, false]),
            (readings(91, 8.01, 91), [true, true, true]),
            (readings(99, 0.0, 0), [true, false, false]),
        ];
        for (r, want) in cases {
            assert_eq!(statuses(&r, &t), want, "{r:?}");
        }
        let strict = Thresholds {
            memory_pressure_percent: 40,
            high_load_per_cpu: 1,
            disk_pressure_percent: 40,
        };
        assert_eq!(
            statuses(&readings(50, 5.0, 50), &strict),
            [true, true, true]
        );
        let [_, _, disk] = evaluate(&readings(10, 0.0, 95), &t);
        assert!(
            disk.2.contains("/var") && disk.2.contains("95%"),
            "{}",
            disk.2
        );
    }

    #[test]
    fn unreadable_figures_are_false_and_say_so() {
        let r = Readings {
            cpus: 0,
            ..Readings::default()
        };
        let all = evaluate(&r, &Thresholds::default());
        assert!(all
            .iter()
            .all(|(_, status, msg)| !status && msg.contains("unreadable")));
        let no_disks = Readings {
            disks: Some(vec![]),
            ..readings(10, 0.0, 0)
        };
        assert!(!evaluate(&no_disks, &Thresholds::default())[2].1);
    }

    #[test]
    fn the_last_transition_moves_only_when_the_status_does() {
        let t = Thresholds::default();
        let first = update(&[], evaluate(&readings(95, 1.0, 10), &t), (100, "t100"));
        assert!(first.iter().all(|c| c.last_transition_us == 100));
        let same = update(&first, evaluate(&readings(96, 1.5, 20), &t), (200, "t200"));
        assert!(same.iter().all(|c| c.last_transition == "t100"), "{same:?}");
        let changed = update(&same, evaluate(&readings(10, 1.5, 20), &t), (300, "t300"));
        assert_eq!(changed[0].kind, MEMORY_PRESSURE);
        assert!(!changed[0].status);
        assert_eq!(changed[0].last_transition_us, 300);
        assert_eq!(changed[1].last_transition_us, 100);
        let json = serde_json::to_value(&changed[0]).unwrap_or_default();
        assert_eq!(json["type"], "MemoryPressure");
    }
}
