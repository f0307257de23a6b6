//! The reaper: a small process of IPDC's own between the agent and one run's
//! runner, for machines where the agent cannot make cgroups. It is a child
//! subreaper (`PR_SET_CHILD_SUBREAPER`), so everything the user's code
//! starts and orphans (by `setsid()`, a double fork, `setpgid()`) is
//! re-parented to it rather than to init; when the runner has exited, or
//! when the run asks it to stop, it kills its children until it has none
//! left, and exits as the runner did. One reaper per run, so several runs
//! in one process (an agent's slots, the agents of `ipdc-submit --local`)
//! never have to tell each other's orphans apart.
//!
//! It is the child that `Command::spawn` forked, split in two by a
//! `pre_exec` hook ([`split`]): the new child goes on to exec Python, the
//! reaper never returns from the hook. As a fork of a multi-threaded
//! process that does not exec, it may only make async-signal-safe calls:
//! everything here is raw system calls on integers and stack buffers, no
//! allocation, no lock. It closes every file descriptor but its end of the
//! run's control pipe, so that it holds none of the runner's pipes (nor
//! those of other runs), and stops the run when that pipe is closed: by
//! the run, when it wants the runner killed (deadline, cancel, an error of
//! ours) or has ended; or by the kernel, when the agent process dies.

use std::io;
use std::os::fd::RawFd;

/// How long the reaper keeps killing what the runner left before it gives
/// up (a process stuck in the kernel cannot die until it returns).
const GIVE_UP_NS: i64 = 5_000_000_000;

/// How often the reaper looks at the control pipe while the runner runs,
/// and reaps the orphans that came to it.
const POLL_MS: libc::c_int = 20;

/// A `pre_exec` hook: makes the forked child the run's reaper and forks the
/// runner from it. In the runner (in a process group of its own, dying with
/// the reaper) it returns, so the spawn goes on with the next hooks and the
/// exec; the reaper never returns (see [`reap`]). `ctl` is the read end of
/// the run's control pipe.
///
/// # Safety
///
/// Only between fork and exec, as a `pre_exec` hook: the hooks after this
/// one run in the runner only.
pub(super) unsafe fn split(ctl: RawFd) -> io::Result<()> {
    // SAFETY: system calls on integers.
    unsafe {
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        let reaper = libc::getpid();
        match libc::fork() {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                // The runner. Its own group: what the watchdog's group kill
                // used to reach, and what user code signals as its group.
                if libc::setpgid(0, 0) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != reaper {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH)); // no allocation
                }
                Ok(())
            }
            runner => reap(runner, ctl),
        }
    }
}

/// The reaper's whole life: waits for the runner (or a stop), kills what is
/// left, exits as the runner did.
unsafe fn reap(runner: libc::pid_t, ctl: RawFd) -> ! {
    // SAFETY: see each function; all are system calls on our own values.
    unsafe {
        settle(ctl);
        let status = wait_runner(runner, ctl);
        kill_leftovers(runner);
        exit_as(status)
    }
}

/// Named for `ps`, not dumpable (no ptrace by the user's code, no core
/// dump), signals set so that what the agent is sent does not end it
/// before it has cleaned up, every other descriptor closed.
unsafe fn settle(ctl: RawFd) {
    // SAFETY: prctl, sigaction, sigprocmask, close_range, chdir on our own values.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"ipdc-reaper".as_ptr() as libc::c_ulong, 0, 0, 0);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        // Handlers inherited from the agent (tokio's, which write to
        // descriptors closed below) must not run here. Terminal and stop
        // signals, and SIGTERM (systemd sends it to the whole unit, a
        // `killall` of the agent's name to us too) are ignored: the agent
        // stops its runs itself, which closes our control pipe.
        for sig in 1..32 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let ignore = matches!(
                sig,
                libc::SIGHUP
                    | libc::SIGINT
                    | libc::SIGQUIT
                    | libc::SIGTERM
                    | libc::SIGPIPE
                    | libc::SIGUSR1
                    | libc::SIGUSR2
                    | libc::SIGALRM
                    | libc::SIGTSTP
                    | libc::SIGTTIN
                    | libc::SIGTTOU
            );
            set_action(sig, if ignore { libc::SIG_IGN } else { libc::SIG_DFL });
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        close_all_but(ctl);
        libc::chdir(c"/".as_ptr());
    }
}

unsafe fn set_action(sig: libc::c_int, handler: libc::sighandler_t) {
    // SAFETY: a zeroed sigaction is valid; only the handler is set.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        libc::sigaction(sig, &action, std::ptr::null_mut());
    }
}

/// Closes every descriptor except `keep`.
unsafe fn close_all_but(keep: RawFd) {
    // SAFETY: close_range / close on descriptor numbers.
    unsafe {
        let max = libc::c_uint::MAX;
        let keep = keep as libc::c_uint;
        let low = keep == 0 || libc::syscall(libc::SYS_close_range, 0, keep - 1, 0) == 0;
        let high = libc::syscall(libc::SYS_close_range, keep + 1, max, 0) == 0;
        if !(low && high) {
            // Before Linux 5.9: one at a time, up to the descriptor limit.
            let mut limit: libc::rlimit = std::mem::zeroed();
            let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur.min(1 << 20) as libc::c_uint
            } else {
                4096
            };
            for fd in 0..top {
                if fd != keep {
                    libc::close(fd as libc::c_int);
                }
            }
        }
    }
}

/// Waits until the runner has exited and returns its wait status. Reaps the
/// orphans that come to us meanwhile; once the control pipe is readable or
/// closed, kills the runner's group and the runner first.
unsafe fn wait_runner(runner: libc::pid_t, ctl: RawFd) -> libc::c_int {
    // SAFETY: waitpid, kill, poll, nanosleep on our own values.
    unsafe {
        // Wakes us when the runner exits (Linux 5.3+; -1 before, which poll
        // ignores: then the timeout notices it).
        let pidfd = libc::syscall(libc::SYS_pidfd_open, runner, 0) as libc::c_int;
        let mut stop = false;
        loop {
            loop {
                let mut status = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid == runner {
                    if pidfd >= 0 {
                        libc::close(pidfd);
                    }
                    return status;
                }
                if pid <= 0 {
                    break;
                }
            }
            if stop {
                libc::kill(-runner, libc::SIGKILL);
                libc::kill(runner, libc::SIGKILL);
                nap_ms(1);
                continue;
            }
            let mut fds = [
                libc::pollfd { fd: ctl, events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 },
            ];
            if libc::poll(fds.as_mut_ptr(), 2, POLL_MS) > 0 && fds[0].revents != 0 {
                stop = true;
            }
        }
    }
}

/// Kills the runner's group, then every child of ours, again and again (the
/// children of a killed child come to us), until we have none left or
/// [`GIVE_UP_NS`] has passed.
unsafe fn kill_leftovers(runner: libc::pid_t) {
    // SAFETY: kill, waitpid, clock_gettime, nanosleep; see kill_children.
    unsafe {
        let me = libc::getpid();
        let start = now_ns();
        libc::kill(-runner, libc::SIGKILL);
        loop {
            kill_children(me);
            let none_left = loop {
                let mut status = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid > 0 {
                    continue;
                }
                break pid < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD);
            };
            if none_left || now_ns() - start > GIVE_UP_NS {
                return;
            }
            nap_ms(1);
        }
    }
}

/// SIGKILL to every process whose parent is `me`, found in `/proc`.
unsafe fn kill_children(me: libc::pid_t) {
    // SAFETY: open/getdents64/close on /proc with a stack buffer; the
    // records are read within the bytes the kernel returned.
    unsafe {
        let dir = libc::open(c"/proc".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
        if dir < 0 {
            return;
        }
        let mut buf = [0u64; 1024]; // 8 KiB, aligned for linux_dirent64
        loop {
            let n = libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), std::mem::size_of_val(&buf));
            if n <= 0 {
                break;
            }
            let bytes = std::slice::from_raw_parts(buf.as_ptr() as *const u8, n as usize);
            let mut at = 0;
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name (NUL-terminated).
            while at + 19 < bytes.len() {
                let reclen = u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]) as usize;
                if reclen == 0 {
                    break;
                }
                let name = &bytes[at + 19..(at + reclen).min(bytes.len())];
                if let Some(pid) = parse_pid(name)
                    && pid != me
                    && parent_of(pid) == Some(me)
                {
                    libc::kill(pid, libc::SIGKILL);
                }
                at += reclen;
            }
        }
        libc::close(dir);
    }
}

/// The number a `/proc` entry is named by (up to its NUL), if it is one.
fn parse_pid(name: &[u8]) -> Option<libc::pid_t> {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    let digits = &name[..end];
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, &d| n * 10 + (d - b'0') as libc::pid_t))
}

/// The parent of `pid`, from `/proc/PID/stat` (`pid (comm) S ppid ...`).
unsafe fn parent_of(pid: libc::pid_t) -> Option<libc::pid_t> {
    let mut path = [0u8; 32];
    let len = stat_path(pid, &mut path);
    let mut stat = [0u8; 512];
    // SAFETY: a NUL-terminated path in a stack buffer; read into a stack buffer.
    let n = unsafe {
        let fd = libc::open(path[..len].as_ptr() as *const libc::c_char, libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, stat.as_mut_ptr() as *mut libc::c_void, stat.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return None;
    }
    parse_ppid(&stat[..n as usize])
}

/// Writes `/proc/PID/stat` and a NUL into `buf`; returns the length with the NUL.
fn stat_path(pid: libc::pid_t, buf: &mut [u8; 32]) -> usize {
    let mut digits = [0u8; 10];
    let mut n = pid as u32;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let parts: [&[u8]; 4] = [b"/proc/", &digits[i..], b"/stat", b"\0"];
    let mut len = 0;
    for part in parts {
        buf[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    len
}

/// The 4th field of a `/proc/PID/stat` line; the 2nd (the name, in
/// parentheses) may hold spaces and parentheses, so it is found after the last `)`.
fn parse_ppid(stat: &[u8]) -> Option<libc::pid_t> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let mut fields = stat[close + 1..].split(|&b| b == b' ').filter(|f| !f.is_empty());
    let _state = fields.next()?;
    parse_pid(fields.next()?)
}

/// Exits the way the runner did: with its exit code, or killed by the same
/// signal (no core dump: we are not dumpable).
unsafe fn exit_as(status: libc::c_int) -> ! {
    // SAFETY: sigaction, sigprocmask, kill and _exit on our own values.
    unsafe {
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            set_action(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 4 })
    }
}

fn now_ns() -> i64 {
    // SAFETY: clock_gettime into a stack value.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as i64 * 1_000_000_000 + t.tv_nsec as i64
}

fn nap_ms(ms: i64) {
    let t = libc::timespec { tv_sec: 0, tv_nsec: (ms * 1_000_000) as _ };
    // SAFETY: nanosleep with a valid timespec.
    unsafe { libc::nanosleep(&t, std::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_their_parent_whatever_the_name_holds() {
        assert_eq!(parse_ppid(b"123 (sleep) S 45 123 123 0 -1"), Some(45));
        assert_eq!(parse_ppid(b"9 (a) b (c) R 1 9 9"), Some(1));
        assert_eq!(parse_ppid(b"9 (x y) Z 77 9"), Some(77));
        assert_eq!(parse_ppid(b"9 (trunc"), None);
        assert_eq!(parse_pid(b"1234\0\0"), Some(1234));
        assert_eq!(parse_pid(b"self\0"), None);
        assert_eq!(parse_pid(b"\0"), None);
    }

    #[test]
    fn stat_paths_are_built_without_allocating() {
        let mut buf = [0u8; 32];
        let n = stat_path(4194304, &mut buf);
        assert_eq!(&buf[..n], b"/proc/4194304/stat\0");
        let n = stat_path(0, &mut buf);
        assert_eq!(&buf[..n], b"/proc/0/stat\0");
        // SAFETY: reading our own stat.
        assert_eq!(unsafe { parent_of(std::process::id() as libc::pid_t) }, Some(unsafe { libc::getppid() }));
    }
}
