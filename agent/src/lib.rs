//! `ipdc-agent`: joins a cluster over MQTT, says what it can do, runs the map
//! and reduce tasks it is given, and moves data only through its IPFS node.
//!
//! - [`config`]: flags, environment and config file, validated.
//! - [`check`]: `--check`, the one-screen diagnosis.
//! - [`status`]: the retained status (load, memory, Python) it publishes.
//! - [`state`]: the agent as a pure state machine (messages in, effects out),
//!   keeping its attempts in one table ([`attempts`]).
//! - [`service`]: the event loop around it, which does the I/O.
//! - [`task`]: one attempt: fetch, execute, add outputs.
//! - `workdir` and `sweep`: the work dir, held by one agent, and the sweep
//!   of what jobs leave in it.
//!
//! [`run`] sets these up and runs the loop; the `ipdc-agent` binary and the
//! submitter's `--local` mode both call it.

pub mod attempts;
pub mod check;
pub mod config;
mod modules;
pub mod service;
mod side_cache;
pub mod state;
pub mod status;
pub mod swarm_key;
mod sweep;
pub mod task;
mod workdir;

use std::future::Future;
use std::sync::Arc;

use ipdc_common::ipfs::IpfsClient;
use ipdc_common::mqtt;
use ipdc_common::protocol::{IpfsHealth, Wire, validate_name};
use log::{info, warn};

pub use config::AgentConfig;
use service::Service;
use status::FixedFacts;
use task::TaskContext;

/// The agent's own version, reported in its status.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Version and build (commit, target, profile), for `--version`.
pub const BUILD: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("IPDC_BUILD_INFO"), ")");

/// Runs the agent until `shutdown` completes. Broker and IPFS outages are
/// waited out (with backoff), never fatal; only a bad configuration is.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    validate_name("agent name", &config.name)?;
    validate_name("cluster name", &config.cluster)?;
    // A work dir no task could use would fail every task given to us.
    let work_dir = workdir::claim(&config.work_dir)?;
    // What jobs of an earlier run left beside their folders (see sweep.rs).
    sweep::at_start(&config.work_dir);
    let ipfs = IpfsClient::new(&config.ipfs).map_err(|e| e.to_string())?;
    let python = match config.python.clone() {
        Some(p) => detect_python(p).await,
        None => None,
    };
    if config.credentials.is_none() && config.warn_if_open {
        warn!(
            "no keys: this cluster is open, anyone who can publish to the broker can make this agent run code (set node_key and trust; see `ipdc-submit keygen`)"
        );
    }
    let wire = Wire::new(&config.cluster, config.credentials.clone());
    // The Last Will is set, sealed afresh, before every connection (the service does it).
    let options = config.mqtt.options(&format!("ipdc-agent-{}", config.name), None)?;
    let (client, eventloop) = mqtt::client(options);

    let fixed = FixedFacts {
        name: config.name.clone(),
        version: VERSION.to_string(),
        slots: config.slots.max(1),
        python: python.as_ref().map(|(_, v)| v.clone()),
        memory_mb: config.memory_mb,
        heartbeat_ms: config.heartbeat.as_millis() as u64,
        ipfs: IpfsHealth::not_checked(),
        session: new_session(),
        epoch: 0,
        work_dir: config.work_dir.clone(),
        min_free_disk_mb: config.min_free_disk_mb,
        private_swarm: match swarm_key::fingerprint(&config.swarm_key) {
            Ok(f) => f,
            Err(e) => {
                warn!("{e}; the status says no private network");
                None
            }
        },
    };
    let ctx = Arc::new(TaskContext {
        agent: config.name.clone(),
        ipfs: ipfs.clone(),
        work_dir: config.work_dir.clone(),
        python: python.map(|(p, _)| p),
        max_memory_mb: config.memory_mb,
        delay: config.test_task_delay,
        max_task_secs: config.max_task_secs,
        max_task_memory_mb: config.max_task_memory_mb,
        local_files: config.local_files.clone(),
        side_files: side_cache::SideCache::new(&config.work_dir),
    });
    info!(
        "agent {} starting: cluster {}, broker {}, IPFS {}, {} slots, Python {}",
        config.name,
        config.cluster,
        config.mqtt.broker,
        config.ipfs,
        fixed.slots,
        fixed.python.as_deref().unwrap_or("none")
    );
    let (service, done_rx) =
        Service::new(wire, client, fixed, ctx, work_dir, ipfs, config.heartbeat, config.mqtt.broker.clone());
    service.run(eventloop, done_rx, shutdown).await;
    Ok(())
}

/// A random id for this run of the agent (see `AgentStatus::session`).
fn new_session() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS has a random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The interpreter at `p` and its version, or None (with a warning) when it
/// is missing or older than 3.7.
async fn detect_python(p: std::path::PathBuf) -> Option<(std::path::PathBuf, String)> {
    let probe = p.clone();
    match tokio::task::spawn_blocking(move || ipdc_common::python::detect(&probe)).await {
        Ok(Some((exe, v))) => {
            if exe != p {
                info!("Python {} is {} {v}", p.display(), exe.display());
            }
            Some((exe, v))
        }
        _ => {
            warn!("no usable Python at {} (needs 3.7+): running without Python", p.display());
            None
        }
    }
}
