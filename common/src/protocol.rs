//! The wire contract: every MQTT topic and message IPDC sends. Neither
//! program formats a topic or a payload by hand; they go through here.
//!
//! | topic (under `ipdc/<cluster>/`) | retained | writer | message |
//! |---|---|---|---|
//! | `agents/<id>/status` | yes | agent (Last Will: offline) | [`AgentStatus`] |
//! | `agents/<id>/tasks` | no | controller | [`TaskMessage`] |
//! | `jobs/<job>/events` | no | agents | [`TaskEvent`] |
//! | `jobs/<job>/controller` | yes | controller (Last Will: gone) | [`ControllerStatus`] |
//!
//! Payloads are JSON with a protocol version `v`. QoS 1 can deliver a message
//! twice, so every handler must be idempotent: events carry the task id and
//! attempt, and a controller takes each task's result once.

use serde::{Deserialize, Serialize};

use crate::exec::ExecStats;

/// Bumped on any incompatible change to a message below.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest payload either side accepts; larger messages are dropped with a log line.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Builds every topic string of one cluster.
#[derive(Debug, Clone)]
pub struct Topics {
    root: String,
}

impl Topics {
    pub fn new(cluster: &str) -> Self {
        Topics { root: format!("ipdc/{cluster}") }
    }
    pub fn agent_status(&self, agent: &str) -> String {
        format!("{}/agents/{agent}/status", self.root)
    }
    /// Wildcard matching every agent's status.
    pub fn all_agent_statuses(&self) -> String {
        format!("{}/agents/+/status", self.root)
    }
    pub fn agent_tasks(&self, agent: &str) -> String {
        format!("{}/agents/{agent}/tasks", self.root)
    }
    pub fn job_events(&self, job: &str) -> String {
        format!("{}/jobs/{job}/events", self.root)
    }
    pub fn job_controller(&self, job: &str) -> String {
        format!("{}/jobs/{job}/controller", self.root)
    }
    /// Wildcard matching every job's controller status.
    pub fn all_job_controllers(&self) -> String {
        format!("{}/jobs/+/controller", self.root)
    }
    /// The job id in a `jobs/<job>/...` topic.
    pub fn job_of<'t>(&self, topic: &'t str) -> Option<&'t str> {
        topic.strip_prefix(&self.root)?.strip_prefix("/jobs/")?.split('/').next()
    }
}

/// Checks that a cluster, agent or job name is safe inside a topic.
/// Whether `name` has the shape of a job id as submitters make them:
/// `<job name>-<time, base 36>-<12 hex digits>` (agents name their work
/// folders by it, and remove only folders of this shape).
pub fn looks_like_job_id(name: &str) -> bool {
    let mut parts = name.rsplitn(3, '-');
    let (Some(hex), Some(time), Some(job)) = (parts.next(), parts.next(), parts.next()) else { return false };
    hex.len() == 12
        && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && !time.is_empty()
        && time.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        && !job.is_empty()
        && job.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("{what} {name:?} is not valid: use 1 to 64 characters from a-z, A-Z, 0-9, '-', '_', '.'"))
    }
}

/// What an agent says about itself, retained so a new submitter sees it at once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentStatus {
    pub v: u32,
    pub agent: String,
    pub online: bool,
    pub version: String,
    pub arch: String,
    pub os: String,
    pub cores: u32,
    /// Tasks it runs at once.
    pub slots: u32,
    pub slots_busy: u32,
    /// CPU usage across all cores, 0-100.
    pub cpu_percent: f32,
    pub mem_total_mb: u64,
    pub mem_available_mb: u64,
    /// The Python version its executor runs, or None when it has no Python.
    pub python: Option<String>,
    /// Native executors it has (e.g. "wordcount").
    pub native: Vec<String>,
    /// Map/reduce memory budget per task.
    pub memory_budget_mb: u64,
    /// When this status was sent, Unix milliseconds.
    pub heartbeat_ms: u64,
    /// How often it sends a status, so readers know when one is stale.
    pub heartbeat_interval_ms: u64,
    /// "ok" when its IPFS API answers, else why not; such an agent takes no tasks.
    pub ipfs: String,
    /// Control messages it refused (bad or missing signature, stale, replayed).
    #[serde(default)]
    pub rejected_messages: u64,
    /// It obeys only messages signed with the cluster key.
    #[serde(default)]
    pub keyed: bool,
}

impl AgentStatus {
    /// The Last Will: what the broker publishes if the agent vanishes.
    pub fn offline(agent: &str) -> Self {
        AgentStatus {
            v: PROTOCOL_VERSION,
            agent: agent.to_string(),
            online: false,
            version: String::new(),
            arch: String::new(),
            os: String::new(),
            cores: 0,
            slots: 0,
            slots_busy: 0,
            cpu_percent: 0.0,
            mem_total_mb: 0,
            mem_available_mb: 0,
            python: None,
            native: Vec::new(),
            memory_budget_mb: 0,
            heartbeat_ms: 0,
            heartbeat_interval_ms: 0,
            ipfs: String::new(),
            rejected_messages: 0,
            keyed: false,
        }
    }
}

/// How a task's user code runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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

/// A name of at most 100 ASCII letters, digits, `_`, `-` and `.`, ending in
/// `.py`, not starting with `.`, and not the runner's own file name.
pub fn is_plain_code_file_name(name: &str) -> bool {
    name.len() > 3
        && name.len() <= 100
        && name.ends_with(".py")
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && name != crate::python::RUNNER_FILE_NAME
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
    /// Map one byte range of the input.
    Map { input_cid: String, input_size: u64, split: u32, start: u64, end: u64 },
    /// Reduce partition `partition`: its piece of every map's output.
    Reduce { partition: u32, inputs: Vec<String> },
}

impl TaskKind {
    /// The reduce partition (0 for maps).
    pub fn partition(&self) -> u32 {
        match self {
            TaskKind::Reduce { partition, .. } => *partition,
            TaskKind::Map { .. } => 0,
        }
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskMessage {
    pub v: u32,
    #[serde(flatten)]
    pub command: TaskCommand,
}

/// What the task produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TaskOutput {
    /// Map: one CID per partition, in partition order. Reduce: the part's CID.
    pub cids: Vec<String>,
    /// Bytes of each output, same order as `cids`.
    pub sizes: Vec<u64>,
    pub stats: ExecStats,
    /// Input bytes this task read from IPFS.
    pub bytes_read: u64,
    /// "python" or "native:wordcount".
    pub executor: String,
    pub elapsed_ms: u64,
    pub spills: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The agent took the assignment (queued or started).
    Accepted,
    Done {
        output: TaskOutput,
    },
    Failed {
        error: String,
        detail: String,
        /// Reduce inputs (map output CIDs) that could not be fetched: their maps must run again.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lost_inputs: Vec<String>,
        /// The agent's own IPFS node stopped answering: the attempt says
        /// nothing about the task, which runs again elsewhere without
        /// counting as a failure, and the agent is away until its status
        /// says its node answers.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        node_down: bool,
    },
}

/// What an agent reports about one task attempt on the job's event topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskEvent {
    pub v: u32,
    pub job: String,
    pub task: String,
    pub attempt: u32,
    pub agent: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A controller's retained word about its job: agents drop the tasks of a
/// job whose controller is gone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ControllerStatus {
    pub v: u32,
    pub job: String,
    /// "running", or "gone" (its Last Will).
    pub state: String,
}

/// Why a payload was refused.
#[derive(Debug)]
pub enum DecodeError {
    TooLarge(usize),
    Malformed(String),
    Version(u32),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLarge(n) => write!(f, "message of {n} bytes exceeds {MAX_MESSAGE_BYTES}"),
            DecodeError::Malformed(e) => write!(f, "malformed message: {e}"),
            DecodeError::Version(v) => {
                write!(f, "protocol version {v}, this program speaks {PROTOCOL_VERSION}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// A message type of the wire contract.
pub trait Message: Serialize + for<'de> Deserialize<'de> {
    fn version(&self) -> u32;

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("protocol messages always serialize")
    }

    /// Decodes a payload, refusing oversize ones and other protocol versions.
    fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        if payload.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge(payload.len()));
        }
        let msg: Self = serde_json::from_slice(payload).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if msg.version() != PROTOCOL_VERSION {
            return Err(DecodeError::Version(msg.version()));
        }
        Ok(msg)
    }
}

impl Message for AgentStatus {
    fn version(&self) -> u32 {
        self.v
    }
}
impl Message for TaskMessage {
    fn version(&self) -> u32 {
        self.v
    }
}
impl Message for ControllerStatus {
    fn version(&self) -> u32 {
        self.v
    }
}
impl Message for TaskEvent {
    fn version(&self) -> u32 {
        self.v
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A map task with every field set, for tests of the wire format.
#[cfg(test)]
pub(crate) fn sample_task() -> Task {
    Task {
        job: "j1".into(),
        task: "m-00000".into(),
        attempt: 1,
        reducers: 3,
        code: CodeSpec {
            map_cid: "bafkmap".into(),
            reduce_cid: "bafkred".into(),
            combiner: true,
            force_native: None,
            native_fallback: Some("wordcount".into()),
            limits: TaskLimits { wall_secs: Some(60), memory_mb: None },
            files: CodeFiles { map: "wc.py".into(), reduce: "Reduce.py".into() },
        },
        memory_mb: 64,
        kind: TaskKind::Map { input_cid: "bafyin".into(), input_size: 100, split: 0, start: 0, end: 100 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn task_message_round_trips() {
        let m = TaskMessage { v: PROTOCOL_VERSION, command: TaskCommand::Assign { task: sample_task() } };
        assert_eq!(TaskMessage::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn a_task_from_a_submitter_without_file_names_gets_map_py_and_reduce_py() {
        let mut v = serde_json::to_value(TaskMessage {
            v: PROTOCOL_VERSION,
            command: TaskCommand::Assign { task: sample_task() },
        })
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

    #[test]
    fn other_protocol_versions_are_refused() {
        let m = TaskMessage { v: 99, command: TaskCommand::EndJob { job: "j".into() } };
        assert!(matches!(TaskMessage::decode(&m.encode()), Err(DecodeError::Version(99))));
    }

    #[test]
    fn garbage_and_oversize_payloads_are_refused() {
        assert!(matches!(TaskEvent::decode(b"{\"v\":1"), Err(DecodeError::Malformed(_))));
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(AgentStatus::decode(&big), Err(DecodeError::TooLarge(_))));
    }

    #[test]
    fn topics_live_under_the_cluster() {
        let t = Topics::new("lab");
        assert_eq!(t.agent_status("pi-1"), "ipdc/lab/agents/pi-1/status");
        assert_eq!(t.all_agent_statuses(), "ipdc/lab/agents/+/status");
        assert_eq!(t.agent_tasks("pi-1"), "ipdc/lab/agents/pi-1/tasks");
        assert_eq!(t.job_events("j1"), "ipdc/lab/jobs/j1/events");
        assert_eq!(t.job_controller("j1"), "ipdc/lab/jobs/j1/controller");
        assert_eq!(t.job_of("ipdc/lab/jobs/j1/controller"), Some("j1"));
        assert_eq!(t.job_of("ipdc/other/jobs/j1/controller"), None);
    }

    #[test]
    fn job_ids_are_told_from_other_folder_names() {
        assert!(looks_like_job_id("wordcount-mwwtc2sy-d46ad903c424"));
        assert!(looks_like_job_id("my-job_2-a-000000000000"));
        for other in [
            "wordcount",
            "photos",
            "wordcount-mwwtc2sy-d46ad903c42",
            "x-MW-d46ad903c424",
            "-a-d46ad903c424",
            ".lock",
        ] {
            assert!(!looks_like_job_id(other), "{other}");
        }
    }

    #[test]
    fn names_with_topic_syntax_are_refused() {
        assert!(validate_name("agent", "pi-1.lab_2").is_ok());
        for bad in ["", "a/b", "a+b", "#", "a b"] {
            assert!(validate_name("agent", bad).is_err(), "{bad:?}");
        }
    }
}
