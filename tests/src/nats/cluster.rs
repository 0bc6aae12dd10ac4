//! Several private nats-servers clustered on loopback with JetStream, for tests of `replicas: 3` and of
//! a node lost and restarted.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{nats_server_binary, open_log, stop_child, LOG_TAIL_LINES, START_ATTEMPTS_MAX};
use crate::wait::{free_port, keep_failed_dirs, log_tail, temp_dir, wait_until};

/// How long a JetStream cluster may take to elect its meta leader and report healthy.
const CLUSTER_READY_DEADLINE: Duration = Duration::from_secs(30);

/// One member of a [`NatsCluster`]: client, route and monitoring ports on loopback, its own store dir.
struct ClusterNode {
    name: String,
    port: u16,
    cluster_port: u16,
    monitor_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl ClusterNode {
    fn log_path(&self) -> PathBuf {
        self.dir.join("nats.log")
    }
}

/// Several nats-servers clustered on loopback with JetStream (`--cluster_name`, `--routes` to the others,
/// `--server_name nN`), so streams and buckets can have `replicas: 3`. Nodes can be stopped and restarted
/// one at a time (same ports and store). Drop kills them all and removes their dirs.
pub struct NatsCluster {
    binary: PathBuf,
    cluster_name: String,
    nodes: Vec<ClusterNode>,
}

impl NatsCluster {
    /// Starts `size` clustered nodes and waits until each reports healthy (JetStream meta leader known).
    /// A node that exits at start (a port taken by another process meanwhile) makes a fresh try with new
    /// ports and dirs, at most `START_ATTEMPTS_MAX` times.
    pub fn start(size: usize) -> NatsCluster {
        assert!(size >= 1, "a cluster needs a node");
        let mut why = String::new();
        for attempt in 1..=START_ATTEMPTS_MAX {
            let nodes = (1..=size)
                .map(|n| ClusterNode {
                    name: format!("n{n}"),
                    port: free_port(),
                    cluster_port: free_port(),
                    monitor_port: free_port(),
                    dir: temp_dir(),
                    child: None,
                })
                .collect();
            let mut cluster = NatsCluster {
                binary: nats_server_binary(),
                cluster_name: format!("osapi-{}", uuid::Uuid::new_v4().simple()),
                nodes,
            };
            for index in 0..size {
                cluster.spawn(index);
            }
            match cluster.try_wait_healthy() {
                Ok(()) => return cluster,
                Err(exited) => {
                    eprintln!("cluster start attempt {attempt}: {exited}");
                    why = exited;
                }
            }
        }
        panic!("the nats cluster did not start after {START_ATTEMPTS_MAX} attempts; last: {why}");
    }

    /// Every node's client URL, comma-separated (what `nats.url` takes for a cluster).
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|index| self.url(index))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `nats://127.0.0.1:PORT` of node `index` (0-based).
    pub fn url(&self, index: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[index].port)
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// `http://127.0.0.1:PORT` of node `index`'s monitoring endpoint (`/connz`, `/jsz`, `/healthz`).
    pub fn monitor_url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[index].monitor_port)
    }

    /// `--server_name` of node `index`: `n1`, `n2`, ...
    pub fn name(&self, index: usize) -> &str {
        &self.nodes[index].name
    }

    /// Stops node `index` (SIGTERM, then SIGKILL after a deadline) and waits until it has exited.
    pub fn stop(&mut self, index: usize) {
        let Some(child) = self.nodes[index].child.take() else {
            return;
        };
        stop_child(child);
    }

    /// Starts node `index` again (same ports, same store) and waits until the cluster reports healthy.
    pub fn restart(&mut self, index: usize) {
        self.stop(index);
        self.spawn(index);
        self.wait_healthy();
    }

    fn spawn(&mut self, index: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(_, node)| format!("nats://127.0.0.1:{}", node.cluster_port))
            .collect();
        let node = &mut self.nodes[index];
        assert!(
            node.child.is_none(),
            "node {} is already running",
            node.name
        );
        let log = open_log(&node.log_path());
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &node.port.to_string()])
            .args(["-m", &node.monitor_port.to_string()])
            .args(["--server_name", &node.name])
            .args(["--cluster_name", &self.cluster_name])
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.cluster_port),
            ])
            .args(["--routes", &routes.join(",")])
            .args(["-js", "-sd"])
            .arg(&node.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", self.binary.display()));
        node.child = Some(child);
    }

    /// Waits until every running node answers 200 on its monitoring `/healthz` (JetStream ready); panics when
    /// a node exits meanwhile.
    fn wait_healthy(&mut self) {
        if let Err(why) = self.try_wait_healthy() {
            panic!("{why}");
        }
    }

    /// [`wait_healthy`](Self::wait_healthy), but a node that exits is an `Err` with its log's tail.
    fn try_wait_healthy(&mut self) -> Result<(), String> {
        let binary = self.binary.display().to_string();
        let nodes = &mut self.nodes;
        let mut exited: Option<String> = None;
        wait_until(
            "every nats-server of the cluster to answer 200 on /healthz",
            CLUSTER_READY_DEADLINE,
            || {
                let mut all = true;
                for node in nodes.iter_mut() {
                    let Some(child) = node.child.as_mut() else {
                        continue;
                    };
                    if let Ok(Some(status)) = child.try_wait() {
                        exited = Some(format!(
                            "{binary} {} exited ({status}), log:\n{}",
                            node.name,
                            log_tail(&node.log_path(), LOG_TAIL_LINES)
                        ));
                        return true;
                    }
                    all &= healthz(node.monitor_port);
                }
                all
            },
        );
        match exited {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

/// True when the monitoring endpoint answers `/healthz` with 200.
fn healthz(monitor_port: u16) -> bool {
    let url = format!("http://127.0.0.1:{monitor_port}/healthz");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    agent
        .get(&url)
        .call()
        .is_ok_and(|resp| resp.status() == 200)
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if panicking {
                eprintln!(
                    "---- nats-server {} log (tail, {}) ----\n{}",
                    node.name,
                    node.log_path().display(),
                    log_tail(&node.log_path(), LOG_TAIL_LINES)
                );
                if keep_failed_dirs() {
                    continue; // OSAPI_TEST_KEEP: keep it for a post-mortem
                }
            }
            let _ = std::fs::remove_dir_all(&node.dir);
        }
    }
}
