//! The Python executor: runs a user's `Map.py` / `Reduce.py` through
//! `runner.py` (embedded in the binary) in one `python3` subprocess per
//! task, streaming records through pipes in batches.
//!
//! This module only names the parts and re-exports the public API, so that
//! callers write `ipdc_common::python::X` whatever file `X` lives in:
//!
//! - `executor`: [`PythonExecutor`], which starts the runner, feeds it and
//!   collects its output, and decides how a run ended.
//! - `limits`: [`Limits`] (wall clock, memory) and [`CancelToken`].
//! - `error`: [`ExecError`] and [`Stage`], with their messages for people.
//! - `sandbox`: the process group, the parent-death signal, the address-space
//!   limit and the watchdog that kills a run at its deadline or on cancel;
//!   its module doc says what is contained and what is not.
//! - `contain`: [`Containment`], how a run's processes are kept together
//!   and killed at its end: a cgroup per run (`cgroup`), else a reaper
//!   process per run (`reaper`).
//! - `landlock`: where the kernel has it, the runner may write only in its
//!   task's folder ([`landlock_abi`]).
//! - `pipes`: reading and writing the runner's pipes so that a run ends
//!   when the runner exits.
//! - `script`: the runner script, sealed in memory, never in a folder user
//!   code can write.
//! - `protocol`: the runner script and its pipe protocol (stdin blocks,
//!   stdout frames, the stderr tail and its `IPDC-STATS` / `IPDC-ERROR`
//!   lines, exit statuses).
//! - `detect`: finding a usable interpreter ([`detect()`], [`detect_version`]).

#[cfg(target_os = "linux")]
mod cgroup;
mod contain;
mod detect;
mod error;
mod executor;
mod landlock;
mod limits;
mod pipes;
mod protocol;
#[cfg(target_os = "linux")]
mod reaper;
mod sandbox;
mod script;

pub use contain::{CONTAINMENT_ENV, Containment};
pub use detect::{detect, detect_version};
pub use error::{ExecError, Stage};
pub use executor::{PythonExecutor, UserJob};
pub use landlock::{LANDLOCK_ENV, abi as landlock_abi};
pub use limits::{CancelToken, Limits, MIN_MEMORY_BYTES};
pub use protocol::{RUNNER_FILE_NAME, RUNNER_PY, STDERR_TAIL};

/// Detects (once per process) and logs how user code is confined here: the
/// [`Containment`] and whether Landlock is available. The agent calls it at
/// start, so that its log says so before the first task.
pub fn log_confinement() {
    Containment::shared();
}
