//! Adding a job's input and code to IPFS. Under `--local` the input is
//! added by reference to the store of this process, hashed from disk once,
//! and that starts while the job connects and picks its agents: nothing
//! leaves the machine, so nothing is wasted if the job stops early.

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

/// Starts adding the input to this process's store, when the cluster is
/// local and the input is a file.
pub fn start_local_add(cluster: &Cluster, spec: &JobSpec) -> Option<LocalAdd> {
    let store = cluster.local_store()?;
    if spec.input_cid.is_some() {
        return None;
    }
    let path = spec.input.clone();
    Some(tokio::spawn(async move { store.add_file(&path).await }))
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
            let added =
                ipfs.add_path(&spec.input, false).await.map_err(|e| format!("uploading the input: {e}"))?;
            // The store's `Size` is the DAG's; splits need the file's own length.
            let size = std::fs::metadata(&spec.input)
                .map_err(|e| format!("input file {}: {e}", spec.input.display()))?
                .len();
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
