//! The agent's validated configuration. `main.rs` turns flags and
//! environment variables into this once; everything else takes it as given.

use std::path::PathBuf;
use std::time::Duration;

use ipdc_common::mqtt::BrokerAddr;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Unique name of this agent in the cluster (topic-safe).
    pub name: String,
    pub cluster: String,
    pub broker: BrokerAddr,
    /// The kubo RPC API of the IPFS node beside this agent.
    pub ipfs: String,
    /// Tasks run at once.
    pub slots: u32,
    /// Most memory one task's sort/spill buffers may take, MiB.
    pub memory_mb: u64,
    /// Where attempts keep their temporary folders.
    pub work_dir: PathBuf,
    /// The Python interpreter, or None to run without Python.
    pub python: Option<PathBuf>,
    pub heartbeat: Duration,
}

impl AgentConfig {
    /// Defaults for an agent on this machine: named after the host, one slot per core.
    pub fn local_defaults(name: &str, broker: BrokerAddr, ipfs: &str) -> Self {
        AgentConfig {
            name: name.to_string(),
            cluster: "default".to_string(),
            broker,
            ipfs: ipfs.to_string(),
            slots: std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1),
            memory_mb: 256,
            work_dir: std::env::temp_dir().join("ipdc-agent").join(name),
            python: Some(PathBuf::from("python3")),
            heartbeat: Duration::from_secs(5),
        }
    }
}
