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
//!   limit and the watchdog that kills a run at its deadline or on cancel.
//! - `protocol`: the runner script and its pipe protocol (stdin blocks,
//!   stdout frames, the stderr tail and its `IPDC-STATS` / `IPDC-ERROR`
//!   lines, exit statuses).
//! - `detect`: finding a usable interpreter ([`detect()`], [`detect_version`]).

mod detect;
mod error;
mod executor;
mod limits;
mod protocol;
mod sandbox;

pub use detect::{detect, detect_version};
pub use error::{ExecError, Stage};
pub use executor::PythonExecutor;
pub use limits::{CancelToken, Limits, MIN_MEMORY_BYTES};
pub use protocol::{RUNNER_FILE_NAME, RUNNER_PY, STDERR_TAIL};
