//! The process sandbox around one run of the runner: its own process group,
//! death with the thread that started it, an address-space limit, and a
//! watchdog that kills the whole group at the wall-clock deadline or on
//! cancel. What the pipes carry and what an exit status means are left to
//! the protocol module; choosing the limits to the caller.
//!
//! The runner is the leader of its own process group, so it and everything
//! the user's code starts (subprocesses, `os.system`, ...) can be killed at
//! once with `kill(-pgid, SIGKILL)`. The watchdog does that at the deadline
//! or when the task is cancelled, which closes the pipes and makes the run
//! return promptly. The group is also killed when the run ends for any other
//! reason (success, an error of ours, a panic): nothing the user started
//! outlives its task. (Code that leaves the group on purpose, with
//! `setsid()` or `setpgid()`, escapes this; containing it needs cgroups or a
//! PID namespace.) The group is only ever signalled while the runner is not
//! yet reaped, so its id cannot have been reused by an unrelated group.
//!
//! The memory limit is `RLIMIT_AS` (address space) of the runner, set between
//! `fork` and `exec` and inherited by its subprocesses (each gets the same
//! limit, it is not shared). Python then raises `MemoryError`, which the
//! runner reports with exit status 5 and an `IPDC-ERROR: MemoryError: ...`
//! line; an allocation that fails where Python cannot raise kills it
//! (SIGSEGV, or SIGKILL from the kernel's OOM killer), which is also taken as
//! the memory limit when one is set. See
//! [`MIN_MEMORY_BYTES`](super::MIN_MEMORY_BYTES) for the floor.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::CancelToken;

/// How often the watchdog looks at the cancel token.
const WATCH_POLL: Duration = Duration::from_millis(10);

/// Makes `command` start in a process group of its own, die with the thread
/// that spawns it, and (with `memory`) have at most that many bytes of
/// address space.
pub(super) fn confine(command: &mut Command, memory: Option<u64>) {
    command.process_group(0);
    // The runner dies with the thread that started it (which waits for
    // it), so that an agent killed outright, or `ipdc-submit --local`
    // stopped by Ctrl-C, leaves no user code running on its own.
    let parent = std::process::id();
    // SAFETY: runs between fork and exec; two raw system calls on copied
    // integers (see `die_with_parent`).
    unsafe {
        command.pre_exec(move || die_with_parent(parent));
    }
    if let Some(bytes) = memory {
        // SAFETY: the closure runs in the child between fork and exec,
        // where only async-signal-safe operations are allowed. It only
        // makes two raw system calls (prlimit64 / getrlimit+setrlimit)
        // on a copied integer and stack values: no allocation, no lock,
        // no access to the parent's other threads' state. On failure it
        // builds an `io::Error` from errno (no allocation) and the spawn
        // fails with it.
        unsafe {
            command.pre_exec(move || limit_address_space(bytes));
        }
    }
}

/// Asks the kernel to kill the calling process when the thread that forked
/// it ends, and exits at once if `parent` (the forking process) is already
/// gone. Called between fork and exec: raw system calls only.
fn die_with_parent(parent: u32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with integer arguments; getppid cannot fail.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The parent may have died between fork and prctl: then nothing
        // would send the signal, and the runner's new parent is init.
        if unsafe { libc::getppid() } as u32 != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH)); // no allocation after fork
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
    Ok(())
}

/// Limits the address space of the calling process (and of what it execs
/// and forks) to `bytes`, or less if the hard limit is already lower.
/// Called between fork and exec: raw system calls only.
fn limit_address_space(bytes: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // prlimit64 directly rather than setrlimit: musl's setrlimit
        // synchronises all threads (taking a lock), which is not safe after
        // fork in a multi-threaded process; the system call is.
        #[repr(C)]
        struct Rlimit64 {
            cur: u64,
            max: u64,
        }
        let mut old = Rlimit64 { cur: 0, max: 0 };
        let none: *const Rlimit64 = std::ptr::null();
        // SAFETY: prlimit64 on this process with valid pointers to
        // structures of the kernel's `struct rlimit64` layout.
        let r = unsafe { libc::syscall(libc::SYS_prlimit64, 0, libc::RLIMIT_AS, none, &mut old) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let max = bytes.min(old.max);
        let new = Rlimit64 { cur: max, max };
        let none: *mut Rlimit64 = std::ptr::null_mut();
        // SAFETY: as above.
        let r = unsafe { libc::syscall(libc::SYS_prlimit64, 0, libc::RLIMIT_AS, &new, none) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit with valid pointers.
        if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut old) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let max = (bytes as libc::rlim_t).min(old.rlim_max);
        let new = libc::rlimit { rlim_cur: max, rlim_max: max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_AS, &new) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Why the watchdog killed the runner's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The wall-clock limit was reached.
    Deadline,
    /// The run's [`CancelToken`] was cancelled.
    Cancelled,
}

/// Kills the group `pgid` at `deadline` or when `cancel` is cancelled,
/// unless `done` (dropped by the run) says first that it is over.
pub(super) fn watch(
    pgid: u32,
    deadline: Option<Instant>,
    cancel: &CancelToken,
    done: mpsc::Receiver<()>,
) -> Option<Stop> {
    loop {
        let now = Instant::now();
        let stop = if cancel.is_cancelled() {
            Some(Stop::Cancelled)
        } else if deadline.is_some_and(|d| now >= d) {
            Some(Stop::Deadline)
        } else {
            None
        };
        if let Some(stop) = stop {
            kill_group(pgid);
            return Some(stop);
        }
        let nap = deadline.map_or(WATCH_POLL, |d| (d - now).min(WATCH_POLL));
        match done.recv_timeout(nap) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            _ => return None,
        }
    }
}

/// SIGKILL to every process of the group `pgid`. Only called while its
/// leader (our child) is not reaped, so the id is still this group's.
pub(super) fn kill_group(pgid: u32) {
    // SAFETY: kill() has no memory-safety preconditions.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), libc::SIGKILL);
    }
}

/// Kills the group when dropped.
pub(super) struct KillGroupOnDrop(pub(super) u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// Whether our child `pid` has exited (without reaping it).
pub(super) fn has_exited(pid: u32) -> bool {
    waitid(pid, libc::WNOHANG).unwrap_or(true)
}

/// Waits until our child `pid` has exited, without reaping it.
pub(super) fn wait_exited(pid: u32) {
    let _ = waitid(pid, 0);
}

/// `waitid(P_PID, pid, WEXITED | WNOWAIT | flags)`: whether it has exited.
fn waitid(pid: u32, flags: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to `info`; WNOWAIT leaves the child
        // waitable, so `Child::wait` still reaps it.
        let r = unsafe {
            libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT | flags)
        };
        if r == 0 {
            // SAFETY: filled in by waitid (zero if nothing has exited yet).
            return Ok(unsafe { info.si_pid() } != 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The runner's child process: until it is reaped, dropping this kills its
/// group and reaps it.
pub(super) struct Running {
    pub(super) child: Child,
    pub(super) pid: u32,
    reaped: bool,
}

impl Running {
    pub(super) fn new(child: Child) -> Self {
        let pid = child.id();
        Running { child, pid, reaped: false }
    }

    /// Reaps the runner; from then on its group id is no longer ours.
    pub(super) fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = wait(&mut self.child)?;
        self.reaped = true;
        Ok(status)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            kill_group(self.pid);
            let _ = wait(&mut self.child);
        }
    }
}

/// Waits for the runner to exit.
fn wait(child: &mut Child) -> io::Result<ExitStatus> {
    loop {
        match child.wait() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
