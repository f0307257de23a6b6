//! The submitter's cluster settings: flags and environment (`ClusterArgs`),
//! then `~/.config/ipdc/submit.toml` (the same keys), then defaults,
//! validated once into a [`Connection`], so a user sets the cluster up once.

use std::path::{Path, PathBuf};

use ipdc_common::auth::Role;
use ipdc_common::settings::{ClusterSettings, NoOwnKeys, load_config_file};

use crate::cli::ClusterArgs;
use crate::cluster::Connection;

/// The default config file, if HOME is known.
pub fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("ipdc").join("submit.toml"))
}

fn load_file(args: &ClusterArgs) -> Result<ClusterSettings, String> {
    let (path, required) = match &args.config {
        Some(p) => (p.clone(), true),
        None => match default_config_path() {
            Some(p) => (p, false),
            None => return Ok(ClusterSettings::default()),
        },
    };
    let (settings, NoOwnKeys {}) = load_config_file(&path, required)?;
    Ok(settings)
}

/// Flags/env over the file over defaults.
pub fn connection(args: &ClusterArgs) -> Result<Connection, String> {
    let s = args.settings.clone().or(load_file(args)?);
    let cluster = s.cluster_name()?;
    let mqtt = s.mqtt()?;
    let mut credentials = s.credentials()?;
    match &mut credentials {
        Some(c) => c.check_own_key(Role::Submitter, None)?,
        None => eprintln!(
            "warning: no keys: this cluster is open, anyone who can publish to the broker can run code on its agents (see `ipdc-submit keygen`)"
        ),
    }
    Ok(Connection { mqtt, credentials, ipfs: s.ipfs_api(), cluster })
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
        let args = ClusterArgs {
            config: Some(path.clone()),
            settings: ClusterSettings { cluster: Some("other".into()), ..Default::default() },
        };
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
        std::fs::write(&path, "password_file = \"pw\"\ntrust = \"keys/trust\"\n").unwrap();
        let file = load_file(&ClusterArgs { config: Some(path), ..Default::default() }).unwrap();
        assert_eq!(file.password_file, Some(dir.path().join("pw")));
        assert_eq!(file.trust, Some(dir.path().join("keys/trust")));
    }

    #[test]
    fn a_password_file_flag_beats_a_password_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("submit.toml");
        std::fs::write(&path, "username = \"alice\"\npassword = \"from-the-file\"\n").unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "from-the-flag\n").unwrap();
        let args = ClusterArgs {
            config: Some(path.clone()),
            settings: ClusterSettings { password_file: Some(secret), ..Default::default() },
        };
        assert_eq!(connection(&args).unwrap().mqtt.password.as_deref(), Some("from-the-flag"));
        let args = ClusterArgs { config: Some(path), ..Default::default() };
        assert_eq!(connection(&args).unwrap().mqtt.password.as_deref(), Some("from-the-file"));
    }
}
