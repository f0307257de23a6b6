//! Adding a job's input and code to IPFS. Under `--local` the input is
//! added by reference to the store of this process, hashed from disk once,
//! and that starts while the job connects and picks its agents: nothing
//! leaves the machine, so nothing is wasted if the job stops early.
//!
//! Either way the input file's size and modification time are taken before
//! and after the add: a file that changed meanwhile (a download or a log
//! still being written) is named, rather than added cut short or grown.

use std::path::Path;
use std::time::SystemTime;

use ipdc_common::ipfs::IpfsClient;
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::job::JobSpec;

/// What the agents will fetch.
pub struct Uploaded {
    pub input_cid: String,
    /// The input file's own length (not its DAG's).
    pub input_size: u64,
    /// Empty for native jobs.
    pub map_cid: String,
    pub reduce_cid: String,
}

pub type LocalAdd = JoinHandle<Result<(String, u64), String>>;

/// What tells a file that changed: its length and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Result<Stamp, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("input file {}: {e}", path.display()))?;
    Ok(Stamp { len: meta.len(), modified: meta.modified().ok() })
}

/// Fails, naming the file and its sizes, when `path` changed between `before` and `after`.
fn unchanged(path: &Path, before: Stamp, after: Stamp) -> Result<(), String> {
    if before == after {
        return Ok(());
    }
    let same = if before.len == after.len { ", and it was modified" } else { "" };
    Err(format!(
        "input {} changed while it was being added (size {} then {}{same}): wait until it is complete, or copy it first",
        path.display(),
        before.len,
        after.len
    ))
}

/// Adds the input with `add`, checking that the file did not change meanwhile.
/// A change wins over the add's own error (a file cut short while it was
/// hashed fails there too, less clearly).
async fn add_unchanged<T>(
    path: &Path,
    add: impl std::future::Future<Output = Result<T, String>>,
) -> Result<(T, u64), String> {
    let before = stamp(path)?;
    let added = add.await;
    unchanged(path, before, stamp(path)?)?;
    Ok((added?, before.len))
}

/// Starts adding the input to this process's store, when the cluster is
/// local and the input is a file.
pub fn start_local_add(cluster: &Cluster, spec: &JobSpec) -> Option<LocalAdd> {
    let store = cluster.local_store()?;
    if spec.input_cid.is_some() {
        return None;
    }
    let path = spec.input.clone();
    Some(tokio::spawn(async move {
        let ((cid, size), _) = add_unchanged(&path, store.add_file(&path)).await?;
        Ok((cid, size))
    }))
}

pub async fn upload(
    ipfs: &IpfsClient,
    spec: &JobSpec,
    local_add: Option<LocalAdd>,
) -> Result<Uploaded, String> {
    let (input_cid, input_size) = match (&spec.input_cid, local_add) {
        (Some(cid), _) => {
            let size = ipfs.file_size(cid).await.map_err(|e| format!("input {cid}: {e}"))?;
            (cid.clone(), size)
        }
        (None, Some(adding)) => adding.await.map_err(|e| format!("adding the input crashed: {e}"))??,
        (None, None) => {
            let add = async {
                ipfs.add_path(&spec.input, false).await.map_err(|e| format!("uploading the input: {e}"))
            };
            // The store's `Size` is the DAG's; splits need the file's own length.
            let (added, size) = add_unchanged(&spec.input, add).await?;
            (added.cid, size)
        }
    };
    if input_size == 0 {
        return Err(format!("input {input_cid} is empty: there is nothing to map"));
    }
    let (map_cid, reduce_cid) = if spec.force_native.is_some() {
        (String::new(), String::new())
    } else {
        let m = ipfs.add_path(&spec.map_py, false).await.map_err(|e| e.to_string())?;
        let r = ipfs.add_path(&spec.reduce_py, false).await.map_err(|e| e.to_string())?;
        (m.cid, r.cid)
    };
    Ok(Uploaded { input_cid, input_size, map_cid, reduce_cid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_changed_is_named_with_its_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "abc\n").unwrap();
        let before = stamp(&path).unwrap();
        assert_eq!(unchanged(&path, before, stamp(&path).unwrap()), Ok(()));
        let grown = Stamp { len: 9, ..before };
        assert_eq!(
            unchanged(&path, before, grown).unwrap_err(),
            format!(
                "input {} changed while it was being added (size 4 then 9): wait until it is complete, or copy it first",
                path.display()
            )
        );
        let touched = Stamp { modified: Some(SystemTime::UNIX_EPOCH), ..before };
        assert!(
            unchanged(&path, before, touched).unwrap_err().contains("(size 4 then 4, and it was modified)")
        );
    }
}
