//! The task cache: a finished task's output, found again by what decides
//! it, so that a job (or a step, or an iteration) never runs a task it has
//! run before while its outputs are still in IPFS.
//!
//! A task's identity is a SHA-256 over what determines its output and
//! nothing else (not the job id, the agent, the limits): the cluster it ran
//! on, the record format's version, the executor, the number of reducers,
//! the parameters, the side files' CIDs, the step's record format, and
//! - for a map: the mapper's CID (and the reducer's when it runs as the
//!   combiner) and its input (CID, byte range, name, compression; or its
//!   files);
//! - for a reduce: the reducer's CID, its partition and its input CIDs (the
//!   maps' outputs, content addressed: the same maps give the same ones).
//!
//! So editing only the reducer (without a combiner) reuses every map. The
//! index is one small JSON file per identity under the cache folder
//! (`tasks/`), written whole (a rename) so that two submitters never see
//! half of one. An entry only says where the output was: it counts only
//! after the store still has every output ([`crate::run::reuse`]).

use std::path::PathBuf;

use ipdc_common::protocol::{CodeSpec, Executor, TaskKind, TaskOutput};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version of what map outputs and parts hold (the record framing, the
/// partitioning, typed lines): raised when any of them changes, so that no
/// output of an older format is reused.
pub const RECORD_VERSION: u32 = 1;

/// Entries kept at most; past that, the oldest go first.
const MAX_ENTRIES: usize = 20_000;

/// One cached task: its output as the job took it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub output: TaskOutput,
    /// The agents whose results agreed on it (more than one: verified).
    pub agreed_by: Vec<String>,
}

/// The index of one cluster's finished tasks.
pub struct TaskCache {
    dir: PathBuf,
    /// Which cluster (its broker, name and IPFS API; or the kept `--local`
    /// store): outputs are looked for only where they were made.
    scope: String,
}

impl TaskCache {
    /// The index under the cache folder, for tasks of `scope`; None when
    /// there is no cache folder or it cannot be made.
    pub fn open(scope: String) -> Option<TaskCache> {
        let dir = crate::cache::cache_dir()?.join("tasks");
        // What this user's jobs computed: theirs alone, whatever the umask.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).ok()?;
        let cache = TaskCache { dir, scope };
        cache.bound(MAX_ENTRIES);
        Some(cache)
    }

    /// A cache in `dir` (tests).
    pub fn in_dir(dir: PathBuf, scope: &str) -> TaskCache {
        TaskCache { dir, scope: scope.to_string() }
    }

    /// The identity of a task of a job with `code` and `reducers`.
    pub fn key(&self, code: &CodeSpec, reducers: u32, kind: &TaskKind) -> String {
        let identity = identity(&self.scope, code, reducers, kind);
        let digest = Sha256::digest(serde_json::to_vec(&identity).expect("JSON serializes"));
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The entry of `key`, if there is one that reads.
    pub fn get(&self, key: &str) -> Option<Entry> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records `entry` under `key` (a failure to write costs only a re-run).
    pub fn put(&self, key: &str, entry: &Entry) {
        let tmp = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        let body = serde_json::to_vec(entry).expect("an entry serializes");
        if std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, self.path(key))).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// Drops `key`'s entry (its outputs are gone).
    pub fn forget(&self, key: &str) {
        let _ = std::fs::remove_file(self.path(key));
    }

    /// Keeps at most `max` entries, removing the least recently written.
    fn bound(&self, max: usize) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> =
            dir.flatten().filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path()))).collect();
        if entries.len() <= max {
            return;
        }
        entries.sort();
        for (_, path) in &entries[..entries.len() - max] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The executor a job's tasks are meant to run with: only outputs of that
/// executor are cached (a Python job's task that an agent without Python
/// ran with the native fallback is not its mapper's output).
pub fn intended_executor(code: &CodeSpec) -> Executor {
    match &code.force_native {
        Some(name) => Executor::Native(name.clone()),
        None => Executor::Python,
    }
}

/// What determines a task's output, as one JSON value (objects' keys
/// sorted: the same task always gives the same bytes).
fn identity(scope: &str, code: &CodeSpec, reducers: u32, kind: &TaskKind) -> serde_json::Value {
    let side_files: Vec<(&str, &str)> =
        code.side_files.iter().map(|f| (f.path.as_str(), f.cid.as_str())).collect();
    let map = (code.map_cid.as_str(), code.files.map.as_str());
    let reduce = (code.reduce_cid.as_str(), code.files.reduce.as_str());
    let code_of_task = match kind {
        TaskKind::Reduce { .. } => serde_json::json!({ "reduce": reduce }),
        _ if code.combiner => serde_json::json!({ "map": map, "combiner": reduce }),
        _ => serde_json::json!({ "map": map }),
    };
    serde_json::json!({
        "record_version": RECORD_VERSION,
        "scope": scope,
        "executor": intended_executor(code).to_string(),
        "reducers": reducers,
        "params": code.params,
        "side_files": side_files,
        "step_io": code.step_io,
        "code": code_of_task,
        "task": kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipdc_common::protocol::SideFile;

    fn code() -> CodeSpec {
        CodeSpec { map_cid: "bafymap".into(), reduce_cid: "bafyreduce".into(), ..CodeSpec::default() }
    }

    fn map(start: u64) -> TaskKind {
        TaskKind::Map {
            input_cid: "bafyin".into(),
            input_size: 100,
            split: 0,
            start,
            end: 100,
            name: "in.txt".into(),
            compression: None,
        }
    }

    fn reduce(inputs: &[&str]) -> TaskKind {
        TaskKind::Reduce { partition: 0, inputs: inputs.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn an_identity_changes_with_what_decides_the_output_and_nothing_else() {
        let c = TaskCache::in_dir(PathBuf::from("/nonexistent"), "hub");
        let base = c.key(&code(), 2, &map(0));
        assert_eq!(base, c.key(&code(), 2, &map(0)), "the same task, the same key");
        assert_eq!(base.len(), 64);
        // The limits decide nothing about the output.
        let mut limited = code();
        limited.limits.memory_mb = Some(7);
        assert_eq!(base, c.key(&limited, 2, &map(0)));
        // Without a combiner a map does not run the reducer: editing it keeps every map.
        let mut new_reduce = code();
        new_reduce.reduce_cid = "bafyother".into();
        assert_eq!(base, c.key(&new_reduce, 2, &map(0)));
        assert_ne!(c.key(&code(), 2, &reduce(&["a"])), c.key(&new_reduce, 2, &reduce(&["a"])));
        // With one, it does.
        let mut combined = code();
        combined.combiner = true;
        let mut combined_new = new_reduce.clone();
        combined_new.combiner = true;
        assert_ne!(c.key(&combined, 2, &map(0)), c.key(&combined_new, 2, &map(0)));
        // A reduce does not depend on the mapper, only on its inputs.
        let mut new_map = code();
        new_map.map_cid = "bafyother".into();
        assert_eq!(c.key(&code(), 2, &reduce(&["a"])), c.key(&new_map, 2, &reduce(&["a"])));
        assert_ne!(c.key(&code(), 2, &reduce(&["a"])), c.key(&code(), 2, &reduce(&["b"])));
        // Everything else that decides a map's output changes its key.
        let mut changed = vec![
            c.key(&code(), 3, &map(0)),
            c.key(&code(), 2, &map(1)),
            c.key(&new_map, 2, &map(0)),
            TaskCache::in_dir(PathBuf::new(), "other hub").key(&code(), 2, &map(0)),
        ];
        let mut with = code();
        with.params.insert("k".into(), 3.into());
        changed.push(c.key(&with, 2, &map(0)));
        let mut with = code();
        with.side_files.push(SideFile { path: "m.bin".into(), cid: "bafyside".into(), size: 1 });
        changed.push(c.key(&with, 2, &map(0)));
        let mut with = code();
        with.force_native = Some("wordcount".into());
        changed.push(c.key(&with, 2, &map(0)));
        let mut with = code();
        with.step_io.pairs_in = true;
        changed.push(c.key(&with, 2, &map(0)));
        let mut with = code();
        with.files.map = "wc.py".into();
        changed.push(c.key(&with, 2, &map(0)));
        for k in &changed {
            assert_ne!(k, &base);
        }
    }

    #[test]
    fn entries_are_written_whole_read_back_forgotten_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let c = TaskCache::in_dir(dir.path().to_path_buf(), "local");
        let entry = Entry {
            output: TaskOutput { cids: vec!["bafyout".into()], sizes: vec![9], ..TaskOutput::default() },
            agreed_by: vec!["pi-1".into()],
        };
        let key = c.key(&code(), 1, &map(0));
        assert_eq!(c.get(&key), None);
        c.put(&key, &entry);
        assert_eq!(c.get(&key), Some(entry.clone()));
        c.forget(&key);
        assert_eq!(c.get(&key), None);
        for start in 0..5 {
            c.put(&c.key(&code(), 1, &map(start)), &entry);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        c.bound(2);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2);
        assert!(c.get(&c.key(&code(), 1, &map(4))).is_some(), "the newest stay");
        assert!(c.get(&c.key(&code(), 1, &map(0))).is_none(), "the oldest go");
    }
}
