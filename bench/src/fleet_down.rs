//! The cluster fleet with one node down (`--fleet-node-down D`, after the cluster's other figures): what
//! a stopped nats-server costs the rest of the fleet while it is away, and how soon every host is back.
//!
//! With `job.worker.consumer.replicas` 1 a host's own consumer has its one copy on one node; while that
//! node is down the host is out of reach (`subscribed: false`) and its fetcher checks the consumer after
//! a pause that doubles from 1 s to 8 s. Measured: the same idle window twice, once with all three nodes
//! and once with the third stopped (after [`SETTLE`] for the back-off to reach its ceiling): the two
//! running nodes' CPU, every worker's CPU together, the API's; how many hosts were listed out of
//! reach; then the node is started again (same store) and the time until every host is listed
//! subscribed again.

use crate::client::Api;
use crate::procs::{cpu_time, Procs};
use std::path::Path;
use std::time::{Duration, Instant};

/// After the stop, before the window: the out-of-reach marks are set and the back-off at its ceiling.
const SETTLE: Duration = Duration::from_secs(20);
/// How long the restarted node and the fleet may take until every host is subscribed again.
const BACK_WITHIN: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(250);

/// CPU, % of one core, over one window: the two nodes that stay up, all workers, the API.
#[derive(Clone, Copy, Default)]
pub struct Window {
    pub nodes: f64,
    pub workers: f64,
    pub api: f64,
}

pub struct NodeDown {
    pub window_s: f64,
    pub up: Window,
    pub down: Window,
    /// Most hosts listed `subscribed: false` at once while the node was down.
    pub out_of_reach: usize,
    /// From the node's restart until every host is listed subscribed again.
    pub back_s: f64,
}

/// A cluster node: its name, the arguments it was started with, its pid.
pub type Node = (String, Vec<String>, u32);

/// The processes besides the nodes: the nodes' binary, the API, the workers.
pub struct Cluster<'a> {
    pub nats_bin: &'a Path,
    pub api: u32,
    pub workers: &'a [u32],
}

fn cpu(pids: &[u32]) -> Duration {
    pids.iter().filter_map(|p| cpu_time(&p.to_string())).sum()
}

/// One idle window of `len`: CPU of `nodes`, the workers and the API; and the most hosts seen out of
/// reach.
fn window(api: &Api, nodes: &[u32], c: &Cluster<'_>, len: Duration) -> (Window, usize) {
    let before = (cpu(nodes), cpu(c.workers), cpu(&[c.api]));
    let t = Instant::now();
    let most = watch(api, len);
    let s = t.elapsed().as_secs_f64();
    let pct =
        |after: Duration, before: Duration| after.saturating_sub(before).as_secs_f64() * 100.0 / s;
    let w = Window {
        nodes: pct(cpu(nodes), before.0),
        workers: pct(cpu(c.workers), before.1),
        api: pct(cpu(&[c.api]), before.2),
    };
    (w, most)
}

/// Asks `GET /job/workers` once a second for `len` (which also keeps the client's connection from
/// idling past the API's timeout): the most hosts listed as not subscribed at once. An answer that is
/// not 200 (the API reconnecting, when its connection was to the stopped node) is skipped.
fn watch(api: &Api, len: Duration) -> usize {
    let t = Instant::now();
    let mut most = 0;
    while t.elapsed() < len {
        if let Ok((_, not)) = api.subscription_counts() {
            most = most.max(not);
        }
        std::thread::sleep(Duration::from_secs(1).min(len.saturating_sub(t.elapsed())));
    }
    most
}

/// Stops the last of `nodes` (its pid is replaced by the restarted one's).
pub fn run(
    procs: &mut Procs,
    api: &Api,
    nodes: &mut [Node],
    c: &Cluster<'_>,
    hosts: usize,
    len: Duration,
) -> Result<NodeDown, String> {
    let Some(((name, args, pid), up_nodes)) = nodes.split_last_mut() else {
        return Err("no node to stop".into());
    };
    let stays: Vec<u32> = up_nodes.iter().map(|n| n.2).collect();
    eprintln!("osapi-bench [7] the cluster idle {len:?}, then {name} stopped");
    let (up, _) = window(api, &stays, c, len);
    procs.stop(*pid);
    watch(api, SETTLE);
    let (down, out_of_reach) = window(api, &stays, c, len);
    eprintln!("osapi-bench [7] {out_of_reach} hosts out of reach; {name} started again");
    let t = Instant::now();
    *pid = procs.program(name, c.nats_bin, args)?;
    loop {
        // Not 200 (the API itself reconnecting): none counted this time.
        let subscribed = api.subscription_counts().map_or(0, |(yes, _)| yes);
        if subscribed >= hosts {
            break;
        }
        if t.elapsed() > BACK_WITHIN {
            return Err(format!(
                "{subscribed} of {hosts} hosts subscribed {BACK_WITHIN:?} after {name} came back"
            ));
        }
        std::thread::sleep(POLL);
    }
    Ok(NodeDown {
        window_s: len.as_secs_f64(),
        up,
        down,
        out_of_reach,
        back_s: t.elapsed().as_secs_f64(),
    })
}
