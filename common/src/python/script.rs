//! Where the interpreter finds the runner: never in a folder user code can
//! write. On Linux the runner is written once per process into a sealed
//! memfd (`memfd_create`, then `F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK |
//! F_SEAL_SEAL`): a file in memory that nobody, not even a process of the
//! same user, can change, and that has no path in any folder. Python opens
//! it as `/proc/self/fd/N` (the descriptor is inherited by the runner
//! only: close-on-exec is cleared between fork and exec). Elsewhere (or on
//! a kernel without memfd) it is a read-only file in a private folder
//! (0500) of the process's own under the temporary folder.
//!
//! The script's folder is not on the runner's `sys.path` (the interpreter
//! runs with `-I`), so no module file dropped anywhere can shadow the
//! standard library through it.

use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::protocol::{RUNNER_FILE_NAME, RUNNER_PY};

/// The runner as the interpreter opens it.
pub(super) struct Script {
    path: PathBuf,
    /// The sealed memfd (kept open for the life of the process), when it is one.
    fd: Option<RawFd>,
}

impl Script {
    /// What to give the interpreter as the script.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor the runner must inherit, if any (see [`inherit`]).
    pub(super) fn fd(&self) -> Option<RawFd> {
        self.fd
    }
}

/// The runner of this process, made on first use.
pub(super) fn runner() -> io::Result<&'static Script> {
    static SCRIPT: OnceLock<Result<Script, String>> = OnceLock::new();
    SCRIPT
        .get_or_init(|| {
            #[cfg(target_os = "linux")]
            match sealed() {
                Ok(s) => return Ok(s),
                Err(e) => log::warn!(
                    "cannot seal the Python runner in memory ({e}): writing it to a private folder"
                ),
            }
            private_file().map_err(|e| format!("cannot write the Python runner: {e}"))
        })
        .as_ref()
        .map_err(|e| io::Error::other(e.clone()))
}

#[cfg(target_os = "linux")]
fn sealed() -> io::Result<Script> {
    use std::io::Write;
    use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

    let name = c"ipdc_runner.py";
    // SAFETY: a NUL-terminated name and flags.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(RUNNER_PY.as_bytes())?;
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on our descriptor with integer arguments.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let path = PathBuf::from(format!("/proc/self/fd/{fd}"));
    // Check that it opens by that path (a /proc is mounted) and reads back whole.
    if std::fs::read(&path)? != RUNNER_PY.as_bytes() {
        return Err(io::Error::other(format!("{} does not read back as the runner", path.display())));
    }
    Ok(Script { path, fd: Some(file.into_raw_fd()) })
}

fn private_file() -> io::Result<Script> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

    let mut rand = [0u8; 8];
    getrandom::fill(&mut rand).map_err(|e| io::Error::other(e.to_string()))?;
    let tag: String = rand.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("ipdc-runner-{}-{tag}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let path = dir.join(RUNNER_FILE_NAME);
    std::fs::write(&path, RUNNER_PY)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500))?;
    Ok(Script { path, fd: None })
}

/// A `pre_exec` hook: lets the interpreter open `/proc/self/fd/<fd>` by
/// clearing close-on-exec on the child's copy of the descriptor.
pub(super) fn inherit(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number with integer arguments.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_reads_back_whole_and_cannot_be_changed() {
        let script = runner().unwrap();
        assert_eq!(std::fs::read(script.path()).unwrap(), RUNNER_PY.as_bytes());
        // Not even its owner can write it: sealed, or a read-only file.
        let opened = std::fs::OpenOptions::new().write(true).open(script.path());
        if let Ok(mut f) = opened {
            use std::io::Write;
            assert!(f.write_all(b"import os; os._exit(0)\n").is_err());
        }
        assert_eq!(std::fs::read(script.path()).unwrap(), RUNNER_PY.as_bytes());
    }
}
