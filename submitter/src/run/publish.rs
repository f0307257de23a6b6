//! A finished job's result as one UnixFS directory in IPFS: its parts
//! under their names (`part-00000` …), the same CID as `ipfs add -r
//! --cid-version=1` of a folder of just those files. The node is put with
//! `block/put` and pinned recursively on the submitter's node, so the
//! parts, which agents added unpinned, outlive the job's garbage
//! collection: `--input-cid OUTPUT_CID` runs a next job on them.

use futures_util::{StreamExt, stream};
use ipdc_common::ipfs::IpfsClient;
use serde::Serialize;

use crate::store::cid::Cid;
use crate::store::dir::{DirLink, encode};

/// One part of the result, as `summary.json` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PartEntry {
    pub name: String,
    pub cid: String,
    pub bytes: u64,
}

/// `files/stat` calls in flight at once while the directory is made.
const STATS_IN_FLIGHT: usize = 16;

/// The largest directory node a node takes in one block.
const MAX_NODE_BYTES: usize = 1 << 20;

/// Makes the directory of `parts` on `ipfs`'s node (`pin`: pinned);
/// returns its CID.
pub async fn publish(ipfs: &IpfsClient, parts: &[PartEntry], pin: bool) -> Result<String, String> {
    let sizes: Vec<Result<u64, String>> = stream::iter(parts)
        .map(|p| async move {
            ipfs.dag_size(&p.cid).await.map_err(|e| format!("asking the size of {} ({}): {e}", p.name, p.cid))
        })
        .buffered(STATS_IN_FLIGHT)
        .collect()
        .await;
    let mut links = Vec::with_capacity(parts.len());
    for (part, tsize) in parts.iter().zip(sizes) {
        let cid = Cid::parse(&part.cid).map_err(|e| format!("{}: {e}", part.name))?;
        links.push(DirLink { name: part.name.clone(), cid, tsize: tsize?, is_dir: false });
    }
    let (node, cid, _) = encode(&mut links, crate::store::importer::Layout::V1);
    if node.len() > MAX_NODE_BYTES {
        return Err(format!(
            "{} parts need a directory node of {} bytes, over the {MAX_NODE_BYTES} one block may hold: use fewer reducers",
            parts.len(),
            node.len()
        ));
    }
    let key = ipfs.put_dag_pb(node, pin).await.map_err(|e| e.to_string())?;
    match Cid::parse(&key) {
        Ok(k) if k == cid => Ok(cid.to_string()),
        _ => Err(format!("the IPFS node stored the output directory as {key}, not as {cid}")),
    }
}
