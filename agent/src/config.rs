//! The agent's configuration: the raw settings from flags, environment and
//! `/etc/ipdc/agent.toml`, merged and validated once into [`AgentConfig`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use ipdc_common::auth::{Credentials, Role};
use ipdc_common::mqtt::{BrokerAddr, MqttSettings};
use ipdc_common::protocol::validate_name;
use ipdc_common::settings::{self, ClusterSettings, OwnKeys};
use serde::Deserialize;

/// Where the packaged agent reads its configuration.
pub const DEFAULT_CONFIG: &str = "/etc/ipdc/agent.toml";

/// The agent's own settings as given, each optional (the shared ones are
/// [`ClusterSettings`]); see `ipdc-agent --help` for each key.
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// This agent's name in the cluster [default: the host name].
    #[arg(long, env = "IPDC_AGENT_NAME")]
    pub name: Option<String>,
    /// Tasks run at once [default: the number of cores].
    #[arg(long, env = "IPDC_SLOTS")]
    pub slots: Option<u32>,
    /// Most memory one task's buffers may use, MiB [default: 256].
    #[arg(long, env = "IPDC_MEMORY_MB")]
    pub memory_mb: Option<u64>,
    /// Folder for the tasks' temporary files [default: $TMPDIR/ipdc-agent/<name>].
    #[arg(long, env = "IPDC_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Python interpreter for Map.py/Reduce.py, or "none" [default: python3].
    #[arg(long, env = "IPDC_PYTHON")]
    pub python: Option<String>,
    /// Seconds between status reports [default: 5].
    #[arg(long, env = "IPDC_HEARTBEAT_SECS")]
    pub heartbeat_secs: Option<u64>,
    /// The most wall-clock seconds a job may give one task [default: 21600].
    #[arg(long, env = "IPDC_MAX_TASK_SECS")]
    pub max_task_secs: Option<u64>,
    /// The most memory a job may give one task's user code, MiB [default: 2048].
    #[arg(long, env = "IPDC_MAX_TASK_MEMORY_MB")]
    pub max_task_memory_mb: Option<u64>,
    /// Take no tasks while the work dir's disk has less free than this, MiB; 0: no floor [default: 512].
    #[arg(long, env = "IPDC_MIN_FREE_DISK_MB")]
    pub min_free_disk_mb: Option<u64>,
    /// Its IPFS node's swarm.key, whose fingerprint the status shows (which private network the node is in) [default: $IPFS_PATH/swarm.key, else ~/.ipfs/swarm.key].
    #[arg(long, env = "IPDC_SWARM_KEY")]
    pub swarm_key: Option<PathBuf>,
}

impl OwnKeys for AgentSettings {
    fn resolve_relative(&mut self, base: &Path) {
        settings::resolve(&mut self.work_dir, base);
        settings::resolve(&mut self.swarm_key, base);
    }
}

impl AgentSettings {
    /// These settings, with gaps filled from `other`.
    fn or(self, other: AgentSettings) -> AgentSettings {
        AgentSettings {
            name: self.name.or(other.name),
            slots: self.slots.or(other.slots),
            memory_mb: self.memory_mb.or(other.memory_mb),
            work_dir: self.work_dir.or(other.work_dir),
            python: self.python.or(other.python),
            heartbeat_secs: self.heartbeat_secs.or(other.heartbeat_secs),
            max_task_secs: self.max_task_secs.or(other.max_task_secs),
            max_task_memory_mb: self.max_task_memory_mb.or(other.max_task_memory_mb),
            min_free_disk_mb: self.min_free_disk_mb.or(other.min_free_disk_mb),
            swarm_key: self.swarm_key.or(other.swarm_key),
        }
    }
}

/// Every setting of an agent, as given by one source.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub cluster: ClusterSettings,
    pub agent: AgentSettings,
}

impl Settings {
    /// Reads the config file at `path`: the same keys as the flags. A missing
    /// file is an error only when it was asked for by name.
    pub fn load(path: &Path, required: bool) -> Result<Settings, String> {
        let (cluster, agent) = settings::load_config_file(path, required)?;
        Ok(Settings { cluster, agent })
    }

    /// These settings, with gaps filled from `other`.
    pub fn or(self, other: Settings) -> Settings {
        Settings { cluster: self.cluster.or(other.cluster), agent: self.agent.or(other.agent) }
    }

    /// Applies the defaults and validates.
    pub fn into_config(self) -> Result<AgentConfig, String> {
        let (shared, own) = (self.cluster, self.agent);
        let ipfs = shared.ipfs_api();
        let name = own.name.unwrap_or_else(|| ipdc_common::settings::host_name("agent"));
        validate_name("agent name", &name)?;
        let mqtt = shared.mqtt()?;
        let mut c = AgentConfig::local_defaults(&name, mqtt.broker.clone(), &ipfs);
        c.mqtt = mqtt;
        c.cluster = shared.cluster_name()?;
        match own.slots {
            Some(0) => return Err("slots = 0: an agent needs at least one slot".into()),
            Some(s) => c.slots = s,
            None => {}
        }
        match own.memory_mb {
            Some(0) => return Err("memory_mb = 0: give tasks at least 1 MiB".into()),
            Some(m) => c.memory_mb = m,
            None => {}
        }
        if let Some(w) = own.work_dir {
            // Absolute: tasks run in folders below it, and name files in it.
            c.work_dir = std::path::absolute(&w).map_err(|e| format!("work_dir {}: {e}", w.display()))?;
        }
        c.python = match own.python.as_deref() {
            Some("none") | Some("") => None,
            Some(p) => Some(PathBuf::from(p)),
            None => c.python,
        };
        if let Some(h) = own.heartbeat_secs {
            c.heartbeat = Duration::from_secs(h.max(1));
        }
        if let Some(secs) = own.max_task_secs {
            c.max_task_secs = secs.max(1);
        }
        if let Some(mb) = own.max_task_memory_mb {
            c.max_task_memory_mb = mb.max(64);
        }
        if let Some(mb) = own.min_free_disk_mb {
            c.min_free_disk_mb = mb;
        }
        c.swarm_key = own.swarm_key.unwrap_or_else(crate::swarm_key::default_path);
        c.credentials = shared.credentials()?;
        if let Some(creds) = &mut c.credentials {
            creds.check_own_key(Role::Agent, Some(&c.name))?;
        }
        Ok(c)
    }
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Unique name of this agent in the cluster (topic-safe).
    pub name: String,
    pub cluster: String,
    /// Broker address, credentials and TLS.
    pub mqtt: MqttSettings,
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
    /// Test hook: every task sleeps this long before it starts (a slow board).
    pub test_task_delay: Duration,
    /// The most a job may set as a task's wall-clock limit, seconds.
    pub max_task_secs: u64,
    /// The most a job may set as a task's memory limit, MiB.
    pub max_task_memory_mb: u64,
    /// With less free space than this in the work dir (MiB), the agent's
    /// status says so and submitters give it no tasks; 0: no floor.
    pub min_free_disk_mb: u64,
    /// Its IPFS node's swarm.key (absent: the public network).
    pub swarm_key: PathBuf,
    /// This agent's key and the cluster's trust file: without them the
    /// cluster is open to anyone on the broker.
    pub credentials: Option<Credentials>,
    /// Warn at start when there is no cluster key (not for `--local`'s
    /// in-process agents on a loopback broker).
    pub warn_if_open: bool,
    /// The IPFS node's files when it runs in this process (`--local`): map
    /// tasks read their splits from them directly. Never set from a file.
    pub local_files: Option<std::sync::Arc<dyn ipdc_common::ipfs::LocalFiles>>,
}

impl AgentConfig {
    /// Defaults for an agent on this machine: one slot per core.
    pub fn local_defaults(name: &str, broker: BrokerAddr, ipfs: &str) -> Self {
        AgentConfig {
            name: name.to_string(),
            cluster: "default".to_string(),
            mqtt: MqttSettings::plain(broker),
            ipfs: ipfs.to_string(),
            slots: std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1),
            memory_mb: 256,
            work_dir: std::env::temp_dir().join("ipdc-agent").join(name),
            python: Some(PathBuf::from("python3")),
            heartbeat: Duration::from_secs(5),
            test_task_delay: Duration::ZERO,
            max_task_secs: 6 * 3600,
            max_task_memory_mb: 2048,
            min_free_disk_mb: 512,
            swarm_key: crate::swarm_key::default_path(),
            credentials: None,
            warn_if_open: true,
            local_files: None,
        }
    }
}

/// Test hook only, never for a real agent: when on, every task this process
/// finishes reports a wrong (but well-formed) output CID, so end-to-end
/// tests can check that the submitter's `verify` catches a lying agent (see
/// `task::lie_for_tests`). Only the hidden `--test-lie` flag of the
/// `ipdc-agent` binary (`IPDC_TEST_LIE=1`) turns it on; no config file key
/// and no `--local` agent does. A process-wide switch, not an
/// [`AgentConfig`] field, to keep the hook out of the agent's wiring.
static TEST_LIE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the [`TEST_LIE`] test hook on for this process.
pub fn set_test_lie() {
    TEST_LIE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the [`TEST_LIE`] test hook is on.
pub fn test_lie() -> bool {
    TEST_LIE.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(agent: AgentSettings) -> Settings {
        Settings { agent, ..Default::default() }
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "broker = \"mqtt://hub:1884\"\nslots = 3\npython = \"none\"\nname = \"pi-7\"\n",
        )
        .unwrap();
        let file = Settings::load(&path, true).unwrap();
        let flags = own(AgentSettings { slots: Some(2), ..Default::default() });
        let c = flags.or(file).into_config().unwrap();
        assert_eq!((c.mqtt.broker.host.as_str(), c.mqtt.broker.port, c.slots), ("hub", 1884, 2));
        assert_eq!(c.python, None);
        assert_eq!(c.name, "pi-7");
        assert_eq!(c.memory_mb, 256);
        assert_eq!(c.min_free_disk_mb, 512, "the default floor");
        std::fs::write(&path, "min_free_disk_mb = 2048\n").unwrap();
        let file = Settings::load(&path, true).unwrap();
        assert_eq!(Settings::default().or(file.clone()).into_config().unwrap().min_free_disk_mb, 2048);
        let flags = own(AgentSettings { min_free_disk_mb: Some(0), ..Default::default() });
        assert_eq!(flags.or(file).into_config().unwrap().min_free_disk_mb, 0, "0 turns the floor off");
    }

    #[test]
    fn a_missing_default_file_is_fine_but_a_named_one_is_not() {
        let missing = Path::new("/nonexistent/agent.toml");
        assert!(Settings::load(missing, false).is_ok());
        assert!(Settings::load(missing, true).unwrap_err().contains("/nonexistent/agent.toml"));
    }

    #[test]
    fn paths_in_the_file_are_relative_to_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "node_key = \"node.key\"\nwork_dir = \"work\"\npython = \"python3\"\ntls_ca = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        let s = Settings::load(&path, true).unwrap();
        assert_eq!(s.cluster.node_key, Some(dir.path().join("node.key")));
        assert_eq!(s.agent.work_dir, Some(dir.path().join("work")));
        // A relative one from a flag (or a file named by a relative path) is
        // made absolute against the current folder.
        let c = own(AgentSettings { work_dir: Some("rel/work".into()), ..Default::default() })
            .into_config()
            .unwrap();
        assert_eq!(c.work_dir, std::env::current_dir().unwrap().join("rel/work"));
        assert_eq!(s.cluster.tls_ca, Some(PathBuf::from("/etc/ca.pem")), "absolute paths stay");
        assert_eq!(s.agent.python.as_deref(), Some("python3"), "a command, looked up in PATH, stays");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "brokr = \"x\"\n").unwrap();
        assert!(Settings::load(&path, true).unwrap_err().contains("brokr"));
        let bad = own(AgentSettings { name: Some("a/b".into()), ..Default::default() });
        assert!(bad.into_config().unwrap_err().contains("agent name"));
        let bad = own(AgentSettings { slots: Some(0), ..Default::default() });
        assert!(bad.into_config().unwrap_err().contains("slots"));
    }

    #[test]
    fn a_password_file_flag_beats_a_password_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "username = \"board\"\npassword = \"from-the-file\"\n").unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "from-the-flag\n").unwrap();
        let file = Settings::load(&path, true).unwrap();
        let flags = Settings {
            cluster: ClusterSettings { password_file: Some(secret), ..Default::default() },
            ..Default::default()
        };
        let c = flags.or(file).into_config().unwrap();
        assert_eq!(c.mqtt.password.as_deref(), Some("from-the-flag"));
        // Without a flag the file's password stands.
        let c = Settings::default().or(Settings::load(&path, true).unwrap()).into_config().unwrap();
        assert_eq!(c.mqtt.password.as_deref(), Some("from-the-file"));
    }
}
