//! What this submitter already added to each IPFS node: a side file whose
//! path, size and modification time are those of an earlier add to the
//! same node, and that the node still holds, is not sent again (a model of
//! hundreds of MiB is sent once, not with every job).
//!
//! The record is `$XDG_CACHE_HOME/ipdc/sent.json` (`~/.cache/ipdc/`): at
//! most [`MAX_ENTRIES`] entries, the oldest dropped. A record that cannot
//! be read or written only costs a new upload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Sent {
    /// Key (node, path, size, modification time) → (CID, when recorded, Unix s).
    entries: BTreeMap<String, (String, u64)>,
    #[serde(skip)]
    file: Option<PathBuf>,
}

impl Sent {
    /// The record in the user's cache folder (empty when there is none).
    pub fn load() -> Sent {
        let Some(file) = record_file() else { return Sent::default() };
        let mut sent: Sent =
            std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        sent.file = Some(file);
        sent
    }

    /// The CID `path` had when it was last added to `node`, if it has not changed since.
    pub fn get(&self, node: &str, path: &Path) -> Option<String> {
        self.entries.get(&key(node, path)?).map(|(cid, _)| cid.clone())
    }

    pub fn insert(&mut self, node: &str, path: &Path, cid: &str) {
        let Some(k) = key(node, path) else { return };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.entries.insert(k, (cid.to_string(), now));
        while self.entries.len() > MAX_ENTRIES {
            let oldest = self.entries.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.entries.remove(&k),
                None => break,
            };
        }
    }

    /// Writes the record back (through a temporary file: never half a record).
    pub fn save(&self) {
        let Some(file) = &self.file else { return };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(file.parent().expect("a file in a folder"))?;
            let tmp = file.with_extension(format!("json.{}", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec(self).expect("the record serializes"))?;
            std::fs::rename(&tmp, file)
        };
        if let Err(e) = write() {
            log::debug!("cannot record what was sent in {}: {e}", file.display());
        }
    }
}

fn record_file() -> Option<PathBuf> {
    Some(crate::cache::cache_dir()?.join("sent.json"))
}

/// The file as it is now: its canonical path, size and modification time
/// (to the nanosecond), on `node`.
fn key(node: &str, path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&real).ok()?;
    let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    Some(format!("{node}\t{}\t{}\t{modified}", real.display(), meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_or_another_node_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("model.bin");
        std::fs::write(&f, "weights").unwrap();
        let mut sent = Sent::default();
        sent.insert("http://a:5001", &f, "bafkreiaaa");
        assert_eq!(sent.get("http://a:5001", &f).as_deref(), Some("bafkreiaaa"));
        assert_eq!(sent.get("http://b:5001", &f), None);
        std::fs::write(&f, "weights, retrained").unwrap();
        assert_eq!(sent.get("http://a:5001", &f), None);
    }
}
