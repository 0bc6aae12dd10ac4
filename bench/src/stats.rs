//! Percentiles of latency samples (milliseconds), nearest-rank on the sorted samples.

use serde_json::{json, Value};
use std::time::Duration;

/// p50/p99/max of one set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Summary {
        let mut s = samples.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        Summary {
            n: s.len(),
            p50: pct(&s, 50),
            p99: pct(&s, 99),
            max: s.last().copied().unwrap_or(f64::NAN),
        }
    }

    pub fn json(&self) -> Value {
        json!({ "n": self.n, "p50_ms": round3(self.p50), "p99_ms": round3(self.p99), "max_ms": round3(self.max) })
    }
}

/// `p`th percentile of already sorted samples; NaN when there are none.
fn pct(sorted: &[f64], p: usize) -> f64 {
    let i = (sorted.len().saturating_sub(1) * p) / 100;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Three decimals keep results.json readable; NaN (no samples) becomes null.
pub fn round3(x: f64) -> Option<f64> {
    x.is_finite().then(|| (x * 1000.0).round() / 1000.0)
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
