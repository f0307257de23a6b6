//! `--local N`: a whole cluster inside this process — the embedded broker,
//! the embedded content store and N agents running the same code as the
//! `ipdc-agent` binary, all talking over loopback TCP as real ones would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipdc_agent::AgentConfig;
use ipdc_common::mqtt::BrokerAddr;
use tokio::sync::watch;

use crate::{broker, store};

/// What the kept `--local` store holds at most of earlier runs' objects.
pub const KEPT_STORE_BYTES: u64 = 2 << 30;

/// The most agents `--local` starts: past this it is a cluster's work.
const MAX_LOCAL_AGENTS: usize = 256;

/// Open files one local agent may hold at once: its MQTT connection (both
/// ends in this process), connections to the store, a runner's pipes, files
/// being read and written (about 8 measured mid-job), with room to spare.
const FILES_PER_AGENT: u64 = 16;

/// Refuses an `n` this process cannot run, before starting anything (past
/// the open-files limit, agents failed one by one with misleading errors).
fn check_capacity(n: usize) -> Result<(), String> {
    if n > MAX_LOCAL_AGENTS {
        return Err(format!(
            "--local {n}: at most {MAX_LOCAL_AGENTS} agents run in one process; \
             for more, run ipdc-agent on more machines (see \"Deploy a cluster\" in the README)"
        ));
    }
    let limit = raise_open_files_limit();
    let need = 64 + n as u64 * FILES_PER_AGENT;
    if need > limit {
        return Err(format!(
            "--local {n} needs up to {need} open files, but this process may open {limit}: \
             raise the limit (ulimit -n {need}) or start fewer agents"
        ));
    }
    Ok(())
}

/// Raises this process's soft limit on open files to its hard limit, as
/// servers do (the soft default, often 1024, or 256 on macOS, is for
/// programs that never need more). Returns the limit now in force.
fn raise_open_files_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return u64::MAX; // unknown: let the agents try
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    lim.rlim_cur
}

pub struct LocalCluster {
    pub broker: BrokerAddr,
    pub ipfs: String,
    store: Option<store::StoreHandle>,
    stop: watch::Sender<bool>,
    agents: Vec<tokio::task::JoinHandle<()>>,
    /// The kept store's lock, while this run uses it.
    _kept: Option<crate::cache::KeptStore>,
    _dir: tempfile::TempDir,
}

impl LocalCluster {
    /// Starts the broker, the store and `n` agents (one slot each: they share
    /// this machine's cores). `python`: None hides Python from the agents.
    pub async fn start(n: usize, cluster: &str, python: Option<PathBuf>) -> Result<Self, String> {
        check_capacity(n)?;
        let dir = tempfile::Builder::new()
            .prefix("ipdc-local-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary folder: {e}"))?;
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
        let mqtt = broker::start(loopback).map_err(|e| format!("embedded broker: {e}"))?;
        let listener =
            tokio::net::TcpListener::bind(loopback).await.map_err(|e| format!("embedded store: {e}"))?;
        // The kept store when no other run holds it (synced: it outlives the
        // process), else one that goes with the process. The submitter adds
        // the input by reference in-process (`LocalStore`): no HTTP client
        // needs `nocopy`.
        let kept = match crate::cache::lock_kept_store() {
            Ok(Some(kept)) => Some(kept),
            Ok(None) => {
                eprintln!("note: another --local run is using the kept store: this run's store is temporary");
                None
            }
            Err(e) => {
                eprintln!("note: {e}: this run's store is temporary");
                None
            }
        };
        let (store_dir, durability) = match &kept {
            Some(k) => (k.dir.clone(), store::Durability::Durable),
            None => (dir.path().join("store"), store::Durability::Temporary),
        };
        let store = store::serve(listener, store_dir, durability, None)
            .await
            .map_err(|e| format!("embedded store: {e}"))?;
        // A bounded cache: earlier runs' objects (map outputs, results) go
        // oldest first; what this run's code and input need is added again.
        if kept.is_some() {
            store
                .local()
                .collect_oldest(KEPT_STORE_BYTES)
                .await
                .map_err(|e| format!("embedded store: {e}"))?;
        }
        let broker = BrokerAddr { host: mqtt.ip().to_string(), port: mqtt.port(), tls: false };
        let ipfs = store.url();
        let (stop, stop_rx) = watch::channel(false);
        let mut agents = Vec::new();
        for i in 1..=n {
            let name = format!("local-{i}");
            let mut config = AgentConfig::local_defaults(&name, broker.clone(), &ipfs);
            config.cluster = cluster.to_string();
            config.slots = 1;
            config.work_dir = dir.path().join("agents").join(&name);
            config.python = python.clone();
            config.heartbeat = Duration::from_secs(2);
            config.warn_if_open = false; // in-process, on a loopback broker of its own
            config.local_files = Some(Arc::new(store.local()));
            let mut rx = stop_rx.clone();
            agents.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                if let Err(e) = ipdc_agent::run(config, shutdown).await {
                    log::error!("local agent {name}: {e}");
                }
            }));
        }
        Ok(LocalCluster { broker, ipfs, store: Some(store), stop, agents, _kept: kept, _dir: dir })
    }

    /// Whether its store is the kept one (not a temporary one: another run held it).
    pub fn keeps_store(&self) -> bool {
        self._kept.is_some()
    }

    /// The in-process side of the embedded store.
    pub fn store(&self) -> store::LocalStore {
        self.store.as_ref().expect("running").local()
    }

    /// Stops the agents and the store (the broker thread ends with the process).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for a in self.agents.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(3), a).await;
        }
        if let Some(s) = self.store.take() {
            s.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_cluster_too_big_for_one_process_is_refused_up_front() {
        let e = check_capacity(MAX_LOCAL_AGENTS + 1).unwrap_err();
        assert!(e.starts_with("--local 257: at most 256 agents run in one process"), "{e}");
        check_capacity(2).unwrap();
        // The soft limit was raised to the hard one.
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }
}
