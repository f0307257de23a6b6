//! What agents report about task attempts ([`TaskEvent`] on the job's event
//! topic, with the [`TaskOutput`] of a finished one), and a controller's
//! retained word about its job ([`ControllerStatus`]).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::exec::ExecStats;

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
    pub executor: Executor,
    pub elapsed_ms: u64,
    pub spills: u32,
    /// What the attempt's user code printed (its last 64 KiB), added to
    /// IPFS; none when it printed nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_cid: Option<String>,
}

/// The executor an attempt ran with. On the wire: `"python"` or
/// `"native:<name>"` (e.g. `"native:wordcount"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Executor {
    #[default]
    Python,
    Native(String),
}

impl std::fmt::Display for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Executor::Python => f.write_str("python"),
            Executor::Native(name) => write!(f, "native:{name}"),
        }
    }
}

impl Serialize for Executor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Executor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match (s.as_str(), s.strip_prefix("native:")) {
            ("python", _) => Ok(Executor::Python),
            (_, Some(name)) if !name.is_empty() => Ok(Executor::Native(name.to_string())),
            _ => Err(serde::de::Error::custom(format!(
                "executor {s:?}: expected \"python\" or \"native:NAME\""
            ))),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The agent took the assignment (queued or started).
    Accepted,
    /// A running attempt has read this much of its input so far (about
    /// once a second while it moves; sent at most once, not retained).
    Progress {
        bytes_read: u64,
        lines: u64,
    },
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
    pub state: ControllerState,
    /// When the submitter's current broker connection began (Unix ms): its
    /// Last Will carries the same epoch, so an agent that has seen the job
    /// running on a later connection ignores a replayed earlier Will.
    pub epoch: u64,
    /// What `ipdc-submit jobs` shows of a running job (absent in a Will).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<JobInfo>,
}

/// A running job as its submitter says it, every 2 s, in its controller status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct JobInfo {
    /// The job's name (its folder's, or `name` in `ipdc.toml`).
    pub name: String,
    /// Who runs it: `user@host` of the submitter.
    pub by: String,
    /// Unix ms.
    pub started_ms: u64,
    /// `map`, `reduce`, or `starting` (picking agents, uploading).
    pub phase: String,
    pub maps_done: u32,
    pub maps: u32,
    pub reduces_done: u32,
    pub reduces: u32,
    pub bytes_read: u64,
    pub input_bytes: u64,
}

/// `ipdc-submit cancel`: asks a job's own submitter to stop it. In a keyed
/// cluster only a listed submitter's request is taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CancelRequest {
    pub v: u32,
    pub job: String,
    /// Who asks: `user@host` (printable ASCII, at most 64 characters).
    pub by: String,
}

impl CancelRequest {
    pub fn new(job: &str, by: &str) -> Self {
        CancelRequest { v: super::PROTOCOL_VERSION, job: job.to_string(), by: by.to_string() }
    }

    /// Whether `by` is something to print: short, printable, one line.
    pub fn by_is_plain(&self) -> bool {
        !self.by.is_empty()
            && self.by.len() <= 64
            && self.by.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ControllerState {
    Running,
    /// Its Last Will: the submitter vanished.
    Gone,
}

impl ControllerStatus {
    pub fn new(job: &str, state: ControllerState, epoch: u64) -> Self {
        ControllerStatus { v: super::PROTOCOL_VERSION, job: job.to_string(), state, epoch, info: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executors_and_controller_states_keep_their_wire_strings() {
        for (e, wire) in
            [(Executor::Python, "\"python\""), (Executor::Native("wordcount".into()), "\"native:wordcount\"")]
        {
            assert_eq!(serde_json::to_string(&e).unwrap(), wire);
            assert_eq!(serde_json::from_str::<Executor>(wire).unwrap(), e);
        }
        for bad in ["\"\"", "\"native:\"", "\"rust\""] {
            assert!(serde_json::from_str::<Executor>(bad).is_err(), "{bad}");
        }
        let s = ControllerStatus::new("j1", ControllerState::Gone, 7);
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"v":3,"job":"j1","state":"gone","epoch":7}"#);
        let running: ControllerStatus =
            serde_json::from_str(r#"{"v":3,"job":"j1","state":"running","epoch":7}"#).unwrap();
        assert_eq!(running.state, ControllerState::Running);
    }
}
