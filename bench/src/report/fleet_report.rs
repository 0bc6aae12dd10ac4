//! The fleet phase's rows, targets (issue 13: broadcast, idle nats-server CPU, `/job/workers`) and its
//! `fleet` section of bench/results.json.

use super::{checks_text, fmt_mib, rows_text, Check};
use crate::args::Args;
use crate::fleet::FleetResult;
use crate::stats::{mib, round3, Summary};
use serde_json::{json, Value};

/// The fleet phase's targets (issue 13), per server.
fn fleet_checks(fleet: &[FleetResult]) -> Vec<Check> {
    let mut out = Vec::new();
    for f in fleet {
        let at = format!("nats-server {}, {} workers", f.server, f.workers);
        out.push(Check {
            name: format!("broadcast p50 ({at})"),
            measured: f.broadcast.p50,
            limit: 2000.0,
            unit: "ms",
            at_least: false,
        });
        out.push(Check {
            name: format!("idle nats-server CPU ({at})"),
            measured: f.idle_nats_cpu_percent,
            limit: 10.0,
            unit: "% core",
            at_least: false,
        });
        out.push(Check {
            name: format!("GET /job/workers p50 ({at})"),
            measured: f.workers_get.p50,
            limit: 50.0,
            unit: "ms",
            at_least: false,
        });
    }
    out
}

/// The fleet rows and their targets, printed after the main table.
pub fn fleet_table(fleet: &[FleetResult]) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let lat = |s: &Summary| format!("p50 {:.1} ms, p99 {:.1} ms", s.p50, s.p99);
    for f in fleet {
        let p = format!("7 {} workers on nats-server {}:", f.workers, f.server);
        rows.push((
            format!("{p} joined / consumers"),
            format!("{:.1} s / {}", f.join_s, f.consumers),
        ));
        rows.push((
            format!("{p} idle {:.0} s, CPU % of a core", f.idle_s),
            format!(
                "nats-server {:.1}%, API {:.1}%; nats-server RSS {}{}",
                f.idle_nats_cpu_percent,
                f.idle_api_cpu_percent,
                fmt_mib(f.nats_rss_kib),
                f.idle_msgs_per_s.map_or(String::new(), |[i, o]| format!(
                    "; {i:.0} msgs/s in, {o:.0} out"
                ))
            ),
        ));
        rows.push((
            format!("{p} broadcast _all ({} runs)", f.broadcast.n),
            lat(&f.broadcast),
        ));
        let c = &f.broadcast_cost;
        rows.push((
            format!("{p} one broadcast costs"),
            format!(
                "nats-server {}, CPU {:.1} ms; \
                 API CPU {:.1} ms; per worker CPU {:.0} µs, {:.1} context switches",
                c.traffic.as_ref().map_or_else(
                    || "messages not counted (no monitoring port on a cluster)".to_string(),
                    |t| format!(
                        "{:.0} msgs in, {:.0} out, {:.0} KB in, {:.0} KB out",
                        t.in_msgs,
                        t.out_msgs,
                        t.in_bytes / 1e3,
                        t.out_bytes / 1e3
                    )
                ),
                c.nats_cpu_ms,
                c.api_cpu_ms,
                c.worker_cpu_us,
                c.worker_switches
            ),
        ));
        rows.push((
            format!("{p} what a worker reads of a broadcast"),
            format!(
                "jobs.{{id}} {} bytes, run.{{id}} {} bytes",
                c.job_record_bytes, c.run_record_bytes
            ),
        ));
        let r = &f.read_cost;
        rows.push((
            format!("{p} parse + verify at {} hosts, one worker", r.hosts),
            format!(
                "whole jobs.{{id}} {:.0} µs ({} bytes), run.{{id}} {:.0} µs ({} bytes)",
                r.whole_us, r.whole_bytes, r.run_us, r.run_bytes
            ),
        ));
        rows.push((
            format!("{p} _any throughput"),
            format!(
                "{:.0} jobs/s ({} failed); API RSS {}",
                f.any_jobs_per_s,
                f.any_failed,
                fmt_mib(f.api_rss_kib)
            ),
        ));
        rows.push((
            format!("{p} GET /job/workers"),
            format!("{}, {} bytes", lat(&f.workers_get), f.workers_bytes),
        ));
        rows.push((
            format!("{p} GET /job/{{id}} of a broadcast"),
            format!("{}, {} bytes", lat(&f.detail_get), f.detail_bytes),
        ));
        if let Some(d) = &f.node_down {
            let w = |w: &crate::fleet_down::Window| {
                format!(
                    "2 nodes {:.1}%, workers {:.1}%, API {:.1}%",
                    w.nodes, w.workers, w.api
                )
            };
            rows.push((
                format!("{p} idle {:.0} s, all nodes up, CPU", d.window_s),
                w(&d.up),
            ));
            rows.push((
                format!("{p} idle {:.0} s, one node down, CPU", d.window_s),
                format!("{}; {} hosts out of reach", w(&d.down), d.out_of_reach),
            ));
            rows.push((
                format!("{p} node restarted: all hosts back in"),
                format!("{:.1} s", d.back_s),
            ));
        }
    }
    let mut out = rows_text(&rows);
    out.push_str("\nfleet targets\n");
    out.push_str(&checks_text(&fleet_checks(fleet)));
    out
}

/// One broadcast's cost (fleet_cost.rs) for bench/results.json.
fn cost_json(c: &crate::fleet_cost::BroadcastCost) -> Value {
    let t = c.traffic.as_ref();
    json!({
        "runs": c.runs,
        "nats_in_msgs": t.map(|t| round3(t.in_msgs)), "nats_out_msgs": t.map(|t| round3(t.out_msgs)),
        "nats_in_bytes": t.map(|t| round3(t.in_bytes)),
        "nats_out_bytes": t.map(|t| round3(t.out_bytes)),
        "nats_cpu_ms": round3(c.nats_cpu_ms), "api_cpu_ms": round3(c.api_cpu_ms),
        "worker_cpu_us": round3(c.worker_cpu_us), "worker_switches": round3(c.worker_switches),
        "job_record_bytes": c.job_record_bytes,
        "run_record_bytes": c.run_record_bytes,
    })
}

/// `fleet` for bench/results.json: the first server's headline figures at top level (the names the
/// contract fixes), every server's in `servers`.
pub fn fleet_json(fleet: &[FleetResult], a: &Args) -> Value {
    let kib = |k: Option<u64>| k.map(|k| round3(mib(k)));
    let servers: Vec<Value> = fleet
        .iter()
        .map(|f| {
            json!({
                "server": f.server, "workers": f.workers, "join_s": round3(f.join_s), "consumers": f.consumers,
                "idle_s": round3(f.idle_s), "idle_nats_cpu_percent": round3(f.idle_nats_cpu_percent),
                "idle_api_cpu_percent": round3(f.idle_api_cpu_percent),
                "idle_msgs_per_s": f.idle_msgs_per_s.map(|[i, o]| json!({"in": round3(i), "out": round3(o)})),
                "nats_rss_mib": kib(f.nats_rss_kib),
                "broadcast": f.broadcast.json(), "broadcast_p50_ms": round3(f.broadcast.p50),
                "broadcast_cost": cost_json(&f.broadcast_cost),
                "read_cost": {"hosts": f.read_cost.hosts, "whole_us": round3(f.read_cost.whole_us),
                    "whole_bytes": f.read_cost.whole_bytes, "run_us": round3(f.read_cost.run_us),
                    "run_bytes": f.read_cost.run_bytes},
                "any_jobs_per_s": round3(f.any_jobs_per_s), "any_failed": f.any_failed,
                "api_rss_mib": kib(f.api_rss_kib),
                "workers_get": f.workers_get.json(), "workers_bytes": f.workers_bytes,
                "detail_get": f.detail_get.json(), "detail_bytes": f.detail_bytes,
                "node_down": f.node_down.as_ref().map(|d| {
                    let w = |w: &crate::fleet_down::Window| json!({"nodes_cpu_percent": round3(w.nodes),
                        "workers_cpu_percent": round3(w.workers), "api_cpu_percent": round3(w.api)});
                    json!({"window_s": round3(d.window_s), "up": w(&d.up), "down": w(&d.down),
                        "out_of_reach": d.out_of_reach, "back_s": round3(d.back_s)})
                }),
            })
        })
        .collect();
    let mut out = servers.first().cloned().unwrap_or_else(|| json!({}));
    out["servers"] = json!(servers);
    out["heartbeat"] = json!(a.fleet_heartbeat);
    out["targets"] = json!(fleet_checks(fleet)
        .iter()
        .map(Check::json)
        .collect::<Vec<_>>());
    out
}
