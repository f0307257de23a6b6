//! The result's parts fetched as their tasks finish, not all at the end:
//! each part comes to this machine while the rest of the job runs, so a
//! board whose node dies after its reduce costs nothing, and the output is
//! written sooner. Each goes into the job's temporary output folder under
//! its part number (never a name from a message); the output folder takes
//! it if the part's CID is still the one fetched, else fetches it again.
//! Each fetch's outcome goes back to the controller ([`EarlyParts::next`]),
//! which holds the job until every part is here and runs again the task
//! of a part that could not be fetched.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use ipdc_common::ipfs::IpfsClient;
use log::{debug, info};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::controller::PartRef;

/// Parts fetched at once.
const IN_FLIGHT: usize = 4;

/// A part fetched early: its CID and where it is.
pub type Fetched = BTreeMap<usize, (String, PathBuf)>;

/// How one fetch ended: Err says why it failed.
pub type Outcome = (PartRef, Result<(), String>);

pub struct EarlyParts {
    ipfs: IpfsClient,
    dir: PathBuf,
    slots: Arc<Semaphore>,
    started: BTreeMap<usize, (PartRef, JoinHandle<bool>)>,
    outcomes: (mpsc::UnboundedSender<Outcome>, mpsc::UnboundedReceiver<Outcome>),
}

impl EarlyParts {
    /// Parts go into `dir` (the temporary output folder).
    pub fn new(ipfs: IpfsClient, dir: PathBuf) -> EarlyParts {
        EarlyParts {
            ipfs,
            dir,
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            started: BTreeMap::new(),
            outcomes: mpsc::unbounded_channel(),
        }
    }

    fn path(&self, i: usize) -> PathBuf {
        self.dir.join(format!(".early-{i:05}"))
    }

    /// Starts fetching part `r` (once per attempt: a part made again is
    /// fetched again; a fetch of an earlier one stops).
    pub fn want(&mut self, r: PartRef) {
        if self.started.get(&r.part).is_some_and(|(had, _)| *had == r) {
            return;
        }
        let (ipfs, path, slots, tx) =
            (self.ipfs.clone(), self.path(r.part), self.slots.clone(), self.outcomes.0.clone());
        let part = r.clone();
        let fetch = tokio::spawn(async move {
            let _slot = slots.acquire().await;
            let got = match ipfs.cat_to_file(&part.cid, &path).await {
                Ok(n) => {
                    info!("fetched part {} ({}, {n} bytes) as its task finished", part.part, part.cid);
                    Ok(())
                }
                Err(e) => {
                    debug!("fetching part {} early: {e}", part.part);
                    Err(e.to_string())
                }
            };
            let ok = got.is_ok();
            let _ = tx.send((part, got));
            ok
        });
        if let Some((_, old)) = self.started.insert(r.part, (r, fetch)) {
            old.abort();
        }
    }

    /// The next fetch that ended.
    pub async fn next(&mut self) -> Outcome {
        self.outcomes.1.recv().await.expect("the sender lives in self")
    }

    /// Waits for the fetches started; returns the parts they got.
    pub async fn finish(self) -> Fetched {
        let mut got = Fetched::new();
        for (i, (r, fetch)) in self.started {
            if fetch.await.unwrap_or(false) {
                got.insert(i, (r.cid, self.dir.join(format!(".early-{i:05}"))));
            }
        }
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each fetch's outcome comes back tagged with the attempt it was of:
    /// a part the node holds is fetched, one it does not hold fails with
    /// the node's error (the controller then runs its task again).
    #[tokio::test]
    async fn each_fetch_reports_how_it_ended() {
        let data = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let store =
            crate::store::serve(listener, data.path().to_path_buf(), crate::store::Durability::Durable, None)
                .await
                .unwrap();
        let ipfs = IpfsClient::new(&store.url()).unwrap();
        let held = ipfs.add_bytes(b"a\t1\n".to_vec()).await.unwrap().cid;
        let missing = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".to_string();
        let mut early = EarlyParts::new(ipfs, out.path().to_path_buf());
        let (ok, lost) =
            (PartRef { part: 0, cid: held, attempt: 1 }, PartRef { part: 1, cid: missing, attempt: 3 });
        early.want(ok.clone());
        early.want(lost.clone());
        early.want(ok.clone()); // wanted again: not fetched twice
        let mut ended = [early.next().await, early.next().await];
        ended.sort_by_key(|(r, _)| r.part);
        assert_eq!(ended[0], (ok, Ok(())));
        assert_eq!(ended[1].0, lost);
        let error = ended[1].1.as_ref().unwrap_err();
        assert!(error.contains("could not find"), "{error}");
        let got = early.finish().await;
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), [0]);
        assert_eq!(std::fs::read(&got[&0].1).unwrap(), b"a\t1\n");
        store.shutdown().await;
    }
}
