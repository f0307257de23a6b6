//! The store's data on disk and its index.
//!
//! Layout under the data directory: `blobs/<cid>` holds the bytes of each
//! added file (the file's content, not its blocks: `cat` with an offset is a
//! seek), `tmp/` holds uploads in progress, renamed into `blobs/` once their
//! CID is known. A `nocopy` add stores no bytes: the index points at the
//! user's file instead (kubo's filestore). The index (CID → path and size)
//! lives in memory; copies in `blobs/` are indexed again on start, references
//! are not.
//!
//! Invariant: an index entry's file held, when it was indexed, exactly the
//! bytes whose CID is the key (the bytes were hashed as they arrived).
//!
//! Directories (`add` of paths, `wrap-with-directory`) are their dag-pb
//! nodes in `dirs/<cid>`, indexed again on start; they are small and
//! always kept.
//!
//! Pins: a copy added with `pin=false` (agents' map outputs and parts) and
//! never with `pin=true` has a marker `unpinned/<cid>`, whose modification
//! time is its last add; [`Repo::collect`] removes such copies (kubo's
//! `repo gc`). Copies without a marker are pinned, as is everything a store
//! from before markers holds.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::io::AsyncWriteExt;

use super::cid::Cid;
use super::dir::{self, DirLink};
use super::importer::{CHUNK_SIZE, Imported, Importer, Layout};

/// The blob name prefix of a copy added as CIDv0.
const V0_PREFIX: &str = "v0-";

/// Where an object's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    /// The file's length (not the DAG's).
    pub size: u64,
    /// `true` for a copy under `blobs/`, `false` for a filestore reference.
    pub copied: bool,
    /// For a reference: the file's modification time when it was added, so
    /// a file changed since can be told from the bytes that were hashed.
    pub modified: Option<SystemTime>,
    /// The DAG the CID names (a CIDv0 copy is `blobs/v0-<cid>`).
    pub layout: Layout,
}

pub struct Repo {
    blobs: PathBuf,
    tmp: PathBuf,
    unpinned: PathBuf,
    /// Keys are CIDs in their normal form ([`Cid`]'s base32 text).
    index: Mutex<HashMap<String, Entry>>,
    dirs_path: PathBuf,
    /// Directories: their links and DAG size, by CID in its normal form.
    dirs: Mutex<HashMap<String, (Vec<DirLink>, u64)>>,
    seq: AtomicU64,
    /// Sync each copy to disk before indexing it (see `Durability`).
    sync: bool,
}

impl Repo {
    /// Opens (creating if needed) the store under `data_dir` and indexes the
    /// copies already there. `sync`: sync each new copy to disk before it is
    /// renamed into `blobs/` and indexed.
    pub async fn open(data_dir: &Path, sync: bool) -> io::Result<Repo> {
        let blobs = data_dir.join("blobs");
        let tmp = data_dir.join("tmp");
        let unpinned = data_dir.join("unpinned");
        tokio::fs::create_dir_all(&blobs).await?;
        tokio::fs::create_dir_all(&tmp).await?;
        tokio::fs::create_dir_all(&unpinned).await?;
        // Leftovers of interrupted uploads.
        let mut stale = tokio::fs::read_dir(&tmp).await?;
        while let Some(e) = stale.next_entry().await? {
            let _ = tokio::fs::remove_file(e.path()).await;
        }
        let mut index = HashMap::new();
        let mut dir = tokio::fs::read_dir(&blobs).await?;
        while let Some(e) = dir.next_entry().await? {
            let file_name = e.file_name().to_string_lossy().into_owned();
            let (name, layout) = match file_name.strip_prefix(V0_PREFIX) {
                Some(key) => (key.to_string(), Layout::V0),
                None => (file_name.clone(), Layout::V1),
            };
            let meta = e.metadata().await?;
            if let Ok(cid) = Cid::parse(&name)
                && meta.is_file()
                && cid.to_string() == name
            {
                let entry = Entry { path: e.path(), size: meta.len(), copied: true, modified: None, layout };
                index.insert(name, entry);
            }
        }
        let dirs_path = data_dir.join("dirs");
        tokio::fs::create_dir_all(&dirs_path).await?;
        let mut dirs = HashMap::new();
        let mut listing = tokio::fs::read_dir(&dirs_path).await?;
        while let Some(e) = listing.next_entry().await? {
            let name = e.file_name().to_string_lossy().into_owned();
            let node = tokio::fs::read(e.path()).await?;
            if let Some(links) = dir::decode(&node)
                && Cid::parse(&name).is_ok_and(|c| c.to_string() == name)
            {
                let tsize = node.len() as u64 + links.iter().map(|l| l.tsize).sum::<u64>();
                dirs.insert(name, (links, tsize));
            }
        }
        Ok(Repo {
            blobs,
            tmp,
            unpinned,
            index: Mutex::new(index),
            dirs_path,
            dirs: Mutex::new(dirs),
            seq: AtomicU64::new(0),
            sync,
        })
    }

    /// Removes the copies added only unpinned, last added more than
    /// `older_than` ago; returns their CIDs. A `cat` already reading one
    /// finishes (its file stays open); a later one finds it gone. The
    /// folder is read without the index lock; each object is then unindexed
    /// and its copy moved aside under the lock (adds mark and unmark under
    /// it), and deleted after. A marker that cannot be handled is logged and
    /// skipped.
    pub fn collect(&self, older_than: std::time::Duration) -> io::Result<Vec<String>> {
        let cutoff = SystemTime::now().checked_sub(older_than).unwrap_or(SystemTime::UNIX_EPOCH);
        let candidates = self.marked()?.into_iter().filter(|(_, t)| *t <= cutoff).map(|(n, _)| n).collect();
        self.remove_marked(candidates, cutoff)
    }

    /// Removes the oldest copies added only unpinned until those left take
    /// at most `keep_bytes`; returns their CIDs (a bounded cache).
    pub fn collect_oldest(&self, keep_bytes: u64) -> io::Result<Vec<String>> {
        let mut marked = self.marked()?;
        marked.sort_by_key(|(_, t)| *t);
        let size = |name: &str| {
            self.index.lock().expect("index").get(name).filter(|e| e.copied).map_or(0, |e| e.size)
        };
        let mut total: u64 = marked.iter().map(|(n, _)| size(n)).sum();
        let mut candidates = Vec::new();
        let mut newest = SystemTime::UNIX_EPOCH;
        for (name, t) in marked {
            if total <= keep_bytes {
                break;
            }
            total -= size(&name);
            newest = t;
            candidates.push(name);
        }
        self.remove_marked(candidates, newest)
    }

    /// The unpinned markers and when each was last set.
    fn marked(&self) -> io::Result<Vec<(String, SystemTime)>> {
        let mut marked = Vec::new();
        for marker in std::fs::read_dir(&self.unpinned)? {
            match marker {
                Ok(m) if m.file_type().is_ok_and(|t| t.is_file()) => {
                    if let Ok(t) = m.metadata().and_then(|meta| meta.modified()) {
                        marked.push((m.file_name().to_string_lossy().into_owned(), t));
                    }
                }
                Ok(_) => {}
                Err(e) => log::warn!("repo gc: reading {}: {e}", self.unpinned.display()),
            }
        }
        Ok(marked)
    }

    /// Removes the unpinned objects `candidates` whose markers are still
    /// set no later than `cutoff`.
    fn remove_marked(&self, candidates: Vec<String>, cutoff: SystemTime) -> io::Result<Vec<String>> {
        let old_enough =
            |marker: &Path| std::fs::metadata(marker).and_then(|m| m.modified()).is_ok_and(|t| t <= cutoff);
        let mut removed = Vec::new();
        let mut aside = Vec::new();
        for name in candidates {
            let marker = self.unpinned.join(&name);
            let mut index = self.index.lock().expect("index");
            // Checked again under the lock: an add may have pinned it (marker
            // gone) or added it again (marker newer) meanwhile.
            if !old_enough(&marker) {
                continue;
            }
            if let Some(entry) = index.get(&name).filter(|e| e.copied) {
                let moved = self.tmp.join(format!("gc-{name}"));
                match std::fs::rename(&entry.path, &moved) {
                    Ok(()) => aside.push(moved),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        log::warn!("repo gc: {name}: {e}");
                        continue;
                    }
                }
                index.remove(&name);
                removed.push(name.clone());
            }
            drop(index);
            if let Err(e) = std::fs::remove_file(&marker) {
                log::warn!("repo gc: {}: {e}", marker.display());
            }
        }
        for path in aside {
            if let Err(e) = std::fs::remove_file(&path) {
                log::warn!("repo gc: {}: {e}", path.display());
            }
        }
        Ok(removed)
    }

    /// Removes `cid`'s unpinned marker (it is pinned now); synced when the
    /// store syncs, so that a power loss cannot bring the marker back.
    fn unmark(&self, cid: &str) -> io::Result<()> {
        match std::fs::remove_file(self.unpinned.join(cid)) {
            Ok(()) if self.sync => std::fs::File::open(&self.unpinned)?.sync_all(),
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Pins `cid` and, for a directory, everything under it: garbage
    /// collection leaves it alone from now on.
    pub fn pin_tree(&self, cid: &Cid) -> io::Result<()> {
        match self.dir(cid) {
            Some((links, _)) => links.iter().try_for_each(|l| self.pin_tree(&l.cid)),
            None => self.unmark(&cid.to_string()),
        }
    }

    /// Keeps a directory node (its bytes hash to `cid`).
    pub async fn put_dir(&self, cid: &Cid, node: &[u8], links: Vec<DirLink>, tsize: u64) -> io::Result<()> {
        let name = cid.to_string();
        let path = self.dirs_path.join(&name);
        if tokio::fs::metadata(&path).await.is_err() {
            let tmp = self.tmp.join(format!("dir-{}", self.seq.fetch_add(1, Ordering::Relaxed)));
            tokio::fs::write(&tmp, node).await?;
            tokio::fs::rename(&tmp, &path).await?;
        }
        self.dirs.lock().expect("dirs").insert(name, (links, tsize));
        Ok(())
    }

    /// A directory's links (each marked a folder or not) and DAG size.
    pub fn dir(&self, cid: &Cid) -> Option<(Vec<DirLink>, u64)> {
        let dirs = self.dirs.lock().expect("dirs");
        let (links, tsize) = dirs.get(&cid.to_string())?;
        let marked = links
            .iter()
            .map(|l| DirLink { is_dir: dirs.contains_key(&l.cid.to_string()), ..l.clone() })
            .collect();
        Some((marked, *tsize))
    }

    pub fn get(&self, cid: &Cid) -> Option<Entry> {
        self.index.lock().expect("index").get(&cid.to_string()).cloned()
    }

    /// Starts receiving a file, hashed in `layout`: a copy, or with
    /// `reference` a filestore reference to that (absolute, readable) file.
    pub async fn upload(&self, reference: Option<PathBuf>, layout: Layout) -> io::Result<Upload<'_>> {
        let sink = match reference {
            Some(path) => {
                let meta = tokio::fs::metadata(&path).await?;
                if !meta.is_file() {
                    return Err(io::Error::other(format!("{} is not a file", path.display())));
                }
                Sink::Reference(path)
            }
            None => {
                let n = self.seq.fetch_add(1, Ordering::Relaxed);
                let path = self.tmp.join(format!("upload-{}-{n}", std::process::id()));
                let file = tokio::fs::File::create(&path).await?;
                Sink::Copy { path, file }
            }
        };
        Ok(Upload { repo: self, importer: Importer::with_layout(layout), sink: Some(sink) })
    }
}

impl Entry {
    /// Opens the entry's file, refusing one changed since it was indexed (a
    /// referenced file can be edited by its owner; a copy can be cut short).
    pub fn open_unchanged(&self, cid: &Cid) -> io::Result<std::fs::File> {
        let file = std::fs::File::open(&self.path).map_err(|e| {
            io::Error::new(e.kind(), format!("reading {cid} from {}: {e}", self.path.display()))
        })?;
        let meta = file.metadata()?;
        if meta.len() != self.size || (!self.copied && meta.modified().ok() != self.modified) {
            return Err(io::Error::other(format!("{} changed since {cid} was added", self.path.display())));
        }
        Ok(file)
    }
}

enum Sink {
    Copy { path: PathBuf, file: tokio::fs::File },
    Reference(PathBuf),
}

/// A file being added: hashed as it arrives, and written to `tmp/` unless
/// it is a reference. Dropped unfinished, it leaves at most a temp file,
/// removed on the next start.
pub struct Upload<'a> {
    repo: &'a Repo,
    importer: Importer,
    sink: Option<Sink>,
}

impl Upload<'_> {
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.importer.update(data);
        if let Some(Sink::Copy { file, .. }) = self.sink.as_mut() {
            file.write_all(data).await?;
        }
        Ok(())
    }

    /// Computes the CID and indexes the file. Adding content already present
    /// keeps one copy (a copy is preferred to a reference, which may go
    /// stale). `pin`: kubo's flag (see the module's note on pins); a
    /// reference is never collected.
    pub async fn finish(mut self, pin: bool) -> io::Result<Imported> {
        let sink = self.sink.take().expect("finished once");
        let imported = std::mem::take(&mut self.importer).finish();
        let key = imported.cid.to_string();
        match sink {
            Sink::Reference(path) => {
                let modified = tokio::fs::metadata(&path).await?.modified().ok();
                let on_disk = import_file(&path, imported.layout).await?;
                let after = tokio::fs::metadata(&path).await?;
                if after.len() != on_disk.file_size || after.modified().ok() != modified {
                    return Err(io::Error::other(format!(
                        "{} changed while it was being hashed",
                        path.display()
                    )));
                }
                if on_disk.cid != imported.cid {
                    return Err(io::Error::other(format!(
                        "{} ({} bytes) is not the file that was sent ({} bytes)",
                        path.display(),
                        on_disk.file_size,
                        imported.file_size
                    )));
                }
                // A reference is the user's own file: pinned, as is the
                // object it names (a copy of it added unpinned before).
                let mut index = self.repo.index.lock().expect("index");
                index.entry(key.clone()).or_insert(Entry {
                    path,
                    size: imported.file_size,
                    copied: false,
                    modified,
                    layout: imported.layout,
                });
                self.repo.unmark(&key)?;
            }
            Sink::Copy { path, mut file } => {
                file.flush().await?;
                if self.repo.sync {
                    file.sync_all().await?;
                }
                drop(file);
                // One step under the index lock, so that a collection
                // cannot remove the copy between the check and the mark.
                let mut index = self.repo.index.lock().expect("index");
                let before = index.get(&key).map(|e| e.copied);
                let marker = self.repo.unpinned.join(&key);
                if pin || before == Some(false) {
                    // Pinned now, or already pinned as a reference.
                    self.repo.unmark(&key)?;
                } else if before.is_none() || marker.exists() {
                    // New, or unpinned already: (re)marked, its time now;
                    // before the copy lands, so a crash between the two
                    // cannot leave it unmarked for ever.
                    std::fs::File::create(&marker)?;
                }
                if before == Some(true) {
                    std::fs::remove_file(&path)?;
                } else {
                    let dest = match imported.layout {
                        Layout::V1 => self.repo.blobs.join(&key),
                        Layout::V0 => self.repo.blobs.join(format!("{V0_PREFIX}{key}")),
                    };
                    std::fs::rename(&path, &dest)?;
                    let entry = Entry {
                        path: dest,
                        size: imported.file_size,
                        copied: true,
                        modified: None,
                        layout: imported.layout,
                    };
                    index.insert(key, entry);
                }
            }
        }
        Ok(imported)
    }
}

impl Repo {
    /// Adds a file of this machine by reference (filestore style), hashing
    /// it once from disk: the in-process fast path of `--local`, where the
    /// submitter and the store share a disk. Not reachable over HTTP.
    pub async fn add_reference(&self, path: &Path) -> io::Result<Imported> {
        let path = std::path::absolute(path)?;
        let modified = tokio::fs::metadata(&path).await?.modified().ok();
        let imported = import_file(&path, Layout::V1).await?;
        let after = tokio::fs::metadata(&path).await?;
        if after.len() != imported.file_size || after.modified().ok() != modified {
            return Err(io::Error::other(format!(
                "{} changed while it was being added (size {} then {})",
                path.display(),
                imported.file_size,
                after.len()
            )));
        }
        let entry = Entry { path, size: imported.file_size, copied: false, modified, layout: Layout::V1 };
        let key = imported.cid.to_string();
        let mut index = self.index.lock().expect("index");
        index.entry(key.clone()).or_insert(entry);
        self.unmark(&key)?;
        drop(index);
        Ok(imported)
    }
}

/// The CID of the file at `path` in `layout`, read from disk (see [`hash_file`]).
async fn import_file(path: &Path, layout: Layout) -> io::Result<Imported> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || hash_file(&path, hashing_threads(), layout))
        .await
        .map_err(|e| io::Error::other(format!("hashing crashed: {e}")))?
}

/// Threads [`import_file`] hashes with: one per core.
fn hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Leaves one hashing thread takes at least (4 MiB): smaller files are not
/// worth a thread.
const MIN_LEAVES_PER_THREAD: usize = 16;

/// Leaves read from disk at a time by one hashing thread (1 MiB).
const READ_LEAVES: usize = 4;

/// The CID of the file at `path`: its leaves are independent sha2-256
/// digests, computed by up to `threads` threads over consecutive ranges of
/// leaves, then fed in file order to the [`Importer`], which builds the same
/// tree as when the bytes are streamed through it.
pub fn hash_file(path: &Path, threads: usize, layout: Layout) -> io::Result<Imported> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let leaves = usize::try_from(len.div_ceil(CHUNK_SIZE as u64)).map_err(io::Error::other)?;
    let threads = threads.min(leaves.div_ceil(MIN_LEAVES_PER_THREAD)).max(1);
    let per_thread = leaves.div_ceil(threads).max(1);
    let mut digests = vec![[0u8; 32]; leaves];
    std::thread::scope(|s| {
        let workers: Vec<_> = digests
            .chunks_mut(per_thread)
            .enumerate()
            .map(|(i, out)| {
                let file = &file;
                s.spawn(move || hash_leaves(file, len, i * per_thread, layout, out))
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked"))))
    })
    .map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            io::Error::other(format!("{} became shorter while it was being hashed", path.display()))
        }
        _ => e,
    })?;
    let mut importer = Importer::with_layout(layout);
    for (i, digest) in digests.iter().enumerate() {
        let at = i as u64 * CHUNK_SIZE as u64;
        importer.push_leaf(digest, (len - at).min(CHUNK_SIZE as u64) as usize);
    }
    Ok(importer.finish())
}

/// The digests of leaves `first..first + out.len()` of `file` (`len` bytes) into `out`.
fn hash_leaves(
    file: &std::fs::File,
    len: u64,
    first: usize,
    layout: Layout,
    out: &mut [[u8; 32]],
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; READ_LEAVES * CHUNK_SIZE];
    let mut done = 0;
    while done < out.len() {
        let at = (first + done) as u64 * CHUNK_SIZE as u64;
        let n = ((out.len() - done) * CHUNK_SIZE).min(buf.len()).min((len - at) as usize);
        file.read_exact_at(&mut buf[..n], at)?;
        for leaf in buf[..n].chunks(CHUNK_SIZE) {
            out[done] = layout.leaf_digest(leaf);
            done += 1;
        }
    }
    Ok(())
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if let Some(Sink::Copy { path, .. }) = self.sink.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
