//! The result's parts fetched as their tasks finish, not all at the end:
//! each part comes to this machine while the rest of the job runs, so a
//! board whose node dies after its reduce costs nothing, and the output is
//! written sooner. Each goes into the job's temporary output folder under
//! its part number (never a name from a message); the output folder takes
//! it if the part's CID is still the one fetched, else fetches it again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use ipdc_common::ipfs::IpfsClient;
use log::{debug, info};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Parts fetched at once.
const IN_FLIGHT: usize = 4;

/// A part fetched early: its CID and where it is.
pub type Fetched = BTreeMap<usize, (String, PathBuf)>;

pub struct EarlyParts {
    ipfs: IpfsClient,
    dir: PathBuf,
    slots: Arc<Semaphore>,
    started: BTreeMap<usize, (String, JoinHandle<bool>)>,
}

impl EarlyParts {
    /// Parts go into `dir` (the temporary output folder).
    pub fn new(ipfs: IpfsClient, dir: PathBuf) -> EarlyParts {
        EarlyParts { ipfs, dir, slots: Arc::new(Semaphore::new(IN_FLIGHT)), started: BTreeMap::new() }
    }

    fn path(&self, i: usize) -> PathBuf {
        self.dir.join(format!(".early-{i:05}"))
    }

    /// Starts fetching part `i` (once per CID: a part made again is fetched again).
    pub fn want(&mut self, i: usize, cid: &str) {
        if self.started.get(&i).is_some_and(|(c, _)| c == cid) {
            return;
        }
        let (ipfs, path, slots, cid_s) =
            (self.ipfs.clone(), self.path(i), self.slots.clone(), cid.to_string());
        let fetch = tokio::spawn(async move {
            let _slot = slots.acquire().await;
            match ipfs.cat_to_file(&cid_s, &path).await {
                Ok(n) => {
                    info!("fetched part {i} ({cid_s}, {n} bytes) as its task finished");
                    true
                }
                Err(e) => {
                    debug!("fetching part {i} early: {e} (it is fetched again at the end)");
                    false
                }
            }
        });
        if let Some((_, old)) = self.started.insert(i, (cid.to_string(), fetch)) {
            old.abort();
        }
    }

    /// Waits for the fetches started; returns the parts they got.
    pub async fn finish(self) -> Fetched {
        let mut got = Fetched::new();
        for (i, (cid, fetch)) in self.started {
            if fetch.await.unwrap_or(false) {
                got.insert(i, (cid, self.dir.join(format!(".early-{i:05}"))));
            }
        }
        got
    }
}
