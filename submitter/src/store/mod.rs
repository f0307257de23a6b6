//! The embedded IPFS content store: a small server inside the submitter
//! that answers the part of kubo's RPC API IPDC uses (`add`, `cat`,
//! `files/stat`, `id`, `version`, `repo/gc`), so a cluster can run without
//! a kubo node beside the submitter. Agents reach it with the same
//! [`ipdc_common::ipfs::IpfsClient`] they use for kubo.
//!
//! It computes the CIDs of kubo's two default layouts (a plain `ipfs add`,
//! CIDv0, and `--cid-version=1`, raw leaves; 256 KiB chunks, balanced
//! dag-pb tree of 174 links), so an object added here has the same CID as
//! on any IPFS node; it refuses every other layout by name. It keeps whole files, not blocks: it
//! serves files, not the block-level protocol, and cannot join a swarm.
//!
//! Layout: [`cid`] (CID text and binary forms), [`importer`] (the streaming
//! UnixFS importer), [`repo`] (files on disk and the index), [`server`] (the
//! HTTP routes). This file starts and stops the server.
#![allow(dead_code)]

pub mod cid;
pub mod dir;
pub mod importer;
pub mod repo;
pub mod server;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running store. Dropping it leaves the server running until the
/// runtime ends; [`StoreHandle::shutdown`] stops it.
pub struct StoreHandle {
    addr: SocketAddr,
    state: Arc<server::AppState>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl StoreHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The in-process side of this store, for a submitter in the same process.
    pub fn local(&self) -> LocalStore {
        LocalStore(self.state.clone())
    }

    /// The API URL to give an IPFS client, e.g. `http://127.0.0.1:5001`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets requests in flight finish for up to 5 s, then
    /// ends the server.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// How much a store's copies must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Each copy is synced to disk before it is indexed: the store is
    /// reopened on its data after a crash or power loss (`hub`).
    Durable,
    /// Copies are not synced: the data folder is removed when the process
    /// ends (`--local`), so a crash loses it anyway.
    Temporary,
}

/// Serves the store on an already-bound `listener`, keeping its data under
/// `data_dir` (created if needed). Returns once listening. `nocopy_root`:
/// the folder under which HTTP clients may add files by reference (`add`
/// with `nocopy`); None refuses every such add (see `server.rs`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    data_dir: PathBuf,
    durability: Durability,
    nocopy_root: Option<PathBuf>,
) -> std::io::Result<StoreHandle> {
    let addr = listener.local_addr()?;
    // Compared with the real paths clients name: resolved once, here.
    let nocopy_root = match nocopy_root {
        Some(root) => {
            let real = std::fs::canonicalize(&root)
                .map_err(|e| std::io::Error::new(e.kind(), format!("nocopy root {}: {e}", root.display())))?;
            if !real.is_dir() {
                return Err(std::io::Error::other(format!("nocopy root {} is not a folder", root.display())));
            }
            Some(real)
        }
        None => None,
    };
    let repo = repo::Repo::open(&data_dir, durability == Durability::Durable).await?;
    let state = Arc::new(server::AppState { repo, peer_id: peer_id_for(&data_dir), nocopy_root });
    let state_for_handle = state.clone();
    let app = server::router(state);
    let (stop, stopped) = oneshot::channel::<()>();
    // Without TCP_NODELAY the last small write of a response (the end of a
    // chunked `cat` body) waits for the ACK of the previous one, which the
    // client may delay by 40 ms: every small `cat` took 40 ms more.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(StoreHandle { addr, state: state_for_handle, stop, task })
}

/// A store in this process: adds files of this machine by reference,
/// without sending them over HTTP (`--local`).
#[derive(Clone)]
pub struct LocalStore(Arc<server::AppState>);

impl LocalStore {
    /// Removes the objects added only unpinned over `older_than` ago (see
    /// `repo.rs`); returns how many.
    pub async fn collect(&self, older_than: Duration) -> Result<usize, String> {
        let state = self.0.clone();
        match tokio::task::spawn_blocking(move || state.repo.collect(older_than)).await {
            Ok(Ok(removed)) => Ok(removed.len()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Removes the oldest objects added only unpinned until the rest take at
    /// most `keep_bytes`; returns how many went.
    pub async fn collect_oldest(&self, keep_bytes: u64) -> Result<usize, String> {
        let state = self.0.clone();
        match tokio::task::spawn_blocking(move || state.repo.collect_oldest(keep_bytes)).await {
            Ok(Ok(removed)) => Ok(removed.len()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Adds `path` by reference; returns its CID and length.
    pub async fn add_file(&self, path: &Path) -> Result<(String, u64), String> {
        let imported =
            self.0.repo.add_reference(path).await.map_err(|e| format!("adding {}: {e}", path.display()))?;
        Ok((imported.cid.to_string(), imported.file_size))
    }
}

impl ipdc_common::ipfs::LocalFiles for LocalStore {
    fn open(&self, cid: &str) -> Option<std::io::Result<(std::fs::File, u64)>> {
        let cid = cid::Cid::parse(cid).ok()?;
        let entry = self.0.repo.get(&cid)?;
        Some(entry.open_unchanged(&cid).map(|file| (file, entry.size)))
    }
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalStore")
    }
}

/// A stable peer-ID-like string for the store at `data_dir`: the base58btc
/// identity multihash of an Ed25519-key-shaped protobuf, so it looks like a
/// kubo peer ID (`12D3KooW...`). It is not a real key.
fn peer_id_for(data_dir: &Path) -> String {
    let abs = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let seed = Sha256::digest(format!("ipdc-store:{}", abs.display()).as_bytes());
    let mut bytes = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    bytes.extend_from_slice(&seed);
    cid::base58_encode(&bytes)
}
