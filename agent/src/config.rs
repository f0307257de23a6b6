//! The agent's configuration: the raw settings from flags, environment and
//! `/etc/ipdc/agent.toml`, merged and validated once into [`AgentConfig`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipdc_common::mqtt::{BrokerAddr, MqttSettings};
use ipdc_common::protocol::validate_name;
use serde::Deserialize;

/// Where the packaged agent reads its configuration.
pub const DEFAULT_CONFIG: &str = "/etc/ipdc/agent.toml";

/// Settings as given, each optional; see `ipdc-agent --help` for each key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub broker: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A file holding the password (keeps it out of the config and the process list).
    pub password_file: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub ipfs: Option<String>,
    pub cluster: Option<String>,
    pub name: Option<String>,
    pub slots: Option<u32>,
    pub memory_mb: Option<u64>,
    pub work_dir: Option<PathBuf>,
    pub python: Option<String>,
    pub heartbeat_secs: Option<u64>,
    pub max_task_secs: Option<u64>,
    pub max_task_memory_mb: Option<u64>,
    pub cluster_key: Option<PathBuf>,
}

/// The config file: the same keys as the flags.
#[derive(Debug, Default)]
pub struct ConfigFile {
    pub settings: Settings,
}

impl ConfigFile {
    /// Reads `path`. A missing file is an error only when it was asked for by name.
    pub fn load(path: &Path, required: bool) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Self::default()),
            Err(e) => return Err(format!("cannot read the config file {}: {e}", path.display())),
        };
        let mut settings: Settings =
            toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
        // Paths in the file are relative to the file's folder, not to
        // wherever the agent was started.
        let base = path.parent().unwrap_or(Path::new(""));
        let s = &mut settings;
        for p in [
            &mut s.password_file,
            &mut s.tls_ca,
            &mut s.tls_cert,
            &mut s.tls_key,
            &mut s.work_dir,
            &mut s.cluster_key,
        ] {
            if let Some(rel) = p.as_mut().filter(|p| p.is_relative()) {
                *rel = base.join(&*rel);
            }
        }
        Ok(ConfigFile { settings })
    }
}

impl Settings {
    /// These settings, with gaps filled from `other`.
    pub fn or(self, other: Settings) -> Settings {
        // The password and its file are one setting: the first source that
        // gives either gives both (a password in the file must not beat
        // --password-file).
        let (password, password_file) = if self.password.is_some() || self.password_file.is_some() {
            (self.password, self.password_file)
        } else {
            (other.password, other.password_file)
        };
        Settings {
            broker: self.broker.or(other.broker),
            username: self.username.or(other.username),
            password,
            password_file,
            tls_ca: self.tls_ca.or(other.tls_ca),
            tls_cert: self.tls_cert.or(other.tls_cert),
            tls_key: self.tls_key.or(other.tls_key),
            ipfs: self.ipfs.or(other.ipfs),
            cluster: self.cluster.or(other.cluster),
            name: self.name.or(other.name),
            slots: self.slots.or(other.slots),
            memory_mb: self.memory_mb.or(other.memory_mb),
            work_dir: self.work_dir.or(other.work_dir),
            python: self.python.or(other.python),
            heartbeat_secs: self.heartbeat_secs.or(other.heartbeat_secs),
            max_task_secs: self.max_task_secs.or(other.max_task_secs),
            max_task_memory_mb: self.max_task_memory_mb.or(other.max_task_memory_mb),
            cluster_key: self.cluster_key.or(other.cluster_key),
        }
    }

    /// Applies the defaults and validates.
    pub fn into_config(self) -> Result<AgentConfig, String> {
        let broker = BrokerAddr::parse(self.broker.as_deref().unwrap_or("mqtt://127.0.0.1:1883"))?;
        let ipfs = self.ipfs.unwrap_or_else(|| "http://127.0.0.1:5001".into());
        let name = self.name.unwrap_or_else(host_name);
        validate_name("agent name", &name)?;
        let mut c = AgentConfig::local_defaults(&name, broker, &ipfs);
        c.mqtt.username = self.username;
        c.mqtt.password = match (self.password, self.password_file) {
            (Some(p), _) => Some(p),
            (None, Some(f)) => Some(read_secret(&f)?),
            (None, None) => None,
        };
        c.mqtt.tls_ca = self.tls_ca;
        c.mqtt.tls_cert = self.tls_cert;
        c.mqtt.tls_key = self.tls_key;
        // Fail now, not at the first connection, on an unreadable certificate.
        c.mqtt.options("check", None)?;
        if let Some(cluster) = self.cluster {
            validate_name("cluster name", &cluster)?;
            c.cluster = cluster;
        }
        match self.slots {
            Some(0) => return Err("slots = 0: an agent needs at least one slot".into()),
            Some(s) => c.slots = s,
            None => {}
        }
        match self.memory_mb {
            Some(0) => return Err("memory_mb = 0: give tasks at least 1 MiB".into()),
            Some(m) => c.memory_mb = m,
            None => {}
        }
        if let Some(w) = self.work_dir {
            // Absolute: tasks run in folders below it, and name files in it.
            c.work_dir = std::path::absolute(&w).map_err(|e| format!("work_dir {}: {e}", w.display()))?;
        }
        c.python = match self.python.as_deref() {
            Some("none") | Some("") => None,
            Some(p) => Some(PathBuf::from(p)),
            None => c.python,
        };
        if let Some(h) = self.heartbeat_secs {
            c.heartbeat = Duration::from_secs(h.max(1));
        }
        if let Some(secs) = self.max_task_secs {
            c.max_task_secs = secs.max(1);
        }
        if let Some(mb) = self.max_task_memory_mb {
            c.max_task_memory_mb = mb.max(64);
        }
        if let Some(path) = self.cluster_key {
            c.cluster_key = Some(ipdc_common::auth::ClusterKey::load(&path)?);
        }
        Ok(c)
    }
}

/// Reads a one-line secret file (trailing newline removed).
pub fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => ipdc_common::auth::UNREADABLE_HINT,
            _ => "write the broker password there (one line), or set password_file to where it is",
        };
        format!("cannot read the password file {}: {e}; {hint}", path.display())
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String =
        raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
    if name.is_empty() { "agent".to_string() } else { name }
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
    /// The cluster key: without it the cluster is open to anyone on the broker.
    pub cluster_key: Option<ipdc_common::auth::ClusterKey>,
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
            cluster_key: None,
            warn_if_open: true,
            local_files: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "broker = \"mqtt://hub:1884\"\nslots = 3\npython = \"none\"\nname = \"pi-7\"\n",
        )
        .unwrap();
        let file = ConfigFile::load(&path, true).unwrap();
        let flags = Settings { slots: Some(2), ..Default::default() };
        let c = flags.or(file.settings).into_config().unwrap();
        assert_eq!((c.mqtt.broker.host.as_str(), c.mqtt.broker.port, c.slots), ("hub", 1884, 2));
        assert_eq!(c.python, None);
        assert_eq!(c.name, "pi-7");
        assert_eq!(c.memory_mb, 256);
    }

    #[test]
    fn a_missing_default_file_is_fine_but_a_named_one_is_not() {
        let missing = Path::new("/nonexistent/agent.toml");
        assert!(ConfigFile::load(missing, false).is_ok());
        assert!(ConfigFile::load(missing, true).unwrap_err().contains("/nonexistent/agent.toml"));
    }

    #[test]
    fn paths_in_the_file_are_relative_to_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "cluster_key = \"cluster.key\"\nwork_dir = \"work\"\npython = \"python3\"\ntls_ca = \"/etc/ca.pem\"\n")
            .unwrap();
        let s = ConfigFile::load(&path, true).unwrap().settings;
        assert_eq!(s.cluster_key, Some(dir.path().join("cluster.key")));
        assert_eq!(s.work_dir, Some(dir.path().join("work")));
        // A relative one from a flag (or a file named by a relative path) is
        // made absolute against the current folder.
        let c = Settings { work_dir: Some("rel/work".into()), ..Default::default() }.into_config().unwrap();
        assert_eq!(c.work_dir, std::env::current_dir().unwrap().join("rel/work"));
        assert_eq!(s.tls_ca, Some(PathBuf::from("/etc/ca.pem")), "absolute paths stay");
        assert_eq!(s.python.as_deref(), Some("python3"), "a command, looked up in PATH, stays");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "brokr = \"x\"\n").unwrap();
        assert!(ConfigFile::load(&path, true).unwrap_err().contains("brokr"));
        let bad = Settings { name: Some("a/b".into()), ..Default::default() };
        assert!(bad.into_config().unwrap_err().contains("agent name"));
        let bad = Settings { slots: Some(0), ..Default::default() };
        assert!(bad.into_config().unwrap_err().contains("slots"));
    }

    #[test]
    fn a_password_file_flag_beats_a_password_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "username = \"board\"\npassword = \"from-the-file\"\n").unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "from-the-flag\n").unwrap();
        let file = ConfigFile::load(&path, true).unwrap();
        let flags = Settings { password_file: Some(secret), ..Default::default() };
        let c = flags.or(file.settings).into_config().unwrap();
        assert_eq!(c.mqtt.password.as_deref(), Some("from-the-flag"));
        // Without a flag the file's password stands.
        let c =
            Settings::default().or(ConfigFile::load(&path, true).unwrap().settings).into_config().unwrap();
        assert_eq!(c.mqtt.password.as_deref(), Some("from-the-file"));
    }
}
