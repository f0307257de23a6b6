//! The wire contract: every MQTT topic and message IPDC sends. Neither
//! program formats a topic, seals a payload or parses an incoming topic by
//! hand; they go through here.
//!
//! | topic (under `ipdc/<cluster>/`) | retained | writer | message |
//! |---|---|---|---|
//! | `agents/<id>/status` | yes | agent (Last Will: offline) | [`AgentStatus`] |
//! | `agents/<id>/tasks` | no | controller | [`TaskMessage`] |
//! | `jobs/<job>/events` | no | agents | [`TaskEvent`] |
//! | `jobs/<job>/controller` | yes | controller (Last Will: gone) | [`ControllerStatus`] |
//!
//! Payloads are JSON with a protocol version `v`, wrapped in the signed
//! envelope ([`crate::auth`]) when the cluster has keys. QoS 1 can deliver a message twice, so every
//! handler must be idempotent: events carry the task id and attempt, and a
//! controller takes each task's result once.
//!
//! - [`topics`]: building topic strings and routing incoming ones.
//! - [`names`]: which cluster, agent, job and task names are accepted.
//! - [`status`], [`task`], [`event`]: the messages.
//! - [`wire`]: [`Wire`], one cluster's topics and envelope: what goes out
//!   ([`Outgoing`]) and what an incoming publish is ([`Incoming`]).

mod event;
mod names;
mod status;
mod task;
mod topics;
mod wire;

use serde::{Deserialize, Serialize};

pub use event::{
    CancelRequest, ControllerState, ControllerStatus, EventKind, Executor, JobInfo, TaskEvent, TaskOutput,
};
pub use names::{
    MAX_INPUT_NAME, MAX_PYTHON_MODULES, is_module_name, is_plain_code_file_name, is_safe_input_name,
    is_safe_relative_path, looks_like_job_id, validate_name, validate_task_id,
};
pub use status::{AgentStatus, IpfsHealth, Located};
pub use task::{
    CodeFiles, CodeSpec, Compression, InputFile, MAX_FILES_PER_TASK, SideFile, StepIo, Task, TaskCommand,
    TaskKind, TaskLimits, TaskMessage,
};
pub use topics::{Route, Topics};
pub use wire::{Incoming, Outgoing, Refused, Wire};

/// Bumped on any incompatible change to a message below.
pub const PROTOCOL_VERSION: u32 = 3;

/// Largest payload either side accepts; larger messages are dropped with a log line.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Blocks one `Locate` asks about (about 250 KiB of keys).
pub const MAX_LOCATE_BLOCKS: usize = 4096;

/// Whether `key` may be a block key of `Locate`: a CID's text, lowercase
/// base32 letters and digits, at most 100 of them.
pub fn is_block_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 100 && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
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

macro_rules! versioned {
    ($($t:ty),*) => {$(
        impl Message for $t {
            fn version(&self) -> u32 {
                self.v
            }
        }
    )*};
}
versioned!(AgentStatus, TaskMessage, ControllerStatus, TaskEvent, CancelRequest);

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
            params: serde_json::json!({"k": 3, "name": "x"}).as_object().cloned().unwrap(),
            side_files: vec![SideFile { path: "model/w.bin".into(), cid: "bafkside".into(), size: 9 }],
            step_io: Default::default(),
        },
        memory_mb: 64,
        kind: TaskKind::Map {
            input_cid: "bafyin".into(),
            input_size: 100,
            split: 0,
            start: 0,
            end: 100,
            name: "in/a.txt".into(),
            compression: Some(Compression::Gzip),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_message_round_trips() {
        let m = TaskMessage::new("s1", TaskCommand::Assign { task: sample_task() });
        assert_eq!(TaskMessage::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn other_protocol_versions_are_refused() {
        let mut m = TaskMessage::new("s", TaskCommand::EndJob { job: "j".into() });
        m.v = 99;
        assert!(matches!(TaskMessage::decode(&m.encode()), Err(DecodeError::Version(99))));
    }

    #[test]
    fn garbage_and_oversize_payloads_are_refused() {
        assert!(matches!(TaskEvent::decode(b"{\"v\":1"), Err(DecodeError::Malformed(_))));
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(AgentStatus::decode(&big), Err(DecodeError::TooLarge(_))));
    }
}
