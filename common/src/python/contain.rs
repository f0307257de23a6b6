//! [`Containment`]: how the processes of one run are kept together so that
//! all of them can be killed when the run ends, however they left the
//! runner's process group; chosen once per process ([`Containment::shared`]).
//! The per-run side ([`Contained`]) makes the run's cgroup or control pipe,
//! adds its `pre_exec` hook through the sandbox, and kills.
//!
//! The choice, first that works: a cgroup per run ([`super::cgroup`]), where
//! the agent may make cgroups and the kernel has `cgroup.kill`; else a
//! reaper process per run ([`super::reaper`]), on any Linux; else (not
//! Linux) the process group alone. `IPDC_CONTAINMENT` can choose instead:
//! `cgroup` (under the agent's own cgroup), `cgroup:/path` (under a cgroup
//! the agent may write), or `subreaper`; a choice that does not work here
//! is logged and the next one used.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use super::cgroup::{self, RunCgroup};

/// The environment variable that chooses the containment (see the module doc).
pub const CONTAINMENT_ENV: &str = "IPDC_CONTAINMENT";

/// How the processes of a run are kept together and killed at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containment {
    /// A cgroup v2 per run, made under this folder; `cgroup.kill` at the end.
    Cgroup(PathBuf),
    /// A reaper process per run (a child subreaper between the agent and
    /// the runner) that kills every descendant when the runner exits.
    Subreaper,
    /// The runner's process group only: processes that leave it escape.
    ProcessGroup,
}

impl Containment {
    /// What this process uses: detected on first use (and logged then,
    /// with whether Landlock is available).
    pub fn shared() -> &'static Containment {
        static SHARED: OnceLock<Containment> = OnceLock::new();
        SHARED.get_or_init(|| {
            let (chosen, why) = Containment::detect();
            match why {
                None => log::info!("user code containment: {chosen}"),
                Some(why) => log::info!("user code containment: {chosen} ({why})"),
            }
            match super::landlock::abi() {
                Ok(_) if super::landlock::disabled() => log::info!(
                    "Landlock turned off by {}=off: user code may write wherever the agent's user may",
                    super::landlock::LANDLOCK_ENV
                ),
                Ok(v) => log::info!("Landlock ABI {v}: user code may write only in its task's folder"),
                Err(why) => {
                    log::info!("no Landlock ({why}): user code may write wherever the agent's user may")
                }
            }
            chosen
        })
    }

    /// The containment to use here, from `IPDC_CONTAINMENT` and what works,
    /// with why better ones are not used (for the log).
    pub fn detect() -> (Containment, Option<String>) {
        let asked = std::env::var(CONTAINMENT_ENV).unwrap_or_default();
        let asked = asked.trim();
        let cgroup = match asked {
            "" | "auto" | "cgroup" => Some(Containment::own_cgroup()),
            "subreaper" => None,
            other => match other.strip_prefix("cgroup:") {
                Some(path) => Some(Containment::cgroup_under(path)),
                None => {
                    log::warn!(
                        "{CONTAINMENT_ENV}={other:?} is not one of cgroup, cgroup:/path, subreaper: ignored"
                    );
                    Some(Containment::own_cgroup())
                }
            },
        };
        let why = match cgroup {
            Some(Ok(c)) => return (c, None),
            Some(Err(why)) => {
                if asked.starts_with("cgroup") {
                    log::warn!("{CONTAINMENT_ENV}={asked}: {why}");
                }
                Some(format!("no cgroup: {why}"))
            }
            None => Some(format!("{CONTAINMENT_ENV}=subreaper")),
        };
        if cfg!(target_os = "linux") {
            (Containment::Subreaper, why)
        } else {
            (Containment::ProcessGroup, why)
        }
    }

    /// A cgroup per run under the agent's own cgroup, if that works here.
    pub fn own_cgroup() -> Result<Containment, String> {
        #[cfg(target_os = "linux")]
        return Containment::cgroup_under(cgroup::own()?);
        #[cfg(not(target_os = "linux"))]
        Err("cgroups are a Linux feature".into())
    }

    /// A cgroup per run under `parent` (a cgroup v2 folder), if that works.
    pub fn cgroup_under(parent: impl Into<PathBuf>) -> Result<Containment, String> {
        let parent = parent.into();
        #[cfg(target_os = "linux")]
        {
            cgroup::probe(&parent)?;
            Ok(Containment::Cgroup(parent))
        }
        #[cfg(not(target_os = "linux"))]
        Err(format!("cgroups are a Linux feature ({})", parent.display()))
    }
}

impl fmt::Display for Containment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Containment::Cgroup(parent) => {
                write!(f, "cgroup, one per task under {} (cgroup.kill at its end)", parent.display())
            }
            Containment::Subreaper => {
                write!(f, "subreaper, a reaper process per task that kills what the task left")
            }
            Containment::ProcessGroup => write!(f, "process group only (what leaves it escapes)"),
        }
    }
}

/// One run's containment, from before the spawn until after the reaping.
pub(super) enum Contained {
    Group,
    #[cfg(target_os = "linux")]
    Cgroup(RunCgroup),
    Reaper {
        /// The reaper's end of the control pipe: dropped once it is spawned.
        read: Option<OwnedFd>,
        /// Ours: closing it tells the reaper to kill everything and exit.
        write: Mutex<Option<OwnedFd>>,
        /// When it was told so.
        told: OnceLock<Instant>,
        /// Whether it was killed for not ending in time ([`REAPER_GRACE`]).
        forced: AtomicBool,
    },
}

/// How long a reaper may take to end once told to before it is killed:
/// it gives up on leftovers after 5 s itself.
const REAPER_GRACE: Duration = Duration::from_secs(10);

/// What the child needs between fork and exec: descriptor numbers only.
#[derive(Debug, Clone, Copy)]
pub(super) enum Hook {
    Group,
    /// Join the cgroup whose `cgroup.procs` this is.
    Cgroup(RawFd),
    /// Split into reaper and runner; the reaper reads this control pipe.
    Reaper(RawFd),
}

impl Contained {
    /// Sets up one run under `how`. A cgroup that cannot be made falls back
    /// to a reaper (with a warning).
    pub(super) fn start(how: &Containment) -> io::Result<Contained> {
        match how {
            Containment::ProcessGroup => Ok(Contained::Group),
            #[cfg(target_os = "linux")]
            Containment::Subreaper => reaper(),
            #[cfg(not(target_os = "linux"))]
            Containment::Subreaper => Ok(Contained::Group),
            #[cfg(target_os = "linux")]
            Containment::Cgroup(parent) => match RunCgroup::create(parent) {
                Ok(cg) => Ok(Contained::Cgroup(cg)),
                Err(e) => {
                    log::warn!("{e}: this task is contained by a reaper process instead");
                    reaper()
                }
            },
            #[cfg(not(target_os = "linux"))]
            Containment::Cgroup(_) => Ok(Contained::Group),
        }
    }

    pub(super) fn hook(&self) -> Hook {
        match self {
            Contained::Group => Hook::Group,
            #[cfg(target_os = "linux")]
            Contained::Cgroup(cg) => Hook::Cgroup(cg.procs_fd()),
            Contained::Reaper { read, .. } => Hook::Reaper(read.as_ref().map_or(-1, |r| r.as_raw_fd())),
        }
    }

    /// After the spawn: the reaper has its copy of the control pipe.
    pub(super) fn spawned(&mut self) {
        if let Contained::Reaper { read, .. } = self {
            drop(read.take());
        }
    }

    /// Kills the run's every process. `pid` is our child (the runner, or its
    /// reaper), not yet reaped, so its group id is still its own. Safe to
    /// call from any thread and more than once.
    pub(super) fn kill_all(&self, pid: u32) {
        match self {
            Contained::Group => kill_group(pid),
            #[cfg(target_os = "linux")]
            Contained::Cgroup(cg) => {
                cg.kill();
                kill_group(pid);
            }
            Contained::Reaper { write, told, .. } => {
                told.get_or_init(Instant::now);
                drop(write.lock().unwrap_or_else(|e| e.into_inner()).take());
                // A reaper stopped (SIGSTOP) by the user's code must go on.
                // SAFETY: kill() has no memory-safety preconditions.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
            }
        }
    }

    /// The last resort when a reaper has not ended [`REAPER_GRACE`] after
    /// [`Contained::kill_all`]: SIGKILL to it (its runner dies with it; what
    /// the runner left may then escape, which is logged). `pid` as there.
    pub(super) fn check_reaper(&self, pid: u32) {
        if let Contained::Reaper { told, forced, .. } = self
            && told.get().is_some_and(|t| t.elapsed() > REAPER_GRACE)
            && !forced.swap(true, Ordering::SeqCst)
        {
            log::warn!(
                "the reaper of a task (pid {pid}) did not end when told to: killing it; processes the task started may be left running"
            );
            // SAFETY: kill() has no memory-safety preconditions; our unreaped child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

#[cfg(target_os = "linux")]
fn reaper() -> io::Result<Contained> {
    let (read, write) = super::pipes::pipe()?;
    Ok(Contained::Reaper {
        read: Some(read),
        write: Mutex::new(Some(write)),
        told: OnceLock::new(),
        forced: AtomicBool::new(false),
    })
}

/// SIGKILL to every process of the group `pgid`. Only called while its
/// leader (our child) is not reaped, so the id is still this group's.
pub(super) fn kill_group(pgid: u32) {
    // SAFETY: kill() has no memory-safety preconditions.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), libc::SIGKILL);
    }
}
