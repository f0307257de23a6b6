//! What the submitter keeps between runs on this machine, under
//! `$XDG_CACHE_HOME/ipdc/` (`~/.cache/ipdc/`): the record of side files
//! sent (`run/sent.rs`), the kept store of `--local` runs, so that a
//! result's CID outlives its run and `--input-cid` works there too, and the
//! task cache's index (`tasks/`, [`crate::task_cache`]).

use std::fs::File;
use std::path::PathBuf;

/// `$XDG_CACHE_HOME/ipdc`, else `~/.cache/ipdc` (None without either).
pub fn cache_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
    };
    Some(base.join("ipdc"))
}

/// The kept `--local` store, held by this process alone while it lives.
pub struct KeptStore {
    pub dir: PathBuf,
    /// Its lock (an exclusive `flock`), released when the file closes.
    _lock: File,
}

/// Where the kept store lives and its lock file.
fn kept_store_paths() -> Option<(PathBuf, PathBuf)> {
    let base = cache_dir()?;
    Some((base.join("local-store"), base.join("local-store.lock")))
}

/// Takes the kept store for this process. `Ok(None)`: another process
/// holds it (two stores must not write one folder at once).
pub fn lock_kept_store() -> Result<Option<KeptStore>, String> {
    let Some((dir, lock_path)) = kept_store_paths() else {
        return Err("no HOME or XDG_CACHE_HOME to keep the --local store in".into());
    };
    let parent = lock_path.parent().expect("under the cache folder");
    std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {
            // Jobs' data: this user's alone, whatever the umask.
            use std::os::unix::fs::DirBuilderExt;
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(format!("creating {}: {e}", dir.display()));
                }
                _ => {}
            }
            Ok(Some(KeptStore { dir, _lock: lock }))
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("locking {}: {e}", lock_path.display())),
    }
}

/// `ipdc-submit store gc`: removes the kept store (every result and object
/// `--local` runs kept) and the task cache's index (`tasks/`, of every
/// cluster: its entries only say where outputs were); refused while a
/// `--local` run uses the store.
pub fn empty_kept_store() -> Result<(), String> {
    let Some(kept) = lock_kept_store()? else {
        return Err("a --local run is using the kept store: wait until it ends".into());
    };
    let bytes = folder_bytes(&kept.dir);
    match std::fs::remove_dir_all(&kept.dir) {
        Ok(()) if bytes > 0 => {
            println!(
                "removed the kept --local store {} ({})",
                kept.dir.display(),
                crate::run::human_bytes(bytes)
            )
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("removing {}: {e}", kept.dir.display()));
        }
        _ => println!("the kept --local store {} is empty", kept.dir.display()),
    }
    let tasks = kept.dir.with_file_name("tasks");
    let entries = std::fs::read_dir(&tasks).map_or(0, |d| d.count());
    match std::fs::remove_dir_all(&tasks) {
        Ok(()) => println!("removed the task cache's index {} ({entries} entries)", tasks.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing {}: {e}", tasks.display())),
    }
    Ok(())
}

/// Bytes of the files under `dir` (0 if it does not exist).
pub fn folder_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => folder_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}
