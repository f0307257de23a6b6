//! How a Python task failed ([`ExecError`]) and in which user function
//! ([`Stage`]), with the one-line messages people see. Deciding which error
//! a run ended with is the executor's and the protocol's business.

use std::fmt;
use std::io;
use std::time::Duration;

#[cfg(doc)]
use super::{CancelToken, Limits};

/// Which user function a run executes, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `map()` (and `combine()`/`reduce()` as its combiner).
    Map,
    /// `reduce()`.
    Reduce,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Map => "map()",
            Stage::Reduce => "reduce()",
        })
    }
}

/// `d` for people: `5 s`, `1.5 s`, `200 ms`.
fn show_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// `n` bytes for people: `64 MiB`, `2 GiB`, `1.5 MiB`, `1000 bytes`.
fn show_bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if n >= GIB && n.is_multiple_of(GIB) {
        format!("{} GiB", n / GIB)
    } else if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else {
        format!("{n} bytes")
    }
}

/// Why a Python task failed.
#[derive(Debug)]
pub enum ExecError {
    /// Starting the interpreter, reading the input or writing to the sink
    /// failed.
    Io(io::Error),
    /// The user's code failed: it could not be loaded, raised, or produced a
    /// key or value that cannot be stored. `summary` is one line (the
    /// runner's `IPDC-ERROR:` line without that prefix), `traceback` the
    /// stderr output before it (the Python traceback, and anything the user
    /// printed last).
    User { summary: String, traceback: String },
    /// The runner ended abnormally without a user error (killed, crashed,
    /// internal error, stopped reading its input).
    Runner { status: String, stderr_tail: String },
    /// The runner's output did not follow the protocol.
    Protocol(String),
    /// The run was killed (with everything it started) at the wall-clock
    /// limit [`Limits::wall`].
    TimedOut { stage: Stage, limit: Duration },
    /// The user's code exceeded the memory limit (the effective one, see
    /// [`Limits::effective_memory_bytes`]): `cause` is `MemoryError` (raised
    /// by Python, the runner's report and traceback are in `detail`) or the
    /// signal that killed the runner (`detail` has its last stderr output).
    OutOfMemory { stage: Stage, limit_bytes: u64, cause: String, detail: String },
    /// The run was stopped through its [`CancelToken`].
    Cancelled { stage: Stage },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Io(e) => write!(f, "{e}"),
            ExecError::User { summary, .. } => write!(f, "{summary}"),
            ExecError::Runner { status, stderr_tail } => {
                write!(f, "the Python runner failed ({status})")?;
                let tail = last_chars(stderr_tail.trim(), 2000);
                if !tail.is_empty() {
                    write!(f, "; its last output:\n{tail}")?;
                }
                Ok(())
            }
            ExecError::Protocol(m) => write!(f, "the Python runner broke the protocol: {m}"),
            ExecError::TimedOut { stage, limit } => write!(
                f,
                "{stage} killed: it ran longer than the task's wall-clock limit of {}",
                show_duration(*limit)
            ),
            ExecError::OutOfMemory { stage, limit_bytes, cause, .. } => write!(
                f,
                "{stage} killed: it exceeded the task's memory limit of {} ({cause})",
                show_bytes(*limit_bytes)
            ),
            ExecError::Cancelled { stage } => write!(f, "{stage} stopped: the task was cancelled"),
        }
    }
}

impl std::error::Error for ExecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExecError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ExecError {
    fn from(e: io::Error) -> Self {
        ExecError::Io(e)
    }
}

/// The end of `s`, about `n` characters of it (`n + 1` exactly, or all of
/// `s` when shorter): the end of a runner's output is where its error is.
pub(super) fn last_chars(s: &str, n: usize) -> &str {
    match s.char_indices().rev().nth(n) {
        Some((i, _)) => &s[i..],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_shown_with_their_values() {
        assert_eq!(show_duration(Duration::from_secs(5)), "5 s");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(show_duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(show_bytes(64 << 20), "64 MiB");
        assert_eq!(show_bytes(2 << 30), "2 GiB");
        assert_eq!(show_bytes(3 << 19), "1.5 MiB");
        assert_eq!(show_bytes(1000), "1000 bytes");
        let e = ExecError::OutOfMemory {
            stage: Stage::Map,
            limit_bytes: 64 << 20,
            cause: "MemoryError".into(),
            detail: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "map() killed: it exceeded the task's memory limit of 64 MiB (MemoryError)"
        );
        let e = ExecError::TimedOut { stage: Stage::Map, limit: Duration::from_secs(5) };
        assert_eq!(e.to_string(), "map() killed: it ran longer than the task's wall-clock limit of 5 s");
    }
}
