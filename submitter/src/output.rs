//! Writing a finished job's result: the parts fetched from IPFS, the summary
//! and `_SUCCESS`, all in a temporary folder beside the output that is renamed
//! into place last, so a folder at the output path is always complete.
//!
//! The output is claimed before the job starts ([`Target::claim`]): what it
//! would replace is checked then, and the temporary folder is made then, so
//! a place that cannot be written fails the job before any work is done.

use std::path::{Component, Path, PathBuf};

use ipdc_common::ipfs::IpfsClient;

/// The file an IPDC result holds last; `--overwrite` replaces only folders
/// that have it.
const SUCCESS: &str = "_SUCCESS";

/// A job's output folder, claimed: its temporary folder exists beside it.
/// Dropped without [`Target::write`] succeeding (the job failed, or the
/// user pressed Ctrl-C), it removes the temporary folder and the parent
/// folders it created.
pub struct Target {
    out: PathBuf,
    parent: PathBuf,
    name: String,
    job: String,
    tmp: PathBuf,
    overwrite: bool,
    /// The first folder above `out` that claiming it created, if any.
    created: Option<PathBuf>,
    /// The temporary folder is gone (renamed into place) or must stay.
    done: bool,
}

impl Target {
    /// The temporary folder, where parts are fetched as their tasks finish.
    pub fn temporary_folder(&self) -> &Path {
        &self.tmp
    }

    /// Checks that the job may write `out` and makes its temporary folder.
    /// It refuses an output that exists (unless `overwrite` and it is an
    /// earlier IPDC result), one that is the current folder or above it, and
    /// one holding any of `keep` (the job's own files).
    pub fn claim(out: &Path, overwrite: bool, job: &str, keep: &[&Path]) -> Result<Target, String> {
        let shown = out.display();
        let abs = absolute(out).map_err(|e| format!("output {shown}: {e}"))?;
        let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
            return Err(format!("output {shown}: name a folder to create, e.g. --out result"));
        };
        let name = name.to_string_lossy().into_owned();
        if std::env::current_dir().is_ok_and(|cwd| cwd.starts_with(&abs)) {
            return Err(format!(
                "output {shown} is the current folder or holds it: name a new folder, e.g. --out result"
            ));
        }
        if out.symlink_metadata().is_ok() {
            if !overwrite {
                return Err(format!(
                    "output folder {shown} already exists: remove it, choose another with --out, or pass --overwrite"
                ));
            }
            if !out.join(SUCCESS).is_file() {
                return Err(format!(
                    "--overwrite replaces only an earlier IPDC result (a folder holding {SUCCESS}), and {shown} is not one: remove it yourself or choose another --out"
                ));
            }
            let real_out = std::fs::canonicalize(out).map_err(|e| format!("output {shown}: {e}"))?;
            for k in keep {
                if std::fs::canonicalize(k).is_ok_and(|k| k.starts_with(&real_out)) {
                    return Err(format!(
                        "output {shown} holds {}, a file of this job: choose an output folder outside the job's files",
                        k.display()
                    ));
                }
            }
        }
        let created = parent.ancestors().filter(|a| !a.exists()).last().map(Path::to_path_buf);
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("output {shown}: cannot create the folder {}: {e}", parent.display()))?;
        let tmp = parent.join(format!(".{name}.{job}.tmp"));
        let mut target = Target {
            out: out.to_path_buf(),
            parent: parent.to_path_buf(),
            name,
            job: job.to_string(),
            tmp,
            overwrite,
            created,
            done: true, // nothing to clean up until the folder exists
        };
        std::fs::create_dir(&target.tmp)
            .map_err(|e| format!("cannot write the output beside {shown}: {e}"))?;
        target.done = false;
        Ok(target)
    }

    /// Fetches `parts` (CIDs in partition order) and writes them with
    /// `summary` as the output folder. Returns the total bytes of the parts.
    /// When the output cannot take its place at the end (another job wrote
    /// there meanwhile), the result is kept beside it and the error says where.
    pub async fn write(
        mut self,
        ipfs: &IpfsClient,
        parts: &Parts<'_>,
        summary: &serde_json::Value,
    ) -> Result<u64, String> {
        let total = fill(ipfs, parts, summary, &self.tmp).await?;
        let out = self.out.clone();
        let shown = out.display();
        let exists = out.symlink_metadata().is_ok();
        let placed = if !exists {
            // Fails if a folder with files appeared there meanwhile.
            std::fs::rename(&self.tmp, &out)
        } else if !self.overwrite {
            Err(std::io::Error::other("it was created while the job ran"))
        } else if !out.join(SUCCESS).is_file() {
            Err(std::io::Error::other(format!("it is no longer an IPDC result (no {SUCCESS})")))
        } else {
            // Replace the older result only now that the new one is complete.
            let old = self.parent.join(format!(".{}.{}.old", self.name, self.job));
            std::fs::rename(&out, &old).and_then(|()| match std::fs::rename(&self.tmp, &out) {
                Ok(()) => {
                    let _ = std::fs::remove_dir_all(&old);
                    Ok(())
                }
                Err(e) => {
                    let _ = std::fs::rename(&old, &out);
                    Err(e)
                }
            })
        };
        if let Err(e) = placed {
            self.done = true; // keep the result, under a name the user can see
            let kept = self.parent.join(format!("{}.{}", self.name, self.job));
            let kept = if std::fs::rename(&self.tmp, &kept).is_ok() { kept } else { self.tmp.clone() };
            return Err(format!(
                "cannot put the result at {shown} ({e}); it is complete in {}",
                kept.display()
            ));
        }
        self.done = true;
        Ok(total)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
        if let Some(top) = &self.created {
            // Only folders left empty: remove_dir refuses the others.
            for dir in self.parent.ancestors() {
                if std::fs::remove_dir(dir).is_err() || dir == top {
                    break;
                }
            }
        }
    }
}

/// `path` made absolute against the current folder, with `.` and `..`
/// resolved by name (the output may not exist yet).
fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let mut abs = if path.is_absolute() { PathBuf::new() } else { std::env::current_dir()? };
    for c in path.components() {
        match c {
            Component::ParentDir => {
                abs.pop();
            }
            Component::CurDir => {}
            other => abs.push(other),
        }
    }
    Ok(abs)
}

/// What goes into the output folder besides `summary.json`.
pub struct Parts<'a> {
    /// CIDs (and sizes) of the parts, in order.
    pub cids: &'a [(String, u64)],
    /// Their names: `part-` (a reduce's) or `part-m-` (a map-only job's), then the number.
    pub prefix: &'a str,
    /// (task, CID) of what each task's winning attempt printed, for `_logs/TASK.log`.
    pub logs: &'a [(String, String)],
    /// Fetch the parts into the folder (else they stay in IPFS: `--no-fetch`).
    pub fetch: bool,
    /// Parts already fetched into the temporary folder as their tasks
    /// finished: taken when the CID is the part's.
    pub early: &'a crate::run::early::Fetched,
}

/// The name of part `i` of a result whose parts are named `prefix…`.
pub fn part_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:05}")
}

impl Parts<'_> {
    /// The name of part `i`.
    pub fn name(&self, i: usize) -> String {
        part_name(self.prefix, i)
    }
}

async fn fill(
    ipfs: &IpfsClient,
    parts: &Parts<'_>,
    summary: &serde_json::Value,
    dir: &Path,
) -> Result<u64, String> {
    let mut total = 0;
    for (i, (cid, _)) in parts.cids.iter().enumerate().filter(|_| parts.fetch) {
        let path: PathBuf = dir.join(parts.name(i));
        if let Some((_, early)) = parts.early.get(&i).filter(|(c, _)| c == cid)
            && let Ok(meta) = std::fs::metadata(early)
            && std::fs::rename(early, &path).is_ok()
        {
            total += meta.len();
            continue;
        }
        total += ipfs.cat_to_file(cid, &path).await.map_err(|e| format!("fetching part {i}: {e}"))?;
    }
    for (_, early) in parts.early.values() {
        let _ = std::fs::remove_file(early); // parts made again since
    }
    if !parts.logs.is_empty() {
        let logs = dir.join("_logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
        for (task, cid) in parts.logs {
            // Task ids are checked (`m-00001`): a plain file name.
            let path = logs.join(format!("{task}.log"));
            ipfs.cat_to_file(cid, &path)
                .await
                .map_err(|e| format!("fetching the log of task {task}: {e}"))?;
        }
    }
    let text = serde_json::to_string_pretty(summary).expect("a JSON value serializes");
    std::fs::write(dir.join("summary.json"), text + "\n")
        .map_err(|e| format!("writing summary.json: {e}"))?;
    let report = crate::report::REPORT;
    std::fs::write(dir.join(report), crate::report::render(summary))
        .map_err(|e| format!("writing {report}: {e}"))?;
    // _SUCCESS last: its presence means everything before it is complete.
    std::fs::write(dir.join(SUCCESS), b"").map_err(|e| format!("writing {SUCCESS}: {e}"))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(out: &Path, overwrite: bool, keep: &[&Path]) -> Result<Target, String> {
        Target::claim(out, overwrite, "job-1", keep)
    }

    #[test]
    fn an_existing_output_is_kept_unless_it_is_a_result_and_overwrite_is_given() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("thesis.txt"), "mine").unwrap();
        let e = claim(&out, false, &[]).err().unwrap();
        assert!(e.contains("already exists") && e.contains("--overwrite"), "{e}");
        let e = claim(&out, true, &[]).err().unwrap();
        assert!(e.contains("replaces only an earlier IPDC result"), "{e}");
        assert_eq!(std::fs::read_to_string(out.join("thesis.txt")).unwrap(), "mine");
        std::fs::write(out.join(SUCCESS), "").unwrap();
        let t = claim(&out, true, &[]).unwrap();
        assert!(d.path().join(".out.job-1.tmp").is_dir());
        drop(t);
        assert!(!d.path().join(".out.job-1.tmp").exists(), "a dropped claim leaves nothing");
        // A file is never replaced.
        std::fs::write(d.path().join("data.dat"), "a b\n").unwrap();
        let e = claim(&d.path().join("data.dat"), true, &[]).err().unwrap();
        assert!(e.contains("not one"), "{e}");
    }

    #[test]
    fn an_output_holding_the_jobs_files_or_the_current_folder_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let job = d.path().join("old-result/job");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(d.path().join("old-result").join(SUCCESS), "").unwrap();
        std::fs::write(job.join("Map.py"), "").unwrap();
        let e = claim(&d.path().join("old-result"), true, &[&job.join("Map.py")]).err().unwrap();
        assert!(e.contains("holds") && e.contains("Map.py"), "{e}");
        for out in [".", "..", "/"] {
            let e = claim(Path::new(out), true, &[]).err().unwrap();
            assert!(e.contains("name a") || e.contains("current folder"), "{out}: {e}");
        }
    }

    #[test]
    fn parents_are_created_and_removed_again_if_the_job_fails() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("a/b/out");
        let t = claim(&out, false, &[]).unwrap();
        assert!(d.path().join("a/b/.out.job-1.tmp").is_dir());
        drop(t);
        assert!(!d.path().join("a").exists());
        // A parent that is a file fails the claim, before any work.
        std::fs::write(d.path().join("file"), "").unwrap();
        let e = claim(&d.path().join("file/out"), false, &[]).err().unwrap();
        assert!(e.contains("cannot create the folder"), "{e}");
    }
}
