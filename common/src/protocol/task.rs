//! What a controller sends an agent: assignments of task attempts (the
//! [`Task`], with its [`CodeSpec`]), cancels, job ends and queries, as one
//! [`TaskMessage`] on the agent's task topic.

use serde::{Deserialize, Serialize};

use super::names::is_plain_code_file_name;

/// How a task's user code runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CodeSpec {
    /// CID of Map.py and Reduce.py in IPFS.
    pub map_cid: String,
    pub reduce_cid: String,
    /// Run the combiner on map output (Reduce.py's `combine`, else its `reduce`).
    pub combiner: bool,
    /// Run this native executor instead of Python on every agent (`--native`).
    pub force_native: Option<String>,
    /// Run this native executor on agents that have no Python.
    pub native_fallback: Option<String>,
    /// Limits on each task's user code (the agent lowers them to its own maximums).
    #[serde(default)]
    pub limits: TaskLimits,
    /// What the user calls the two files (absent from older submitters).
    #[serde(default)]
    pub files: CodeFiles,
    /// The job's parameters (`[params]`, `--param`), user code's `ipdc.params`.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Side files (`files` in ipdc.toml): placed beside the code in each
    /// task's folder. Their paths come off the wire: an agent checks each
    /// with [`is_safe_relative_path`](super::names::is_safe_relative_path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub side_files: Vec<SideFile>,
    /// How a step of a multi-step job reads and writes its records.
    #[serde(default, skip_serializing_if = "StepIo::is_plain")]
    pub step_io: StepIo,
}

/// The records between the steps of a multi-step job: a step's parts hold
/// its pairs as typed lines (`JSON key<TAB>JSON value`), and the next step's
/// maps read them back as the same pairs, `map(key, value)`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepIo {
    /// Maps read typed lines and call `map(key, value)`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pairs_in: bool,
    /// The parts (reduce's, or a map-only job's maps') are typed lines.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pairs_out: bool,
}

impl StepIo {
    pub fn is_plain(&self) -> bool {
        *self == StepIo::default()
    }
}

/// One side file of a job: where it goes in the task's code folder and
/// what to fetch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SideFile {
    /// A relative path with `/` between plain components (`model/weights.bin`).
    pub path: String,
    pub cid: String,
    pub size: u64,
}

/// The names of the user's mapper and reducer files on the submitting
/// machine (`wc.py`, not `Map.py`), so that a traceback or an error from an
/// agent names the file the user has.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CodeFiles {
    pub map: String,
    pub reduce: String,
}

impl Default for CodeFiles {
    fn default() -> Self {
        CodeFiles { map: "Map.py".into(), reduce: "Reduce.py".into() }
    }
}

impl CodeFiles {
    /// The last path components of `map` and `reduce` (lossy UTF-8).
    pub fn of(map: &std::path::Path, reduce: &std::path::Path) -> CodeFiles {
        let name =
            |p: &std::path::Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        CodeFiles { map: name(map), reduce: name(reduce) }
    }

    /// The names an agent stores the files under: the user's names when both
    /// are plain file names it can write into a task's folder without clash
    /// (see [`is_plain_code_file_name`]) and differ; else `Map.py` and
    /// `Reduce.py`. The names come off the wire: this is what keeps them
    /// from naming a path.
    pub fn checked(&self) -> (&str, &str) {
        if is_plain_code_file_name(&self.map)
            && is_plain_code_file_name(&self.reduce)
            && self.map != self.reduce
        {
            (&self.map, &self.reduce)
        } else {
            ("Map.py", "Reduce.py")
        }
    }
}

/// Limits on a task's user code.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskLimits {
    /// Wall-clock seconds one attempt may run.
    pub wall_secs: Option<u64>,
    /// Memory (address space) of the user's code, MiB.
    pub memory_mb: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskKind {
    /// Map one byte range of one input file. `name` is the file's name as
    /// the job gives it (user code's `ipdc.input_file()`; only ever data).
    Map {
        input_cid: String,
        input_size: u64,
        split: u32,
        start: u64,
        end: u64,
        #[serde(default)]
        name: String,
        /// The file is compressed: the split is the whole file, read
        /// decompressed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compression: Option<Compression>,
    },
    /// Map whole files (`input_format = "files"`): user code's
    /// `map(name, data)` runs once per file, with its bytes.
    MapFiles { split: u32, files: Vec<InputFile> },
    /// Reduce partition `partition`: its piece of every map's output.
    Reduce { partition: u32, inputs: Vec<String> },
}

/// How an input file is compressed, decided by its name (as Hadoop does).
/// Neither can be read from the middle, so such a file is one split.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// `.gz`: the Python runner decompresses it (Python's `gzip`).
    Gzip,
    /// `.zst`: the agent decompresses it, for either executor.
    Zstd,
}

impl Compression {
    /// The compression a file named `name` is taken to have.
    pub fn of_name(name: &str) -> Option<Compression> {
        if name.ends_with(".gz") {
            Some(Compression::Gzip)
        } else if name.ends_with(".zst") {
            Some(Compression::Zstd)
        } else {
            None
        }
    }
}

/// The most files one per-file map task may list (a thousand names and
/// CIDs stay well under [`MAX_MESSAGE_BYTES`](super::MAX_MESSAGE_BYTES)).
pub const MAX_FILES_PER_TASK: usize = 1000;

/// One whole input file of a per-file map task. `name` comes off the wire:
/// an agent checks it with [`is_safe_input_name`](super::names::is_safe_input_name)
/// and only ever hands it to user code as data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InputFile {
    pub name: String,
    pub cid: String,
    pub size: u64,
}

impl TaskKind {
    /// The reduce partition (0 for maps).
    pub fn partition(&self) -> u32 {
        match self {
            TaskKind::Reduce { partition, .. } => *partition,
            TaskKind::Map { .. } | TaskKind::MapFiles { .. } => 0,
        }
    }

    /// Whether this is a map task (of a byte range or of whole files).
    pub fn is_map(&self) -> bool {
        !matches!(self, TaskKind::Reduce { .. })
    }
}

/// One attempt at one task, as the controller hands it to an agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Task {
    pub job: String,
    /// `m-00003` or `r-00001`.
    pub task: String,
    pub attempt: u32,
    pub reducers: u32,
    pub code: CodeSpec,
    /// Memory budget for sort/spill buffers, MiB (the agent may lower it to its own maximum).
    pub memory_mb: u64,
    #[serde(flatten)]
    pub kind: TaskKind,
}

/// What a controller sends on an agent's task topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // decoded once per message; boxing buys nothing
pub enum TaskCommand {
    Assign {
        task: Task,
    },
    Cancel {
        job: String,
        task: String,
        attempt: u32,
    },
    /// The job is over (done or failed): drop its queued and running tasks.
    EndJob {
        job: String,
    },
    /// Say again where every attempt of this job stands (lost events are re-sent).
    Query {
        job: String,
    },
    /// Say in the status whether these Python modules import here (the
    /// job's `python_modules`; at most [`MAX_PYTHON_MODULES`](super::MAX_PYTHON_MODULES)).
    CheckModules {
        job: String,
        modules: Vec<String>,
    },
    /// Say in the status which of these blocks (the job's input blocks,
    /// keyed as `refs/local` names them) its IPFS node holds, without
    /// fetching any: map tasks then go where their data is. At most
    /// [`MAX_LOCATE_BLOCKS`](super::MAX_LOCATE_BLOCKS).
    Locate {
        job: String,
        blocks: Vec<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskMessage {
    pub v: u32,
    /// The session of the agent it is for (from the agent's status): an
    /// agent obeys only commands for its own run, so a command captured
    /// before it restarted is not obeyed again.
    pub to: String,
    #[serde(flatten)]
    pub command: TaskCommand,
}

impl TaskMessage {
    pub fn new(to: &str, command: TaskCommand) -> Self {
        TaskMessage { v: super::PROTOCOL_VERSION, to: to.to_string(), command }
    }

    /// The job the command is about.
    pub fn job(&self) -> &str {
        match &self.command {
            TaskCommand::Assign { task } => &task.job,
            TaskCommand::Cancel { job, .. }
            | TaskCommand::EndJob { job }
            | TaskCommand::Query { job }
            | TaskCommand::CheckModules { job, .. }
            | TaskCommand::Locate { job, .. } => job,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Message, sample_task};
    use super::*;
    use std::path::Path;

    #[test]
    fn a_task_from_a_submitter_without_file_names_gets_map_py_and_reduce_py() {
        let mut v = serde_json::to_value(TaskMessage::new("s1", TaskCommand::Assign { task: sample_task() }))
            .unwrap();
        v["task"]["code"].as_object_mut().unwrap().remove("files").unwrap();
        let m = TaskMessage::decode(&serde_json::to_vec(&v).unwrap()).unwrap();
        let TaskCommand::Assign { task } = m.command else { panic!("{m:?}") };
        assert_eq!(task.code.files.checked(), ("Map.py", "Reduce.py"));
    }

    #[test]
    fn only_plain_distinct_code_file_names_are_used() {
        let files = |map: &str, reduce: &str| CodeFiles { map: map.into(), reduce: reduce.into() };
        assert_eq!(files("wc.py", "sum-counts_2.py").checked(), ("wc.py", "sum-counts_2.py"));
        assert_eq!(
            CodeFiles::of(Path::new("/home/u/jobs/wc.py"), Path::new("../r.py")),
            files("wc.py", "r.py")
        );
        // Paths, hidden files, other suffixes, odd bytes, the runner's own
        // name, one file for both: the agent's defaults.
        for (map, reduce) in [
            ("../wc.py", "r.py"),
            ("a/wc.py", "r.py"),
            ("wc.py", "/etc/r.py"),
            (".wc.py", "r.py"),
            ("wc.txt", "r.py"),
            (".py", "r.py"),
            ("wc py.py", "r.py"),
            ("café.py", "r.py"),
            ("", "r.py"),
            ("wc.py", crate::python::RUNNER_FILE_NAME),
            ("job.py", "job.py"),
        ] {
            assert_eq!(files(map, reduce).checked(), ("Map.py", "Reduce.py"), "{map:?} {reduce:?}");
        }
        assert!(!is_plain_code_file_name(&format!("{}.py", "a".repeat(98))));
        assert!(is_plain_code_file_name(&format!("{}.py", "a".repeat(97))));
    }
}
