//! The side files of past tasks, kept by CID across tasks and jobs, so a
//! model or lookup table is fetched from IPFS once, not once per task.
//!
//! Entries live in `WORK_DIR/.side-files/<cid>` (the sweep keeps the
//! root's dot-names), at most [`MAX_CACHE_BYTES`] in all, the least
//! recently used removed first. A task gets a copy, never the entry
//! itself, so what its code writes to its side files stays its own. An
//! entry is the bytes of its CID as fetched with the size the job gave;
//! where Landlock is not available, user code running as the agent's user
//! could still change an entry, as it could change anything of the agent's.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ipdc_common::ipfs::{IpfsClient, IpfsError};

/// The most bytes the cache keeps (four jobs' worth of side files at their limit).
pub const MAX_CACHE_BYTES: u64 = 1 << 30;

pub struct SideCache {
    dir: PathBuf,
    /// One fill at a time: two tasks wanting one file fetch it once.
    fill: tokio::sync::Mutex<()>,
}

/// Where a side file came from, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    Cached,
    Fetched,
}

impl SideCache {
    pub fn new(work_dir: &Path) -> Self {
        SideCache { dir: work_dir.join(".side-files"), fill: tokio::sync::Mutex::new(()) }
    }

    /// Copies the object `cid` of `size` bytes to `dest`, from the cache or
    /// else fetched into it first. Returns the bytes IPFS held when that is
    /// not `size` (the caller's error), else where it came from.
    pub async fn copy_to(
        &self,
        ipfs: &IpfsClient,
        cid: &str,
        size: u64,
        dest: &Path,
    ) -> Result<Result<Got, u64>, IpfsError> {
        // A CID is letters and digits only: anything else never names a file here.
        if cid.is_empty() || cid.len() > 128 || !cid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            let got = ipfs.cat_sized_to_scratch_file(cid, dest, size).await?;
            return Ok(if got == size { Ok(Got::Fetched) } else { Err(got) });
        }
        let entry = self.dir.join(cid);
        let _filling = self.fill.lock().await;
        let how = if held(&entry) == Some(size) {
            Got::Cached
        } else {
            let _ = tokio::fs::create_dir_all(&self.dir).await;
            let got = ipfs.cat_sized_to_scratch_file(cid, &entry, size).await?;
            if got != size {
                let _ = tokio::fs::remove_file(&entry).await;
                return Ok(Err(got));
            }
            Got::Fetched
        };
        drop(_filling);
        let _ = std::fs::File::open(&entry).and_then(|f| f.set_modified(SystemTime::now()));
        if let Err(e) = tokio::fs::copy(&entry, dest).await {
            // Evicted by another task meanwhile, or a local error: fetch it directly.
            log::debug!("side file {cid} from the cache: {e}");
            let got = ipfs.cat_sized_to_scratch_file(cid, dest, size).await?;
            return Ok(if got == size { Ok(Got::Fetched) } else { Err(got) });
        }
        if how == Got::Fetched {
            let dir = self.dir.clone();
            let _ = tokio::task::spawn_blocking(move || evict(&dir, MAX_CACHE_BYTES)).await;
        }
        Ok(Ok(how))
    }
}

fn held(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| m.len())
}

/// Removes the least recently used entries of `dir` until at most `most`
/// bytes are left (temporary files of fills in progress, named `.…`, stay).
fn evict(dir: &Path, most: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let m = e.metadata().ok().filter(|m| m.is_file())?;
            Some((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= most {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_removes_the_least_recently_used_first() {
        let dir = tempfile_dir();
        let at = |secs: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        for (name, len, used) in
            [("old", 400, 10), ("mid", 400, 20), ("new", 400, 30), (".fill.part", 900, 0)]
        {
            let p = dir.join(name);
            std::fs::write(&p, vec![0u8; len]).unwrap();
            std::fs::File::open(&p).unwrap().set_modified(at(used)).unwrap();
        }
        evict(&dir, 900);
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, [".fill.part", "mid", "new"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("ipdc-side-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
