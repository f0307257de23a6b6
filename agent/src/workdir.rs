//! The agent's work dir: checked writable, held by one agent at a time, and
//! cleared at start of the folders that interrupted jobs left behind (a
//! power cut mid-task leaves its spills there). Claiming it also settles,
//! once per process, how user code will be confined (containment, Landlock)
//! and says so in the log. The runner is not written here: it is sealed in
//! memory (see `ipdc_common::python`), so nothing in this folder, which
//! every task's code may reach, is ever imported by a later task.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use ipdc_common::protocol::{looks_like_job_id, validate_name};

/// Entries of the work dir's root whose names start with this are the
/// agent's own (`.lock`, the sweep's record, the runner's folder): the sweep
/// of what jobs leave there never removes them (`sweep.rs`). Name anything
/// the agent keeps in the root so.
pub const OWN_PREFIX: &str = ".";

/// Held for as long as the agent runs: while it is, no other agent may
/// use the same work dir.
pub struct WorkDir {
    root: PathBuf,
    _lock: File,
}

impl WorkDir {
    /// The folder of job `job`, or None when `job` is not a valid name (the
    /// only names that cannot lead outside the work dir).
    pub fn job_dir(&self, job: &str) -> Option<PathBuf> {
        validate_name("job id", job).ok().map(|()| self.root.join(job))
    }
}

/// Checks `dir`, locks it and removes the job folders of earlier runs.
/// Only folders named like job ids are removed: anything else an operator
/// keeps there stays.
pub fn claim(dir: &Path) -> Result<WorkDir, String> {
    let shown = dir.display();
    crate::check::check_work_dir(dir).map_err(|e| format!("work dir {shown}: {e}"))?;
    ipdc_common::python::log_confinement();
    let lock = File::create(dir.join(".lock")).map_err(|e| format!("work dir {shown}: {e}"))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(format!(
                "work dir {shown} is in use by another agent on this machine: give each agent its own work_dir (and name)"
            ));
        }
        Err(TryLockError::Error(e)) => return Err(format!("work dir {shown}: cannot lock it: {e}")),
    }
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("work dir {shown}: {e}"))?.flatten() {
        let name = entry.file_name();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && name.to_str().is_some_and(looks_like_job_id) {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => log::warn!("cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
    if removed > 0 {
        log::info!("removed {removed} folder(s) of jobs interrupted before this start from {shown}");
    }
    Ok(WorkDir { root: dir.to_path_buf(), _lock: lock })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_job_folders_go_and_everything_else_stays() {
        let d = tempfile::tempdir().unwrap();
        let old_job = d.path().join("wordcount-mwwtc2sy-d46ad903c424");
        std::fs::create_dir_all(old_job.join("m-00000-a1/spill")).unwrap();
        std::fs::create_dir(d.path().join("photos")).unwrap();
        std::fs::write(d.path().join("notes-mwwtc2sy-d46ad903c424"), "a file, not a folder").unwrap();
        let held = claim(d.path()).unwrap();
        assert!(!old_job.exists());
        assert!(d.path().join("photos").is_dir());
        assert!(d.path().join("notes-mwwtc2sy-d46ad903c424").is_file());
        // A second agent on the same folder is refused while the first runs.
        let e = claim(d.path()).err().unwrap();
        assert!(e.contains("is in use by another agent"), "{e}");
        drop(held);
        assert!(claim(d.path()).is_ok());
    }
}
