//! What bounds one run of the runner: [`Limits`] (wall clock and memory)
//! and [`CancelToken`]. How they are enforced (the watchdog, `RLIMIT_AS`)
//! is the sandbox's business; how a run that hit one is reported is
//! [`ExecError`](super::ExecError)'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The smallest memory limit applied: a smaller [`Limits::memory_bytes`] is
/// raised to this. Python 3.11 needs about 24 MiB of address space just to
/// start and load the runner (below that it cannot even map its shared
/// libraries, and fails before the user's code runs); 64 MiB leaves room
/// for small user code. Big libraries (numpy, ...) need far more.
pub const MIN_MEMORY_BYTES: u64 = 64 << 20;

/// Sandbox limits for one run of the runner. The default has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time from starting the interpreter; then the runner and
    /// everything it started are killed ([`ExecError::TimedOut`](super::ExecError::TimedOut)).
    pub wall: Option<Duration>,
    /// Address space (`RLIMIT_AS`) of the runner and of each process it
    /// starts, at least [`MIN_MEMORY_BYTES`] ([`ExecError::OutOfMemory`](super::ExecError::OutOfMemory)).
    pub memory_bytes: Option<u64>,
}

impl Limits {
    /// The memory limit actually applied: [`Limits::memory_bytes`] raised to
    /// [`MIN_MEMORY_BYTES`].
    pub fn effective_memory_bytes(&self) -> Option<u64> {
        self.memory_bytes.map(|b| b.max(MIN_MEMORY_BYTES))
    }
}

/// Cancels runs from another thread: [`CancelToken::cancel`] kills the
/// runner (and what it started) of every run using this token or a clone of
/// it, now and later; they return [`ExecError::Cancelled`](super::ExecError::Cancelled)
/// within milliseconds.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels (for good) the runs using this token.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
