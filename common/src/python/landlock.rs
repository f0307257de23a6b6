//! Landlock, where the kernel offers it (Linux 5.13+ with `landlock` in its
//! LSM list): the runner may then write only beneath its task's folder and
//! to `/dev/null`. Reading stays open (Python needs its library, the job its
//! installed modules), and so do already-open descriptors (the pipes). The
//! ruleset is built in the agent before the fork; between fork and exec the
//! runner only sets `no_new_privs` and restricts itself, for good, with
//! everything it starts. With ABI 6 (Linux 6.12+) the runner may also no
//! longer signal processes outside its domain (the agent, its reaper, other
//! tasks' processes).
//!
//! Best effort: on a kernel without Landlock the runner runs as before (the
//! agent says so once at start); `IPDC_LANDLOCK=off` turns it off for the
//! process (for a job that needs to write elsewhere, e.g. `/dev/shm` for
//! `multiprocessing`), `PythonExecutor::without_landlock` for one executor.
//! Raw system calls, no crate: three calls and two structures. Tested
//! (`python_containment.rs`) against the kernel it runs on: the ruleset
//! where the kernel has Landlock, the fallback where it has not.

use std::io;
use std::os::fd::RawFd;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

/// The environment variable that turns Landlock off (`off`).
pub const LANDLOCK_ENV: &str = "IPDC_LANDLOCK";

/// The Landlock ABI version of the running kernel, or why there is none.
/// Asked once per process.
pub fn abi() -> Result<u32, String> {
    static ABI: OnceLock<Result<u32, String>> = OnceLock::new();
    ABI.get_or_init(probe).clone()
}

/// Whether `IPDC_LANDLOCK=off` turns Landlock off in this process.
pub(super) fn disabled() -> bool {
    std::env::var(LANDLOCK_ENV).is_ok_and(|v| v.trim() == "off")
}

#[cfg(not(target_os = "linux"))]
fn probe() -> Result<u32, String> {
    Err("Landlock is a Linux feature".into())
}

#[cfg(target_os = "linux")]
fn probe() -> Result<u32, String> {
    // SAFETY: the version query takes no pointer (NULL, size 0).
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            sys::CREATE_RULESET_VERSION,
        )
    };
    if v >= 1 {
        return Ok(v as u32);
    }
    Err(match io::Error::last_os_error().raw_os_error() {
        Some(libc::ENOSYS) => "this kernel was built without Landlock".into(),
        Some(libc::EOPNOTSUPP) => {
            "Landlock is not enabled in this kernel (it is not in its lsm= list)".into()
        }
        _ => format!("Landlock is not usable: {}", io::Error::last_os_error()),
    })
}

/// A Landlock ruleset that allows writing only beneath one folder and to
/// `/dev/null`.
pub(super) struct Ruleset {
    #[cfg(target_os = "linux")]
    fd: OwnedFd,
}

impl Ruleset {
    /// The ruleset for a runner working in `dir`, or None when the kernel
    /// has no Landlock.
    pub(super) fn writable_only(dir: &Path) -> io::Result<Option<Ruleset>> {
        let Ok(abi) = abi() else { return Ok(None) };
        #[cfg(target_os = "linux")]
        {
            let attr = sys::RulesetAttr {
                handled_access_fs: sys::handled(abi),
                handled_access_net: 0,
                scoped: if abi >= 6 { sys::SCOPE_SIGNAL } else { 0 },
            };
            // Older kernels take the larger structure when its extra fields are zero.
            // SAFETY: a valid pointer to the structure and its size.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_landlock_create_ruleset,
                    &attr as *const sys::RulesetAttr,
                    std::mem::size_of::<sys::RulesetAttr>(),
                    0u32,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh descriptor (close-on-exec) that nothing else owns.
            let ruleset = Ruleset { fd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) } };
            ruleset.allow(dir, sys::handled(abi))?;
            ruleset.allow(Path::new("/dev/null"), sys::file_rights(abi))?;
            Ok(Some(ruleset))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (abi, dir);
            Ok(None)
        }
    }

    #[cfg(target_os = "linux")]
    fn allow(&self, path: &Path, rights: u64) -> io::Result<()> {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let rule = sys::PathBeneath { allowed_access: rights, parent_fd: opened.as_raw_fd() };
        // SAFETY: a valid pointer to a packed landlock_path_beneath_attr.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                sys::RULE_PATH_BENEATH,
                &rule as *const sys::PathBeneath,
                0u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The ruleset's descriptor, for [`restrict_self`].
    pub(super) fn fd(&self) -> RawFd {
        #[cfg(target_os = "linux")]
        return self.fd.as_raw_fd();
        #[cfg(not(target_os = "linux"))]
        -1
    }
}

#[cfg(target_os = "linux")]
use std::os::unix::fs::OpenOptionsExt;

/// A `pre_exec` hook: no new privileges (which unprivileged Landlock
/// requires; setuid programs then gain nothing), then the ruleset.
pub(super) fn restrict_self(ruleset: RawFd) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl and landlock_restrict_self on integers.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
    }
    let _ = ruleset;
    Ok(())
}

/// The kernel's structures and constants (`linux/landlock.h`).
#[cfg(target_os = "linux")]
mod sys {
    pub const CREATE_RULESET_VERSION: u32 = 1;
    pub const RULE_PATH_BENEATH: libc::c_int = 1;

    const WRITE_FILE: u64 = 1 << 1;
    const REMOVE_DIR: u64 = 1 << 4;
    const REMOVE_FILE: u64 = 1 << 5;
    const MAKE_CHAR: u64 = 1 << 6;
    const MAKE_DIR: u64 = 1 << 7;
    const MAKE_REG: u64 = 1 << 8;
    const MAKE_SOCK: u64 = 1 << 9;
    const MAKE_FIFO: u64 = 1 << 10;
    const MAKE_BLOCK: u64 = 1 << 11;
    const MAKE_SYM: u64 = 1 << 12;
    /// ABI 2: linking or renaming across folders.
    const REFER: u64 = 1 << 13;
    /// ABI 3: truncating.
    const TRUNCATE: u64 = 1 << 14;
    /// ABI 6: no signals to processes outside the domain.
    pub const SCOPE_SIGNAL: u64 = 1 << 1;

    /// `struct landlock_ruleset_attr` (its ABI 6 size; older kernels accept
    /// it with the newer fields zero).
    #[repr(C)]
    pub struct RulesetAttr {
        pub handled_access_fs: u64,
        pub handled_access_net: u64,
        pub scoped: u64,
    }

    /// `struct landlock_path_beneath_attr`, packed as the kernel has it.
    #[repr(C, packed)]
    pub struct PathBeneath {
        pub allowed_access: u64,
        pub parent_fd: i32,
    }

    /// The rights the ruleset handles (denies unless a rule allows them):
    /// every way of writing that this ABI knows. Reading, executing and
    /// device ioctls stay unhandled, so allowed everywhere.
    pub fn handled(abi: u32) -> u64 {
        let mut rights = WRITE_FILE
            | REMOVE_DIR
            | REMOVE_FILE
            | MAKE_CHAR
            | MAKE_DIR
            | MAKE_REG
            | MAKE_SOCK
            | MAKE_FIFO
            | MAKE_BLOCK
            | MAKE_SYM;
        if abi >= 2 {
            rights |= REFER;
        }
        if abi >= 3 {
            rights |= TRUNCATE;
        }
        rights
    }

    /// The write rights that apply to a file (not a folder), for /dev/null.
    pub fn file_rights(abi: u32) -> u64 {
        if abi >= 3 { WRITE_FILE | TRUNCATE } else { WRITE_FILE }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_abi_answer_matches_the_kernel_and_without_it_there_is_no_ruleset() {
        let dir = std::env::temp_dir();
        match abi() {
            Ok(v) => {
                assert!(v >= 1);
                assert!(Ruleset::writable_only(&dir).unwrap().is_some());
            }
            Err(why) => {
                // The fallback: no ruleset, no error; the reason is for the log.
                assert!(why.contains("Landlock"), "{why}");
                assert!(Ruleset::writable_only(&dir).unwrap().is_none());
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_handled_rights_grow_with_the_abi_and_files_get_file_rights_only() {
        assert_eq!(sys::handled(1), 0b1_1111_1111_0010);
        assert_eq!(sys::handled(2), sys::handled(1) | 1 << 13);
        assert_eq!(sys::handled(3), sys::handled(2) | 1 << 14);
        assert_eq!(sys::handled(6), sys::handled(3));
        assert_eq!(sys::file_rights(1), 1 << 1);
        assert_eq!(sys::file_rights(3), 1 << 1 | 1 << 14);
        assert_eq!(std::mem::size_of::<sys::PathBeneath>(), 12);
        assert_eq!(std::mem::size_of::<sys::RulesetAttr>(), 24);
    }
}
