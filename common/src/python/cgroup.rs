//! A cgroup v2 per run, where the agent may make one: the runner is moved
//! into it between fork and exec (before any user code runs, so everything
//! it starts is born inside), and at the end `cgroup.kill` (Linux 5.14+)
//! kills whatever is in it, however it left the process group or session.
//! The cgroup is then removed.
//!
//! Run cgroups are made under the agent's own cgroup (from
//! `/proc/self/cgroup` and the cgroup2 mount in `/proc/self/mountinfo`), or
//! under a folder named by `IPDC_CONTAINMENT=cgroup:/path`. They are named
//! `ipdc-<agent pid>-<n>`, so that an agent can remove (killing what is still
//! in them) those that an agent killed outright left behind.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Prefix of the run cgroups' names.
const PREFIX: &str = "ipdc-";

/// How long removing a run cgroup waits for its processes to be gone.
const REMOVE_WAIT: Duration = Duration::from_secs(5);

/// This process's cgroup v2 folder.
pub(super) fn own() -> Result<PathBuf, String> {
    let cgroup =
        std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process is in no cgroup v2 hierarchy (cgroup v1 only)")?;
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let (root, mount) =
        mountinfo.lines().find_map(cgroup2_mount).ok_or("no cgroup2 file system is mounted")?;
    let rel = Path::new(path).strip_prefix(&root).map_err(|_| {
        format!("this process's cgroup {path} is outside the cgroup2 mount at {}", mount.display())
    })?;
    Ok(if rel.as_os_str().is_empty() { mount } else { mount.join(rel) })
}

/// (root, mount point) of a `/proc/self/mountinfo` line of a cgroup2 mount.
fn cgroup2_mount(line: &str) -> Option<(PathBuf, PathBuf)> {
    let (fields, fs) = line.split_once(" - ")?;
    if fs.split(' ').next()? != "cgroup2" {
        return None;
    }
    let fields: Vec<&str> = fields.split(' ').collect();
    Some((unescape(fields.get(3)?).into(), unescape(fields.get(4)?).into()))
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks that runs can be contained under `parent`: a cgroup can be made
/// there, it has `cgroup.kill`, and a process can be moved into it. Also
/// removes the run cgroups of agent processes that are gone.
pub(super) fn probe(parent: &Path) -> Result<(), String> {
    remove_stale(parent);
    let cg = RunCgroup::create(parent).map_err(|e| e.to_string())?;
    // A child that only joins the cgroup and exits: write and _exit are
    // safe after fork even in a multi-threaded process.
    // SAFETY: see above; the parent only waits for it.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        let code = match join(cg.procs_fd()) {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(libc::EINVAL) & 0x7f,
        };
        // SAFETY: ends the child without running anything of the parent's.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(format!("waitpid: {}", io::Error::last_os_error()));
        }
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { libc::EINVAL };
        return Err(format!(
            "cannot move a process into {}: {}",
            cg.dir.display(),
            io::Error::from_raw_os_error(code)
        ));
    }
    drop(cg);
    Ok(())
}

/// Kills and removes the run cgroups under `parent` whose agent process is
/// gone (killed outright, or the machine lost power). Best effort.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|n| n.split_once('-'))
        else {
            continue;
        };
        let Ok(pid) = pid.0.parse::<libc::pid_t>() else { continue };
        // SAFETY: signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone && pid as u32 != std::process::id() {
            let dir = entry.path();
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            match remove(&dir) {
                Ok(()) => log::info!("removed {}, left by an agent that is gone", dir.display()),
                Err(e) => log::warn!("cannot remove {}, left by an agent that is gone: {e}", dir.display()),
            }
        }
    }
}

/// One run's cgroup, killed and removed when dropped.
pub(super) struct RunCgroup {
    dir: PathBuf,
    procs: OwnedFd,
    kill: OwnedFd,
}

impl RunCgroup {
    /// Makes a new run cgroup under `parent`.
    pub(super) fn create(parent: &Path) -> io::Result<Self> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("{PREFIX}{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot make a cgroup in {}: {e}", parent.display()))
        })?;
        let open = |name: &str| {
            std::fs::OpenOptions::new().write(true).open(dir.join(name)).map(OwnedFd::from).map_err(|e| {
                let what = if name == "cgroup.kill" { " (it needs Linux 5.14 or later)" } else { "" };
                io::Error::new(e.kind(), format!("{}: {e}{what}", dir.join(name).display()))
            })
        };
        let opened = open("cgroup.procs").and_then(|procs| Ok((procs, open("cgroup.kill")?)));
        match opened {
            Ok((procs, kill)) => Ok(RunCgroup { dir, procs, kill }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// `cgroup.procs`, open for writing: see [`join`].
    pub(super) fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// SIGKILL to every process in the cgroup (one system call: safe from
    /// any thread, at any time).
    pub(super) fn kill(&self) {
        // SAFETY: write of a stack byte to a descriptor we own.
        unsafe { libc::write(self.kill.as_raw_fd(), b"1".as_ptr() as *const libc::c_void, 1) };
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        self.kill();
        if let Err(e) = remove(&self.dir) {
            log::warn!("cannot remove the task's cgroup {}: {e}", self.dir.display());
        }
    }
}

/// Waits until the cgroup `dir` holds no process, then removes it.
fn remove(dir: &Path) -> io::Result<()> {
    let start = Instant::now();
    loop {
        let populated = std::fs::read_to_string(dir.join("cgroup.events"))
            .map(|e| e.lines().any(|l| l == "populated 1"))
            .unwrap_or(false);
        if !populated {
            match std::fs::remove_dir(dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) if start.elapsed() > REMOVE_WAIT => return Err(e),
                Err(_) => {}
            }
        } else if start.elapsed() > REMOVE_WAIT {
            return Err(io::Error::other("processes are still in it (stuck in the kernel?)"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A `pre_exec` hook: moves the calling process into the cgroup whose
/// `cgroup.procs` is open as `procs` ("0" means the writer). One write.
pub(super) fn join(procs: RawFd) -> io::Result<()> {
    // SAFETY: write of a stack byte to a descriptor the parent opened.
    if unsafe { libc::write(procs, b"0".as_ptr() as *const libc::c_void, 1) } != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        let v1 = "35 25 0:30 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu";
        assert_eq!(cgroup2_mount(v1), None);
        let v2 = "36 25 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        assert_eq!(cgroup2_mount(v2), Some(("/".into(), "/sys/fs/cgroup/unified".into())));
        let odd = r"36 25 0:31 /sub /mnt/my\040cgroups rw - cgroup2 none rw";
        assert_eq!(cgroup2_mount(odd), Some(("/sub".into(), "/mnt/my cgroups".into())));
        assert_eq!(unescape(r"a\134b\04"), r"a\b\04");
    }
}
