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

use ipdc_common::ipfs::{IpfsClient, Object};
use ipdc_common::protocol::{Compression, SideFile};
use tokio::task::JoinHandle;

use super::sent::Sent;
use crate::cluster::Cluster;
use crate::job::JobSpec;

/// One input file in IPFS.
#[derive(Debug, Clone)]
pub struct InputObject {
    pub cid: String,
    /// The file's own length (not its DAG's).
    pub size: u64,
    /// Its name as the job's code sees it (`ipdc.input_file()`).
    pub name: String,
    /// A `.gz` or `.zst` file: mapped whole, read decompressed.
    pub compression: Option<Compression>,
}

/// How a local input file is compressed (by its name, as Hadoop decides).
pub fn compression_of(path: &std::path::Path) -> Option<Compression> {
    Compression::of_name(&path.to_string_lossy())
}

/// What the agents will fetch.
pub struct Uploaded {
    pub inputs: Vec<InputObject>,
    /// Empty for native jobs.
    pub map_cid: String,
    pub reduce_cid: String,
    pub side_files: Vec<SideFile>,
}

impl Uploaded {
    pub fn input_size(&self) -> u64 {
        self.inputs.iter().map(|i| i.size).sum()
    }
}

pub type LocalAdd = JoinHandle<Result<Vec<InputObject>, String>>;

/// What tells a file that changed: its length and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Result<Stamp, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
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

/// Starts adding the input files to this process's store, when the
/// cluster is local and the input is files.
pub fn start_local_add(cluster: &Cluster, spec: &JobSpec) -> Option<LocalAdd> {
    let store = cluster.local_store()?;
    if !spec.input_cids.is_empty() {
        return None;
    }
    let files = spec.input_files.clone();
    let keep_empty = spec.maps_empty_files();
    Some(tokio::spawn(async move {
        let mut added = Vec::with_capacity(files.len());
        for f in files.into_iter().filter(|f| f.size > 0 || keep_empty) {
            let ((cid, size), _) = add_unchanged(&f.path, store.add_file(&f.path)).await?;
            added.push(InputObject { cid, size, compression: compression_of(&f.path), name: f.name });
        }
        Ok(added)
    }))
}

/// The most entries an input directory CID may hold, all levels together.
const MAX_DIRECTORY_ENTRIES: usize = 100_000;
/// The deepest folder of an input directory CID.
const MAX_DIRECTORY_DEPTH: usize = 32;

/// Adds the files of input CID `cid` to `out`: itself when it is a file
/// (named by its CID), else every file under the directory (what `ipfs add
/// -r` printed last), recursively, hidden entries (`.name`) skipped, in
/// name order, each named by its path inside the directory.
async fn input_cid_files(ipfs: &IpfsClient, cid: &str, out: &mut Vec<InputObject>) -> Result<(), String> {
    let at = |e: ipdc_common::ipfs::IpfsError| format!("input {cid}: {e}");
    if let Object::File(size) = ipfs.stat(cid).await.map_err(at)? {
        out.push(InputObject { cid: cid.to_string(), size, name: cid.to_string(), compression: None });
        return Ok(());
    }
    let mut files = Vec::new();
    let (mut folders, mut seen) = (vec![(String::new(), cid.to_string(), 0usize)], 0usize);
    while let Some((prefix, dir, depth)) = folders.pop() {
        for e in ipfs.ls(&dir).await.map_err(at)? {
            seen += 1;
            if seen > MAX_DIRECTORY_ENTRIES {
                return Err(format!(
                    "input {cid}: the directory holds more than {MAX_DIRECTORY_ENTRIES} entries: run the job on its parts"
                ));
            }
            if e.name.is_empty()
                || e.name.contains('/')
                || e.name == ".."
                || e.name.chars().any(char::is_control)
            {
                return Err(format!(
                    "input {cid}: the directory holds an entry named {:?}, which no file can be",
                    e.name
                ));
            }
            if e.name.starts_with('.') {
                continue;
            }
            let name = format!("{prefix}{}", e.name);
            if !ipdc_common::protocol::is_safe_input_name(&name) {
                return Err(format!("input {cid}: the path {name:?} inside it is too long for a file name"));
            }
            match (e.is_dir, depth < MAX_DIRECTORY_DEPTH) {
                (true, true) => folders.push((format!("{name}/"), e.cid, depth + 1)),
                (true, false) => {
                    return Err(format!(
                        "input {cid}: {name} is more than {MAX_DIRECTORY_DEPTH} folders deep"
                    ));
                }
                (false, _) => files.push((name, e.cid)),
            }
        }
    }
    if files.is_empty() {
        return Err(format!("input {cid} is a directory with no files: there is nothing to map"));
    }
    files.sort();
    for (name, file) in files {
        let size = ipfs.file_size(&file).await.map_err(|e| format!("input {cid}: {name}: {e}"))?;
        out.push(InputObject { compression: Compression::of_name(&name), cid: file, size, name });
    }
    Ok(())
}

/// Adds the job's input (unless it is given by CID or added locally
/// already), code and side files. With `remember`, a side file added to
/// this node before and unchanged since is not sent again (see `sent.rs`).
pub async fn upload(
    ipfs: &IpfsClient,
    spec: &JobSpec,
    local_add: Option<LocalAdd>,
    remember: bool,
    given: Option<Vec<InputObject>>,
) -> Result<Uploaded, String> {
    let inputs = match local_add {
        // A later step of a job: the parts of the step before.
        _ if given.is_some() => given.unwrap_or_default(),
        Some(adding) => adding.await.map_err(|e| format!("adding the input crashed: {e}"))??,
        None if !spec.input_cids.is_empty() => {
            let mut inputs = Vec::new();
            for cid in &spec.input_cids {
                input_cid_files(ipfs, cid, &mut inputs).await?;
            }
            inputs
        }
        None => {
            let mut inputs = Vec::new();
            for f in spec.input_files.iter().filter(|f| f.size > 0 || spec.maps_empty_files()) {
                let add = async {
                    ipfs.add_path(&f.path, false)
                        .await
                        .map_err(|e| format!("uploading input {}: {e}", f.path.display()))
                };
                // The store's `Size` is the DAG's; splits need the file's own length.
                let (added, size) = add_unchanged(&f.path, add).await?;
                inputs.push(InputObject {
                    cid: added.cid,
                    size,
                    name: f.name.clone(),
                    compression: compression_of(&f.path),
                });
            }
            inputs
        }
    };
    if inputs.iter().all(|i| i.size == 0) {
        let cids: Vec<&str> = inputs.iter().map(|i| i.cid.as_str()).collect();
        return Err(format!("input {} is empty: there is nothing to map", cids.join(", ")));
    }
    let inputs = inputs.into_iter().filter(|i| i.size > 0 || spec.maps_empty_files()).collect();
    let (map_cid, reduce_cid) = if spec.force_native.is_some() {
        (String::new(), String::new())
    } else {
        let m = ipfs.add_path(&spec.map_py, false).await.map_err(|e| e.to_string())?;
        let r = match spec.needs_reducer_file() {
            true => ipfs.add_path(&spec.reduce_py, false).await.map_err(|e| e.to_string())?.cid,
            false => String::new(),
        };
        (m.cid, r)
    };
    let mut side_files = Vec::with_capacity(spec.side_files.len());
    let mut sent = (remember && !spec.side_files.is_empty()).then(Sent::load);
    let mut not_sent = 0;
    for f in &spec.side_files {
        if let Some(cid) = sent.as_ref().and_then(|s| s.get(ipfs.api(), &f.path))
            && still_held(ipfs, &cid, f.size).await
        {
            side_files.push(SideFile { path: f.name.clone(), cid, size: f.size });
            not_sent += 1;
            continue;
        }
        let add = async {
            ipfs.add_path(&f.path, false)
                .await
                .map_err(|e| format!("uploading side file {}: {e}", f.path.display()))
        };
        let (added, size) = add_unchanged(&f.path, add).await?;
        if let Some(s) = sent.as_mut() {
            s.insert(ipfs.api(), &f.path, &added.cid);
        }
        side_files.push(SideFile { path: f.name.clone(), cid: added.cid, size });
    }
    if let Some(s) = &sent {
        s.save();
    }
    if not_sent > 0 {
        crate::say!("{not_sent} side file(s) unchanged since an earlier job: not sent again");
    }
    Ok(Uploaded { inputs, map_cid, reduce_cid, side_files })
}

/// Whether the node still holds `cid` as `size` bytes (a few seconds at
/// most: a node that has to search the network for it has lost it).
async fn still_held(ipfs: &IpfsClient, cid: &str, size: u64) -> bool {
    let stat = tokio::time::timeout(std::time::Duration::from_secs(5), ipfs.file_size(cid)).await;
    matches!(stat, Ok(Ok(n)) if n == size)
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
