//! The settings every program of a cluster has ([`ClusterSettings`]: the
//! broker and how to log in to it, the IPFS API, the cluster's name and
//! key), read the same way by agents and submitters: flags, then the
//! environment (both through clap), then a TOML config file with the same
//! keys ([`load_config_file`]), then the defaults. They are validated once,
//! here, into what the programs use.

use std::path::{Path, PathBuf};

use clap::Args;
use clap::parser::ValueSource;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{Credentials, NodeKey, TrustSource};
use crate::mqtt::{BrokerAddr, MqttSettings};
use crate::protocol::validate_name;

pub const DEFAULT_BROKER: &str = "mqtt://127.0.0.1:1883";
pub const DEFAULT_IPFS: &str = "http://127.0.0.1:5001";
pub const DEFAULT_CLUSTER: &str = "default";

/// Where the cluster is. Each is optional here; the defaults apply when
/// they are turned into what a program uses.
#[derive(Args, Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// MQTT broker, mqtt://HOST:PORT or mqtts://HOST:PORT [default: mqtt://127.0.0.1:1883].
    #[arg(long, env = "IPDC_BROKER")]
    pub broker: Option<String>,
    /// User name for the broker.
    #[arg(long, env = "IPDC_USERNAME")]
    pub username: Option<String>,
    /// Password for the broker (prefer --password-file: flags show in the process list).
    #[arg(long, env = "IPDC_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// File holding the broker password.
    #[arg(long, env = "IPDC_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the broker's TLS certificate.
    #[arg(long, env = "IPDC_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for brokers that require one.
    #[arg(long, env = "IPDC_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, env = "IPDC_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The IPFS node's kubo RPC API (an agent's own node; for a submitter, where it adds the input and fetches the result) [default: http://127.0.0.1:5001].
    #[arg(long, env = "IPDC_IPFS")]
    pub ipfs: Option<String>,
    /// Cluster name: topics live under ipdc/<cluster>/ [default: default].
    #[arg(long, env = "IPDC_CLUSTER")]
    pub cluster: Option<String>,
    /// This node's key file (`ipdc-submit keygen`): what it sends is signed with it. Goes with --trust.
    #[arg(long, env = "IPDC_NODE_KEY")]
    pub node_key: Option<PathBuf>,
    /// The cluster's trust file: the keys that may run jobs and report results; only messages they signed are taken. Goes with --node-key.
    #[arg(long, env = "IPDC_TRUST")]
    pub trust: Option<PathBuf>,
}

/// The keys of [`ClusterSettings`] in a config file.
const KEYS: [&str; 11] = [
    "broker",
    "username",
    "password",
    "password_file",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "ipfs",
    "cluster",
    "node_key",
    "trust",
];

impl ClusterSettings {
    /// These settings, with gaps filled from `other`. The password and its
    /// file are one setting: the first source that gives either gives both
    /// (a password in the file must not beat --password-file).
    pub fn or(self, other: ClusterSettings) -> ClusterSettings {
        let (password, password_file) = if self.password.is_some() || self.password_file.is_some() {
            (self.password, self.password_file)
        } else {
            (other.password, other.password_file)
        };
        ClusterSettings {
            broker: self.broker.or(other.broker),
            username: self.username.or(other.username),
            password,
            password_file,
            tls_ca: self.tls_ca.or(other.tls_ca),
            tls_cert: self.tls_cert.or(other.tls_cert),
            tls_key: self.tls_key.or(other.tls_key),
            ipfs: self.ipfs.or(other.ipfs),
            cluster: self.cluster.or(other.cluster),
            node_key: self.node_key.or(other.node_key),
            trust: self.trust.or(other.trust),
        }
    }

    /// Flags win over the environment also across the password and its file
    /// (clap takes both from either): a `--password-file` flag beats
    /// IPDC_PASSWORD. `matches`: the (sub)command these were parsed from.
    pub fn prefer_flags_over_env(&mut self, matches: &clap::ArgMatches) {
        if matches.value_source("password") == Some(ValueSource::EnvVariable)
            && matches.value_source("password_file") == Some(ValueSource::CommandLine)
        {
            self.password = None;
        }
    }

    /// Makes the file paths relative to `base` (a config file's folder).
    fn resolve_relative(&mut self, base: &Path) {
        for p in [
            &mut self.password_file,
            &mut self.tls_ca,
            &mut self.tls_cert,
            &mut self.tls_key,
            &mut self.node_key,
            &mut self.trust,
        ] {
            resolve(p, base);
        }
    }

    /// The broker settings, validated (the password file read, TLS files
    /// checked now rather than at the first connection).
    pub fn mqtt(&self) -> Result<MqttSettings, String> {
        let broker = BrokerAddr::parse(self.broker.as_deref().unwrap_or(DEFAULT_BROKER))?;
        let password = match (&self.password, &self.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(f)) => Some(read_secret(f)?),
            (None, None) => None,
        };
        let mqtt = MqttSettings {
            broker,
            username: self.username.clone(),
            password,
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        };
        mqtt.options("check", None)?;
        Ok(mqtt)
    }

    pub fn cluster_name(&self) -> Result<String, String> {
        let cluster = self.cluster.clone().unwrap_or_else(|| DEFAULT_CLUSTER.into());
        validate_name("cluster name", &cluster)?;
        Ok(cluster)
    }

    pub fn ipfs_api(&self) -> String {
        self.ipfs.clone().unwrap_or_else(|| DEFAULT_IPFS.into())
    }

    /// This node's key and the trust file, when they are set; None: an
    /// open cluster. One without the other is an error.
    pub fn credentials(&self) -> Result<Option<Credentials>, String> {
        match (&self.node_key, &self.trust) {
            (Some(key), Some(trust)) => {
                Ok(Some(Credentials { key: NodeKey::load(key)?, trust: TrustSource::load(trust)? }))
            }
            (None, None) => Ok(None),
            (Some(_), None) => Err("node_key is set but trust is not: a node needs both its key and the cluster's trust file (see `ipdc-submit keygen --cluster DIR`)".into()),
            (None, Some(_)) => Err("trust is set but node_key is not: a node needs both its key and the cluster's trust file (see `ipdc-submit keygen --cluster DIR`)".into()),
        }
    }
}

/// This machine's host name as a node name (only `A-Z a-z 0-9 - _ .`, not
/// starting with `.`), or `fallback` when nothing of it is left.
pub fn host_name(fallback: &str) -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String =
        raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
    let name = name.trim_start_matches('.');
    if name.is_empty() { fallback.to_string() } else { name.to_string() }
}

/// Makes `p` relative to `base` when it is a relative path.
pub fn resolve(p: &mut Option<PathBuf>, base: &Path) {
    if let Some(rel) = p.as_mut().filter(|p| p.is_relative()) {
        *rel = base.join(&*rel);
    }
}

/// Reads a one-line secret file (trailing newline removed).
pub fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => crate::auth::UNREADABLE_HINT,
            _ => "write the broker password there (one line), or set password_file to where it is",
        };
        format!("cannot read the password file {}: {e}; {hint}", path.display())
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// A program's own config-file keys beside the shared ones.
pub trait OwnKeys: DeserializeOwned + Default {
    /// Makes the file paths among them relative to `base` (the file's folder).
    fn resolve_relative(&mut self, _base: &Path) {}
}

/// No keys of its own (the submitter's file).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOwnKeys {}

impl OwnKeys for NoOwnKeys {}

/// Reads a TOML config file holding the shared keys and a program's own
/// (`T`, which should deny unknown fields, so a misspelt key is named).
/// A missing file is an error only when it was asked for by name (`required`).
/// Paths in it are relative to its folder, not to wherever the program runs.
pub fn load_config_file<T: OwnKeys>(path: &Path, required: bool) -> Result<(ClusterSettings, T), String> {
    let shown = path.display();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Default::default()),
        Err(e) => return Err(format!("cannot read the config file {shown}: {e}")),
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| format!("config file {shown}: {e}"))?;
    if table.contains_key("cluster_key") {
        return Err(format!(
            "config file {shown}: cluster_key is no longer used: each node has its own key now (node_key and trust); \
             make them with `ipdc-submit keygen --cluster DIR` (see docs/security.md)"
        ));
    }
    let (shared, own): (toml::Table, toml::Table) =
        table.into_iter().partition(|(k, _)| KEYS.contains(&k.as_str()));
    let mut settings: ClusterSettings =
        toml::Value::Table(shared).try_into().map_err(|e| format!("config file {shown}: {e}"))?;
    let mut own: T = toml::Value::Table(own)
        .try_into()
        .map_err(|e| format!("config file {shown}: {e} (or one of the cluster keys: {})", KEYS.join(", ")))?;
    let base = path.parent().unwrap_or(Path::new(""));
    settings.resolve_relative(base);
    own.resolve_relative(base);
    Ok((settings, own))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Own {
        slots: Option<u32>,
        work_dir: Option<PathBuf>,
    }
    impl OwnKeys for Own {
        fn resolve_relative(&mut self, base: &Path) {
            resolve(&mut self.work_dir, base);
        }
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_file_holds_the_shared_keys_and_the_programs_own() {
        let (dir, path) =
            file("broker = \"mqtt://hub:1884\"\nslots = 3\nnode_key = \"k\"\nwork_dir = \"w\"\n");
        let (s, own) = load_config_file::<Own>(&path, true).unwrap();
        assert_eq!(s.broker.as_deref(), Some("mqtt://hub:1884"));
        assert_eq!(own.slots, Some(3));
        assert_eq!(s.node_key, Some(dir.path().join("k")), "relative to the file's folder");
        assert_eq!(own.work_dir, Some(dir.path().join("w")));
        assert_eq!(s.mqtt().unwrap().broker.port, 1884);
    }

    #[test]
    fn misspelt_keys_and_bad_values_are_named() {
        let (_d, path) = file("borker = 1\n");
        let e = load_config_file::<Own>(&path, true).unwrap_err();
        assert!(e.contains("borker") && e.contains("x.toml"), "{e}");
        let (_d, path) = file("broker = 1\n");
        assert!(load_config_file::<NoOwnKeys>(&path, true).unwrap_err().contains("broker"));
        let (_d, path) = file("slots = 3\n");
        assert!(load_config_file::<NoOwnKeys>(&path, true).unwrap_err().contains("slots"));
        let bad = ClusterSettings { cluster: Some("a/b".into()), ..Default::default() };
        assert!(bad.cluster_name().unwrap_err().contains("cluster name"));
    }

    #[test]
    fn an_old_cluster_key_setting_says_what_replaced_it_and_a_key_needs_its_trust_file() {
        let (_d, path) = file("cluster_key = \"/etc/ipdc/cluster.key\"\n");
        let e = load_config_file::<NoOwnKeys>(&path, true).unwrap_err();
        assert!(e.contains("node_key and trust") && e.contains("keygen --cluster"), "{e}");
        let half = ClusterSettings { node_key: Some("/k".into()), ..Default::default() };
        assert!(half.credentials().unwrap_err().contains("trust is not"));
    }

    #[test]
    fn a_missing_default_file_is_fine_but_a_named_one_is_not() {
        let missing = Path::new("/nonexistent/x.toml");
        assert!(load_config_file::<NoOwnKeys>(missing, false).is_ok());
        assert!(load_config_file::<NoOwnKeys>(missing, true).unwrap_err().contains("/nonexistent/x.toml"));
    }

    #[test]
    fn the_password_and_its_file_come_from_one_source() {
        let flags = ClusterSettings { password_file: Some("/f".into()), ..Default::default() };
        let file =
            ClusterSettings { password: Some("p".into()), username: Some("u".into()), ..Default::default() };
        let s = flags.or(file.clone());
        assert_eq!(
            (s.password, s.password_file, s.username.as_deref()),
            (None, Some("/f".into()), Some("u"))
        );
        let s = ClusterSettings::default().or(file);
        assert_eq!(s.password.as_deref(), Some("p"));
    }
}
