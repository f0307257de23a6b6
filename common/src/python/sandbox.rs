//! The process sandbox around one run of the runner: a process group and a
//! [`Containment`](super::Containment) that together hold everything the
//! user's code starts, death with the thread that started it, an
//! address-space limit, Landlock where the kernel has it, and a watchdog
//! that kills the whole run at the wall-clock deadline, on cancel and when
//! the runner exits. What the pipes carry and what an exit status means are
//! left to the protocol module; choosing the limits to the caller.
//!
//! # A task's processes end with the task
//!
//! The runner leads a process group of its own, so what the user's code
//! starts (subprocesses, `os.system`, ...) can be killed at once. Each run
//! is also contained, so that code which leaves the group on purpose
//! (`setsid()`, a double fork, `os.setpgid()`) is killed too:
//!
//! - **a cgroup per run** (cgroup v2; Linux 5.14+ for `cgroup.kill`), where
//!   the agent may make a child of its own cgroup (or of the one named by
//!   `IPDC_CONTAINMENT=cgroup:/path`): the runner is moved into it between
//!   fork and exec, before any user code runs, so everything it starts is
//!   born inside; at the end `cgroup.kill` kills all of it, and the cgroup
//!   is removed.
//! - otherwise **a reaper per run** (any Linux): a small process of ours
//!   between the agent and the runner, a child subreaper, to which every
//!   orphan of the run is re-parented instead of init. It kills all its
//!   descendants when the runner exits or the run is stopped, and exits as
//!   the runner did. One per run, so runs side by side in one process (an
//!   agent's slots, the agents of `ipdc-submit --local`) never have to tell
//!   their orphans apart (see the reaper module).
//! - elsewhere than Linux, the process group only.
//!
//! The agent logs the one it uses at start. The watchdog waits for the
//! runner (or its reaper) to exit and kills the whole run then, at the
//! deadline and on cancel; so does an error of ours or a panic. The run ends
//! when the runner exits, not when the last holder of its pipes closes
//! them: the pipes then give what the runner wrote and stop (see the pipes
//! module). A group is only ever signalled while our child is not reaped,
//! so its id cannot have been reused by an unrelated group.
//!
//! The runner dies with the thread that started it (a parent-death signal).
//! Under a reaper, the runner dies with the reaper, and the reaper ends,
//! killing what it holds, when the run's control pipe closes: when the run
//! ends or unwinds, and when the agent process dies, even by SIGKILL.
//!
//! # Files
//!
//! The runner script is sealed in memory, in no folder user code can write
//! (see the script module), and the interpreter runs isolated (`-I`): no
//! folder a job can write comes before the standard library on `sys.path`
//! (the job's own code folder comes last), so nothing a job plants is
//! imported by a later one in place of a standard module or of the runner.
//! Task folders are private to the agent's user (0700). Where the kernel has
//! Landlock, the runner and everything it starts may write only beneath the
//! task's folder and to `/dev/null` (`TMPDIR` is the task's folder), and
//! with Landlock ABI 6+ may not signal processes outside the task (the
//! agent, the reaper, other tasks). `IPDC_LANDLOCK=off` turns that off.
//!
//! # Memory
//!
//! The memory limit is `RLIMIT_AS` (address space) of the runner, set between
//! `fork` and `exec` and inherited by its subprocesses (each gets the same
//! limit, it is not shared). Python then raises `MemoryError`, which the
//! runner reports with exit status 5 and an `IPDC-ERROR: MemoryError: ...`
//! line; an allocation that fails where Python cannot raise kills it
//! (SIGSEGV, or SIGKILL from the kernel's OOM killer), which is also taken as
//! the memory limit when one is set. A reaper exits the way its runner did,
//! so these statuses mean the same under one. See
//! [`MIN_MEMORY_BYTES`](super::MIN_MEMORY_BYTES) for the floor.
//!
//! # What user code can still do
//!
//! - Leave its containment on purpose. In a cgroup: a process of a user who
//!   may write the agent's cgroup files (root, or the agent's own user when
//!   its cgroup is delegated to it) can move itself to another cgroup.
//!   Under a reaper: the user's code can kill its reaper (it runs as the
//!   same user), unless Landlock ABI 6+ scopes its signals; the runner then
//!   dies with it, but processes already orphaned go to init and live on
//!   (a reaper that is only stopped is woken when the run is stopped, and
//!   killed if it still does not end). Processes that others start on the
//!   code's request (`systemd-run`, `at`, cron, an ssh to the board itself)
//!   were never the task's.
//! - Read whatever the agent's user may read: other tasks' folders and
//!   inputs, the agent's config and key files if that user can read them.
//!   Landlock restricts writing here, not reading.
//! - Without Landlock: write wherever the agent's user may (other tasks'
//!   folders while they run, the work dir, the user's home), though nothing
//!   written there is imported by a later task.
//! - Use the network (no Landlock network rules, no network namespace), and
//!   all the CPU its slot's process gets; `RLIMIT_AS` is per process, not per
//!   task, so a task of several processes may use several times the limit.
//! - Everything runs as the agent's user, in the agent's PID and user
//!   namespaces: no other user id, no namespace of its own.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use super::CancelToken;
use super::contain::{Contained, Hook};
use super::pipes::Exited;

/// How often the watchdog looks at the cancel token and at the runner.
const WATCH_POLL: Duration = Duration::from_millis(10);

/// Makes `command` start in a process group of its own under the run's
/// containment (`hook`), die with the thread that spawns it (or, under a
/// reaper, with the reaper), and (with `memory`) have at most that many
/// bytes of address space; with `script` it inherits the sealed runner,
/// with `landlock` it is restricted by that ruleset.
pub(super) fn confine(
    command: &mut Command,
    hook: Hook,
    memory: Option<u64>,
    script: Option<RawFd>,
    landlock: Option<RawFd>,
) {
    command.process_group(0);
    // The runner dies with the thread that started it (which waits for
    // it), so that an agent killed outright, or `ipdc-submit --local`
    // stopped by Ctrl-C, leaves no user code running on its own.
    let parent = std::process::id();
    // SAFETY (every hook below): runs between fork and exec, where only
    // async-signal-safe operations are allowed. Each makes raw system calls
    // on copied integers and stack values: no allocation, no lock, no
    // access to the parent's other threads' state. On failure it builds an
    // `io::Error` from errno (no allocation) and the spawn fails with it.
    // The hooks run in this order; after the reaper's split, only in the
    // runner.
    match hook {
        Hook::Group => unsafe {
            command.pre_exec(move || die_with_parent(parent));
        },
        #[cfg(target_os = "linux")]
        Hook::Cgroup(procs) => unsafe {
            command.pre_exec(move || {
                super::cgroup::join(procs)?;
                die_with_parent(parent)
            });
        },
        // The reaper itself must not die with the thread: it would leave
        // the orphans it holds to init. It ends when its control pipe
        // closes (when the run ends, or the process dies); the runner
        // dies with the reaper.
        #[cfg(target_os = "linux")]
        Hook::Reaper(ctl) => unsafe {
            command.pre_exec(move || super::reaper::split(ctl));
        },
        #[cfg(not(target_os = "linux"))]
        Hook::Cgroup(_) | Hook::Reaper(_) => unreachable!("cgroups and reapers are made on Linux only"),
    }
    if let Some(bytes) = memory {
        unsafe {
            command.pre_exec(move || limit_address_space(bytes));
        }
    }
    if let Some(fd) = script {
        unsafe {
            command.pre_exec(move || super::script::inherit(fd));
        }
    }
    if let Some(fd) = landlock {
        unsafe {
            command.pre_exec(move || super::landlock::restrict_self(fd));
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

/// Why the watchdog killed the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The wall-clock limit was reached.
    Deadline,
    /// The run's [`CancelToken`] was cancelled.
    Cancelled,
}

/// Watches the run of our child `pid` until it has exited: kills all of the
/// run at `deadline` or when `cancel` is cancelled; once the child has
/// exited, kills what it left and raises `exited` (which ends the reading
/// of its pipes). Returns why it killed the run, if it did.
pub(super) fn watch(
    pid: u32,
    contained: &Contained,
    deadline: Option<Instant>,
    cancel: &CancelToken,
    exited: &Exited,
) -> Option<Stop> {
    let mut stop = None;
    loop {
        if has_exited(pid) {
            // Not reaped yet: its group id is still its own.
            contained.kill_all(pid);
            exited.raise();
            return stop;
        }
        let now = Instant::now();
        if stop.is_none() {
            if cancel.is_cancelled() {
                stop = Some(Stop::Cancelled);
            } else if deadline.is_some_and(|d| now >= d) {
                stop = Some(Stop::Deadline);
            }
            if stop.is_some() {
                contained.kill_all(pid);
            }
        }
        contained.check_reaper(pid);
        let nap = match (stop, deadline) {
            (None, Some(d)) => (d - now).min(WATCH_POLL),
            _ => WATCH_POLL,
        };
        std::thread::sleep(nap);
    }
}

/// Kills all of the run when dropped (on unwinding).
pub(super) struct KillOnDrop<'a>(pub(super) &'a Contained, pub(super) u32);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        self.0.kill_all(self.1);
    }
}

/// Whether our child `pid` has exited (without reaping it).
pub(super) fn has_exited(pid: u32) -> bool {
    // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: a valid pointer to `info`; WNOWAIT leaves the child
        // waitable, so `Child::wait` still reaps it.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            )
        };
        if r == 0 {
            // SAFETY: filled in by waitid (zero if nothing has exited yet).
            return unsafe { info.si_pid() } != 0;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return true;
        }
    }
}

/// Our child (the runner, or the reaper it runs under) and the run's
/// containment: until the child is reaped, dropping this kills the whole
/// run and reaps it; the containment is undone after (a cgroup removed).
pub(super) struct Running {
    pub(super) child: Child,
    pub(super) pid: u32,
    pub(super) contained: Contained,
    reaped: bool,
}

impl Running {
    pub(super) fn new(child: Child, mut contained: Contained) -> Self {
        contained.spawned();
        let pid = child.id();
        Running { child, pid, contained, reaped: false }
    }

    /// Reaps the child; from then on its group id is no longer ours.
    pub(super) fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = wait(&mut self.child)?;
        self.reaped = true;
        Ok(status)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            self.contained.kill_all(self.pid);
            let _ = wait(&mut self.child);
        }
    }
}

/// Waits for the child to exit.
fn wait(child: &mut Child) -> io::Result<ExitStatus> {
    loop {
        match child.wait() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
