//! The cluster's trust file: which public keys may run jobs (submitters)
//! and which may report results (agents), under which names, and which
//! are revoked. Like SSH's `authorized_keys`, one line per key:
//!
//! ```text
//! # role      name     public key
//! submitter   laptop   ed25519:3b6a27bc...
//! agent       pi-1     ed25519:9f1c0d2e...
//! revoke               ed25519:77aa01f3...
//! ```
//!
//! A name is what the key may speak as: an agent key signs only that
//! agent's statuses and results. A `revoke` line wins over any other line
//! for its key (delete the key's line, or add one, to revoke it). The file
//! is read again when it changes, so a revocation takes effect without a
//! restart ([`TrustSource`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::keys::PublicKey;
use crate::protocol::validate_name;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// May run jobs: assign tasks, publish a job's controller status.
    Submitter,
    /// May report as the agent it is named for: its status, its results.
    Agent,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Submitter => "submitter",
            Role::Agent => "agent",
        })
    }
}

/// Who signed a message, as the trust file names them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub role: Role,
    pub name: String,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.role, self.name)
    }
}

/// A parsed trust file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustList {
    keys: BTreeMap<PublicKey, Identity>,
    revoked: BTreeSet<PublicKey>,
}

impl TrustList {
    /// Parses the text of a trust file; errors name the line.
    pub fn parse(text: &str) -> Result<TrustList, String> {
        let mut t = TrustList::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |why: String| format!("line {}: {why}", i + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["revoke", key] => {
                    t.revoked.insert(PublicKey::parse(key).map_err(at)?);
                }
                [role @ ("submitter" | "agent"), name, key] => {
                    validate_name("name", name).map_err(at)?;
                    let key = PublicKey::parse(key).map_err(at)?;
                    let role = if *role == "agent" { Role::Agent } else { Role::Submitter };
                    let id = Identity { role, name: name.to_string() };
                    if let Some(other) = t.keys.get(&key).filter(|o| **o != id) {
                        return Err(at(format!(
                            "{key} is listed already as {other}: one key speaks as one node"
                        )));
                    }
                    t.keys.insert(key, id);
                }
                _ => {
                    return Err(at(format!(
                        "{line:?}: expected `submitter NAME KEY`, `agent NAME KEY` or `revoke KEY`"
                    )));
                }
            }
        }
        Ok(t)
    }

    /// Who `key` is, unless it is unknown or revoked.
    pub fn identify(&self, key: &PublicKey) -> Result<&Identity, Unknown> {
        if self.revoked.contains(key) {
            return Err(Unknown::Revoked);
        }
        self.keys.get(key).ok_or(Unknown::NotListed)
    }

    /// The line that lists `key` as `id`.
    pub fn line(id: &Identity, key: &PublicKey) -> String {
        format!("{:<9} {:<12} {key}", id.role.to_string(), id.name)
    }
}

/// Why a key is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    NotListed,
    Revoked,
}

/// A trust file and what was last read from it; read again (at most once
/// a second) when its modification time or size changes.
#[derive(Debug, Clone)]
pub struct TrustSource {
    path: PathBuf,
    list: TrustList,
    stamp: Option<(SystemTime, u64)>,
    checked_ms: u64,
}

impl TrustSource {
    /// Reads the trust file at `path`; errors name it.
    pub fn load(path: &Path) -> Result<TrustSource, String> {
        let (list, stamp) = read(path)?;
        Ok(TrustSource { path: path.to_path_buf(), list, stamp, checked_ms: 0 })
    }

    /// A fixed list, never read from a file (tests, in-process clusters).
    pub fn fixed(list: TrustList) -> TrustSource {
        TrustSource { path: PathBuf::new(), list, stamp: None, checked_ms: u64::MAX }
    }

    /// The list as of now: the file is looked at again if a second has
    /// passed. A file that became unreadable or invalid keeps the last good
    /// list (and says so once, in the log).
    pub fn current(&mut self, now_ms: u64) -> &TrustList {
        if self.checked_ms != u64::MAX && now_ms.saturating_sub(self.checked_ms) >= 1000 {
            self.checked_ms = now_ms;
            let stamp = stamp_of(&self.path);
            if stamp != self.stamp {
                match read(&self.path) {
                    Ok((list, stamp)) => {
                        if list != self.list {
                            log::info!("trust file {} changed: read again", self.path.display());
                        }
                        self.list = list;
                        self.stamp = stamp;
                    }
                    Err(e) => {
                        log::warn!("{e}; keeping the keys read before");
                        self.stamp = stamp;
                    }
                }
            }
        }
        &self.list
    }
}

fn stamp_of(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn read(path: &Path) -> Result<(TrustList, Option<(SystemTime, u64)>), String> {
    let shown = path.display();
    let stamp = stamp_of(path);
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!("cannot read the trust file {shown}: {e}; make one with `ipdc-submit keygen --cluster DIR`")
    })?;
    let list = TrustList::parse(&text).map_err(|e| format!("trust file {shown}: {e}"))?;
    Ok((list, stamp))
}

#[cfg(test)]
mod tests {
    use super::super::NodeKey;
    use super::*;

    #[test]
    fn a_trust_file_names_keys_by_role_and_revokes_them() {
        let (s, a, r) =
            (NodeKey::generate().unwrap(), NodeKey::generate().unwrap(), NodeKey::generate().unwrap());
        let text = format!(
            "# comment\nsubmitter laptop {}\n\nagent   pi-1   {}  # board one\nagent pi-2 {}\nrevoke {}\n",
            s.public(),
            a.public(),
            r.public(),
            r.public()
        );
        let t = TrustList::parse(&text).unwrap();
        assert_eq!(
            t.identify(&s.public()).unwrap(),
            &Identity { role: Role::Submitter, name: "laptop".into() }
        );
        assert_eq!(t.identify(&a.public()).unwrap(), &Identity { role: Role::Agent, name: "pi-1".into() });
        assert_eq!(t.identify(&r.public()), Err(Unknown::Revoked));
        assert_eq!(t.identify(&NodeKey::generate().unwrap().public()), Err(Unknown::NotListed));
    }

    #[test]
    fn bad_lines_are_named() {
        let k = NodeKey::generate().unwrap().public();
        for (text, want) in [
            ("agent pi-1\n".to_string(), "line 1"),
            (format!("\nadmin x {k}\n"), "line 2"),
            (format!("agent ../x {k}\n"), "not valid"),
            ("agent pi-1 ed25519:00\n".to_string(), "not a public key"),
            (format!("agent pi-1 {k}\nsubmitter laptop {k}\n"), "listed already as agent pi-1"),
        ] {
            let e = TrustList::parse(&text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_old_keys() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("trust");
        let k = NodeKey::generate().unwrap().public();
        std::fs::write(&path, format!("agent pi-1 {k}\n")).unwrap();
        let mut src = TrustSource::load(&path).unwrap();
        assert!(src.current(10_000).identify(&k).is_ok());
        std::fs::write(&path, format!("agent pi-1 {k}\nrevoke {k}\n")).unwrap();
        assert!(src.current(10_500).identify(&k).is_ok(), "looked at once a second at most");
        assert_eq!(src.current(11_000).identify(&k), Err(Unknown::Revoked));
        std::fs::write(&path, "garbage line here and more\n").unwrap();
        assert_eq!(src.current(12_000).identify(&k), Err(Unknown::Revoked), "the last good list stays");
        assert!(TrustSource::load(&d.path().join("none")).unwrap_err().contains("keygen"));
    }
}
