//! Where a job runs, decided once (in `main.rs`): a cluster of boards
//! reached through a [`Connection`], or `--local N`, a broker, a store and
//! N agents inside this process. Every question whose answer depends on
//! which one it is (can the job run there, how is its input added, when
//! have all the agents reported) is answered here.

use std::path::PathBuf;

use ipdc_common::auth::Credentials;
use ipdc_common::mqtt::MqttSettings;

use crate::job::JobSpec;
use crate::local::LocalCluster;
use crate::store::LocalStore;

/// How to reach a cluster.
#[derive(Debug, Clone)]
pub struct Connection {
    pub mqtt: MqttSettings,
    /// This submitter's key and the cluster's trust file: what it sends is
    /// signed, and only what the listed keys signed is taken. None: an open cluster.
    pub credentials: Option<Credentials>,
    pub ipfs: String,
    pub cluster: String,
}

pub enum Cluster {
    Remote(Connection),
    /// Exactly `agents` agents of this process, on a broker and store of its own.
    Local {
        conn: Connection,
        agents: usize,
        running: Box<LocalCluster>,
    },
}

impl Cluster {
    /// Starts `--local n` for this job, after refusing what it cannot run.
    pub async fn start_local(n: usize, spec: &JobSpec) -> Result<Cluster, String> {
        if n == 0 {
            return Err("--local 0: give the number of local agents to start, e.g. --local 4".into());
        }
        if let Some(k) = spec.workers.filter(|&k| k > n) {
            return Err(format!(
                "the job asks for {k} workers but --local {n} starts {n} agents: lower --workers or raise --local"
            ));
        }
        // The embedded broker serves this job alone: the default topics do.
        let cluster = "default".to_string();
        // A native job needs no Python (unless ipdc.toml says it does): its
        // agents skip finding one.
        let python = (spec.force_native.is_none() || spec.needs_python).then(|| PathBuf::from("python3"));
        let running = LocalCluster::start(n, &cluster, python).await?;
        let conn = Connection {
            credentials: None, // in-process agents on loopback
            mqtt: MqttSettings::plain(running.broker.clone()),
            ipfs: running.ipfs.clone(),
            cluster,
        };
        Ok(Cluster::Local { conn, agents: n, running: Box::new(running) })
    }

    pub fn connection(&self) -> &Connection {
        match self {
            Cluster::Remote(conn) | Cluster::Local { conn, .. } => conn,
        }
    }

    /// Which store a task cache entry's outputs are in: a cluster's
    /// broker, name and IPFS API, or the kept `--local` store (None: a
    /// temporary `--local` store, whose outputs go with this run).
    pub fn cache_scope(&self) -> Option<String> {
        match self {
            Cluster::Remote(c) => Some(format!("{} {} {}", c.mqtt.broker, c.cluster, c.ipfs)),
            Cluster::Local { running, .. } => running.keeps_store().then(|| "local".to_string()),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Cluster::Local { .. })
    }

    /// The store the agents read from, when it runs in this process: the
    /// input is then added by reference (hashed from disk, not copied).
    pub fn local_store(&self) -> Option<LocalStore> {
        match self {
            Cluster::Local { running, .. } => Some(running.store()),
            Cluster::Remote(_) => None,
        }
    }

    /// The number of agents when the cluster is exactly the agents of this
    /// process: a job may pick as soon as all have reported.
    pub fn own_agents(&self) -> Option<usize> {
        match self {
            Cluster::Local { agents, .. } => Some(*agents),
            Cluster::Remote(_) => None,
        }
    }

    /// Stops what this process started (the local agents cancel their tasks).
    pub async fn stop(self) {
        if let Cluster::Local { running, .. } = self {
            running.stop().await;
        }
    }
}
