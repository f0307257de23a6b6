//! The submitter's cluster settings: flags and environment (`ClusterArgs`),
//! then `~/.config/ipdc/submit.toml`, then defaults — validated once into a
//! [`Connection`], so a user sets the cluster up once.

use std::path::{Path, PathBuf};

use ipdc_common::mqtt::{BrokerAddr, MqttSettings};
use ipdc_common::protocol::validate_name;
use serde::Deserialize;

use crate::cli::ClusterArgs;
use crate::run::Connection;

/// `submit.toml`: the same keys as the flags, with `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitFile {
    broker: Option<String>,
    ipfs: Option<String>,
    cluster: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    cluster_key: Option<PathBuf>,
}

/// The default config file, if HOME is known.
pub fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("ipdc").join("submit.toml"))
}

fn load_file(args: &ClusterArgs) -> Result<SubmitFile, String> {
    let (path, required) = match &args.config {
        Some(p) => (p.clone(), true),
        None => match default_config_path() {
            Some(p) => (p, false),
            None => return Ok(SubmitFile::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(SubmitFile::default()),
        Err(e) => return Err(format!("cannot read the config file {}: {e}", path.display())),
    };
    let mut file: SubmitFile =
        toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
    // Paths in the file are relative to the file's folder, not to wherever
    // the command runs.
    let base = path.parent().unwrap_or(Path::new(""));
    for p in [
        &mut file.password_file,
        &mut file.tls_ca,
        &mut file.tls_cert,
        &mut file.tls_key,
        &mut file.cluster_key,
    ] {
        if let Some(rel) = p.as_mut().filter(|p| p.is_relative()) {
            *rel = base.join(&*rel);
        }
    }
    Ok(file)
}

/// Flags/env over the file over defaults.
pub fn connection(args: &ClusterArgs) -> Result<Connection, String> {
    let file = load_file(args)?;
    let cluster = args.cluster.clone().or(file.cluster).unwrap_or_else(|| "default".into());
    validate_name("cluster name", &cluster)?;
    let broker = BrokerAddr::parse(
        args.broker.as_deref().or(file.broker.as_deref()).unwrap_or("mqtt://127.0.0.1:1883"),
    )?;
    // The password and its file are one setting: flags/env give both or
    // neither (a password in the file must not beat --password-file).
    let secret = if args.password.is_some() || args.password_file.is_some() {
        (args.password.clone(), args.password_file.clone())
    } else {
        (file.password, file.password_file)
    };
    let password = match secret {
        (Some(p), _) => Some(p),
        (None, Some(f)) => Some(
            std::fs::read_to_string(&f)
                .map_err(|e| format!("cannot read the password file {}: {e}", f.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        ),
        (None, None) => None,
    };
    let mqtt = MqttSettings {
        broker,
        username: args.username.clone().or(file.username),
        password,
        tls_ca: args.tls_ca.clone().or(file.tls_ca),
        tls_cert: args.tls_cert.clone().or(file.tls_cert),
        tls_key: args.tls_key.clone().or(file.tls_key),
    };
    mqtt.options("check", None)?;
    let key = match args.cluster_key.clone().or(file.cluster_key) {
        Some(path) => Some(ipdc_common::auth::ClusterKey::load(&path)?),
        None => {
            eprintln!(
                "warning: no cluster key: this cluster is open, anyone who can publish to the broker can run code on its agents (see `ipdc-submit keygen`)"
            );
            None
        }
    };
    Ok(Connection {
        mqtt,
        key,
        ipfs: args.ipfs.clone().or(file.ipfs).unwrap_or_else(|| "http://127.0.0.1:5001".into()),
        cluster,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("submit.toml");
        std::fs::write(&path, "broker = \"mqtt://hub:1884\"\ncluster = \"lab\"\nusername = \"alice\"\n")
            .unwrap();
        let args =
            ClusterArgs { config: Some(path.clone()), cluster: Some("other".into()), ..Default::default() };
        let c = connection(&args).unwrap();
        assert_eq!((c.mqtt.broker.port, c.cluster.as_str()), (1884, "other"));
        assert_eq!(c.mqtt.username.as_deref(), Some("alice"));
        std::fs::write(&path, "borker = 1\n").unwrap();
        assert!(connection(&args).unwrap_err().contains("borker"));
    }

    #[test]
    fn paths_in_the_file_are_relative_to_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "secret\n").unwrap();
        let path = dir.path().join("submit.toml");
        std::fs::write(&path, "password_file = \"pw\"\ncluster_key = \"keys/cluster.key\"\n").unwrap();
        let file = load_file(&ClusterArgs { config: Some(path), ..Default::default() }).unwrap();
        assert_eq!(file.password_file, Some(dir.path().join("pw")));
        assert_eq!(file.cluster_key, Some(dir.path().join("keys/cluster.key")));
    }

    #[test]
    fn a_password_file_flag_beats_a_password_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("submit.toml");
        std::fs::write(&path, "username = \"alice\"\npassword = \"from-the-file\"\n").unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "from-the-flag\n").unwrap();
        let args =
            ClusterArgs { config: Some(path.clone()), password_file: Some(secret), ..Default::default() };
        assert_eq!(connection(&args).unwrap().mqtt.password.as_deref(), Some("from-the-flag"));
        let args = ClusterArgs { config: Some(path), ..Default::default() };
        assert_eq!(connection(&args).unwrap().mqtt.password.as_deref(), Some("from-the-file"));
    }
}
