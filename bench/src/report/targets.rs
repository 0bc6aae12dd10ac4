//! The targets of issues 6 and 13, each checked against what was measured: PASS or MISS, and by how
//! much, as table lines and as JSON.

use super::Results;
use crate::scaling::ENDPOINTS;
use crate::stats::{mib, round3};
use serde_json::{json, Value};

/// A target: `measured` against `limit`; lower is better unless `at_least`.
pub(super) struct Check {
    pub(super) name: String,
    pub(super) measured: f64,
    pub(super) limit: f64,
    pub(super) unit: &'static str,
    pub(super) at_least: bool,
}

impl Check {
    fn pass(&self) -> bool {
        if self.at_least {
            self.measured >= self.limit
        } else {
            self.measured < self.limit
        }
    }

    /// How far from the limit, in % of it: positive = headroom, negative = missed by.
    fn margin_pct(&self) -> f64 {
        let r = self.measured / self.limit;
        if self.at_least {
            (r - 1.0) * 100.0
        } else {
            (1.0 - r) * 100.0
        }
    }

    fn verdict(&self) -> String {
        if !self.measured.is_finite() {
            return "MISS (not measured)".into();
        }
        let m = self.margin_pct().abs();
        match (self.pass(), self.at_least) {
            (true, true) => format!("PASS, {m:.0}% above"),
            (true, false) => format!("PASS, {m:.0}% under"),
            (false, _) => format!("MISS by {m:.0}%"),
        }
    }

    pub(super) fn json(&self) -> Value {
        json!({
            "target": self.name, "measured": round3(self.measured), "limit": self.limit, "unit": self.unit,
            "pass": self.measured.is_finite() && self.pass(), "margin_pct": round3(self.margin_pct()),
        })
    }
}

fn opt_mib(kib: Option<u64>) -> f64 {
    kib.map_or(f64::NAN, mib)
}

pub(super) fn checks(r: &Results) -> Vec<Check> {
    let check = |name: &str, measured: f64, limit: f64, unit, at_least| Check {
        name: name.into(),
        measured,
        limit,
        unit,
        at_least,
    };
    let t = &r.throughput;
    let mut out = vec![
        // Issue 6 asked for 1.5x, issue 13 for 1.3x: the tighter one. Read from the interleaved runs:
        // phases a minute apart can land on different stretches of a shared machine.
        check(
            "round trip p50 / floor p50",
            r.interleaved.1.p50 / r.interleaved.0.p50,
            1.3,
            "x",
            false,
        ),
        check("throughput", t.jobs_per_s(), 1000.0, "jobs/s", true),
        check(
            "throughput / raw floor (same lanes)",
            t.jobs_per_s() * 100.0 / r.floor_jobs_per_s,
            75.0,
            "%",
            true,
        ),
        // The same share when a client has each job done in one request (`POST /job?wait=`), as the
        // floor's lanes do with one NATS request; the line above (create, then wait) stays the one
        // the upstream API's clients meet.
        check(
            "throughput / raw floor, one request a job",
            r.one_request.jobs_per_s() * 100.0 / r.floor_jobs_per_s,
            75.0,
            "%",
            true,
        ),
        check(
            "nats-server CPU per HTTP job / per raw job",
            nats_cpu_us_per_http_job(r) / r.floor_nats_cpu_us_per_job,
            1.3,
            "x",
            false,
        ),
    ];
    if let Some(top) = r.scaling.last() {
        for ((_, label), s) in ENDPOINTS.iter().zip(&top.endpoints) {
            out.push(check(
                &format!("{label} p50 at {} jobs", top.jobs),
                s.p50,
                50.0,
                "ms",
                false,
            ));
        }
    }
    let f = &r.footprint;
    out.push(check(
        "worker idle RSS",
        opt_mib(f.worker_idle_kib),
        8.0,
        "MiB",
        false,
    ));
    out.push(check(
        "API RSS under load",
        opt_mib(f.api_load_kib),
        16.0,
        "MiB",
        false,
    ));
    if let Some(top) = r.scaling.last() {
        out.push(check(
            &format!("API RSS with {} jobs in the bucket", top.jobs),
            opt_mib(top.api_rss_kib),
            32.0,
            "MiB",
            false,
        ));
    }
    for (name, bytes) in &f.sizes {
        out.push(check(
            &format!("{name} stripped size"),
            *bytes as f64 / 1_048_576.0,
            6.0,
            "MiB",
            false,
        ));
    }
    out.push(check(
        "start to /health/ready",
        f.ready.p50,
        200.0,
        "ms",
        false,
    ));
    out
}

/// nats-server CPU per completed job of the HTTP throughput run (NaN when its pid was not given).
pub(super) fn nats_cpu_us_per_http_job(r: &Results) -> f64 {
    r.cpu_load
        .iter()
        .find(|(name, _)| name == "nats-server")
        .map_or(f64::NAN, |(_, d)| {
            d.as_secs_f64() * 1e6 / r.throughput.completed.max(1) as f64
        })
}

pub(super) fn checks_text(cs: &[Check]) -> String {
    let width = cs.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in cs {
        let op = if c.at_least { ">=" } else { "<" };
        let measured = format!("{:.2} {}", c.measured, c.unit);
        let limit = format!("{op} {} {}", c.limit, c.unit);
        out.push_str(&format!(
            "{:<width$}  {measured:>14}  {limit:<14}  {}\n",
            c.name,
            c.verdict()
        ));
    }
    out
}
