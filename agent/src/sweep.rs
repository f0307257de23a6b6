//! Sweeping the work dir's root of what jobs left there.
//!
//! User code runs in its attempt's folder (`ROOT/JOB/TASK-aN/`, removed
//! afterwards, its temporary files and home inside it), but it may write
//! beside it (`../../x`). The root also holds the agent's own files and may
//! hold an operator's. The rule, for each entry of the root:
//!
//! 1. a name starting with [`OWN_PREFIX`] (`.lock`, this module's record,
//!    the runner's folder) is the agent's own: never removed;
//! 2. a folder named like a job id is a job folder: kept while the agent
//!    holds that job, removed otherwise;
//! 3. an entry that was there while the agent held no job is the operator's
//!    and stays: before the first attempt of a busy spell starts, the agent
//!    records the root's entries (in memory, and in [`RECORD`] in case it
//!    stops without sweeping);
//! 4. anything else appeared while jobs ran, and is removed: at the end of
//!    each job, and at start when the last run stopped while holding jobs
//!    (its record is still there then).
//!
//! So an operator's entry added to the root while the agent holds a job (or
//! while it is stopped after a crash) is taken for a job's and removed: keep
//! your own files out of the work dir, or name them starting with `.`.
//! Entries are moved out of the way at once (a rename, so that the decision
//! is taken against the jobs held at that moment) and deleted in the
//! background.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use ipdc_common::protocol::looks_like_job_id;
use log::{info, warn};

pub use crate::workdir::OWN_PREFIX;

/// The root's entries recorded before a busy spell, one per line in hex.
pub const RECORD: &str = ".kept-entries";
/// What a sweep moved aside, before it is deleted.
const SWEPT: &str = ".swept-";

/// What a sweep found in the root.
enum Kind {
    Own,
    JobFolder(String),
    Other,
}

fn kind(name: &OsStr, is_dir: bool) -> Kind {
    if name.as_bytes().starts_with(OWN_PREFIX.as_bytes()) {
        Kind::Own
    } else {
        match name.to_str() {
            Some(job) if is_dir && looks_like_job_id(job) => Kind::JobFolder(job.to_string()),
            _ => Kind::Other,
        }
    }
}

/// The root's entries with their kinds (unreadable ones are skipped).
fn entries(root: &Path) -> Vec<(OsString, Kind)> {
    let Ok(dir) = std::fs::read_dir(root) else { return Vec::new() };
    dir.flatten()
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let name = e.file_name();
            let k = kind(&name, is_dir);
            (name, k)
        })
        .collect()
}

/// Removes `path` without following links: a folder with what is in it.
fn remove(path: &Path) {
    let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    let removed = if is_dir { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    if let Err(e) = removed
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!("cannot remove {}: {e}", path.display());
    }
}

fn shown(names: &[OsString]) -> String {
    let mut v: Vec<String> = names.iter().take(5).map(|n| n.to_string_lossy().into_owned()).collect();
    if names.len() > 5 {
        v.push(format!("and {} more", names.len() - 5));
    }
    v.join(", ")
}

fn read_record(root: &Path) -> Option<HashSet<OsString>> {
    let text = std::fs::read_to_string(root.join(RECORD)).ok()?;
    let unhex = |l: &str| -> Option<OsString> {
        let bytes = (0..l.len()).step_by(2).map(|i| u8::from_str_radix(l.get(i..i + 2)?, 16).ok());
        bytes.collect::<Option<Vec<u8>>>().map(OsString::from_vec)
    };
    Some(text.lines().filter(|l| !l.is_empty()).filter_map(unhex).collect())
}

fn write_record(root: &Path, kept: &HashSet<OsString>) -> std::io::Result<()> {
    let mut text = String::new();
    for name in kept {
        text.extend(name.as_bytes().iter().map(|b| format!("{b:02x}")));
        text.push('\n');
    }
    let tmp = root.join(format!("{RECORD}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, root.join(RECORD))
}

/// The work dir root's sweeper (see the module's rule).
pub struct Sweeper {
    root: PathBuf,
    /// The operator's entries, while the agent is in a busy spell.
    kept: Option<HashSet<OsString>>,
    seq: u64,
}

impl Sweeper {
    pub fn new(root: &Path) -> Self {
        Sweeper { root: root.to_path_buf(), kept: None, seq: 0 }
    }

    /// Before an attempt starts: at the start of a busy spell, records the
    /// root's entries (every one there now is the operator's).
    pub fn before_attempt(&mut self) {
        if self.kept.is_some() {
            return;
        }
        let kept: HashSet<OsString> = entries(&self.root)
            .into_iter()
            .filter(|(_, k)| matches!(k, Kind::Other))
            .map(|(n, _)| n)
            .collect();
        if let Err(e) = write_record(&self.root, &kept) {
            // Only a sweep at the next start needs it; without it, that one removes nothing.
            warn!("work dir {}: cannot record its entries in {RECORD}: {e}", self.root.display());
        }
        self.kept = Some(kept);
    }

    /// Moves aside what jobs left in the root: job folders of jobs not
    /// `held`, and entries made during the busy spell. `idle`: no job is
    /// held and no attempt runs, so the spell is over (its record goes).
    /// Returns what to delete (in the background).
    pub fn sweep(&mut self, held: impl Fn(&str) -> bool, idle: bool) -> Vec<PathBuf> {
        let Some(kept) = &self.kept else { return Vec::new() };
        let mut aside = Vec::new();
        let mut left = Vec::new();
        for (name, k) in entries(&self.root) {
            let doomed = match &k {
                Kind::Own => false,
                Kind::JobFolder(job) => !held(job),
                Kind::Other => !kept.contains(&name),
            };
            if !doomed {
                continue;
            }
            if matches!(k, Kind::Other) {
                left.push(name.clone());
            }
            self.seq += 1;
            let from = self.root.join(&name);
            let to = self.root.join(format!("{SWEPT}{}", self.seq));
            match std::fs::rename(&from, &to) {
                Ok(()) => aside.push(to),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!("cannot remove {}: {e}", from.display()),
            }
        }
        if !left.is_empty() {
            info!(
                "removing {} entr{} that jobs left in the work dir {}: {}",
                left.len(),
                if left.len() == 1 { "y" } else { "ies" },
                self.root.display(),
                shown(&left)
            );
        }
        if idle {
            self.kept = None;
            let _ = std::fs::remove_file(self.root.join(RECORD));
        }
        aside
    }

    /// Deletes what [`Sweeper::sweep`] moved aside.
    pub fn delete(paths: Vec<PathBuf>) {
        paths.iter().for_each(|p| remove(p));
    }
}

/// At start, after the job folders of earlier runs went: when the last run
/// stopped in a busy spell (its record is there), removes the entries made
/// during it; and whatever an interrupted sweep had moved aside. Returns
/// how many entries of jobs were removed.
pub fn at_start(root: &Path) -> usize {
    let record = read_record(root);
    let mut left = Vec::new();
    for (name, k) in entries(root) {
        let doomed = match (&k, &record) {
            (Kind::Own, _) => name.as_bytes().starts_with(SWEPT.as_bytes()),
            (Kind::JobFolder(_), _) => true,
            (Kind::Other, Some(kept)) => {
                let made = !kept.contains(&name);
                if made {
                    left.push(name.clone());
                }
                made
            }
            (Kind::Other, None) => false,
        };
        if doomed {
            remove(&root.join(&name));
        }
    }
    let _ = std::fs::remove_file(root.join(RECORD));
    if !left.is_empty() {
        info!(
            "removed {} entr{} that jobs of an earlier run left in the work dir {}: {}",
            left.len(),
            if left.len() == 1 { "y" } else { "ies" },
            root.display(),
            shown(&left)
        );
    }
    left.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELD: &str = "wc-mwwtc2sy-d46ad903c424";
    const ENDED: &str = "wc-mwwtc2sy-00000000beef";

    fn names(root: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        v.sort();
        v
    }

    fn touch(path: &Path) {
        std::fs::write(path, "x").unwrap();
    }

    #[test]
    fn what_jobs_leave_goes_and_the_agents_and_operators_entries_stay() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        touch(&root.join(".lock"));
        std::fs::create_dir(root.join("photos")).unwrap();
        touch(&root.join("notes-mwwtc2sy-d46ad903c424"));
        let mut s = Sweeper::new(root);
        // Nothing ran yet: nothing to sweep.
        assert!(s.sweep(|_| false, true).is_empty());
        s.before_attempt();
        assert!(root.join(RECORD).is_file(), "recorded in case the agent stops mid-spell");
        // Two jobs run; their code writes beside its folder.
        std::fs::create_dir_all(root.join(HELD).join("m-00000-a1")).unwrap();
        std::fs::create_dir_all(root.join(ENDED).join("m-00000-a1")).unwrap();
        touch(&root.join("x"));
        std::fs::create_dir_all(root.join("made/deep")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        touch(&root.join(".hidden")); // taken for the agent's own: it stays
        s.before_attempt(); // a later attempt of the same spell records nothing new
        let aside = s.sweep(|job| job == HELD, false);
        assert_eq!(aside.len(), 4, "{aside:?}");
        Sweeper::delete(aside);
        assert_eq!(names(root), [".hidden", RECORD, ".lock", "notes-mwwtc2sy-d46ad903c424", "photos", HELD]);
        assert!(Path::new("/etc/passwd").exists(), "a link goes, not what it names");
        // The last job ends: its folder goes, and so does the record.
        touch(&root.join(HELD).join("m-00000-a1").join("spill"));
        Sweeper::delete(s.sweep(|_| false, true));
        assert_eq!(names(root), [".hidden", ".lock", "notes-mwwtc2sy-d46ad903c424", "photos"]);
        // Added while the agent was idle: the operator's, kept in the next spell.
        touch(&root.join("added-later"));
        s.before_attempt();
        touch(&root.join("y"));
        Sweeper::delete(s.sweep(|_| false, true));
        assert_eq!(names(root), [".hidden", ".lock", "added-later", "notes-mwwtc2sy-d46ad903c424", "photos"]);
    }

    #[test]
    fn a_start_after_a_run_that_stopped_mid_spell_removes_what_its_jobs_left() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir(root.join("photos")).unwrap();
        let odd = OsString::from_vec(b"odd\nname\xff".to_vec());
        touch(&root.join(&odd));
        let mut s = Sweeper::new(root);
        s.before_attempt();
        touch(&root.join("x"));
        std::fs::create_dir(root.join(".swept-3")).unwrap(); // an interrupted sweep's
        drop(s); // the agent dies
        assert_eq!(at_start(root), 1);
        let mut want = vec!["odd\nname\u{fffd}".to_string(), "photos".to_string()];
        want.sort();
        assert_eq!(names(root), want);
        // Without a record (a clean stop, or a first start) only the agent's leftovers go.
        touch(&root.join("z"));
        assert_eq!(at_start(root), 0);
        assert!(root.join("z").exists());
    }
}
