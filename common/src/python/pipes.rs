//! The runner's pipes, read and written so that a run ends when the runner
//! exits, not when the last process holding a copy of a pipe closes it. A
//! `fork()`ed child of the user's code inherits all three pipes; if it
//! outlives the runner (sleeping, or escaped from containment) it must not
//! hold the task. So every pipe operation also watches [`Exited`], which
//! the watchdog raises once the runner has exited: from then on a read
//! takes only what is already in the pipe (all the runner wrote, since it
//! has exited; at most a pipe's capacity) and then reports the end, and a
//! write fails as a broken pipe.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// Raised once, when the runner has exited: a pipe whose write end is
/// dropped then, so that every `poll` waiting on its read end wakes.
pub(super) struct Exited {
    read: OwnedFd,
    write: Mutex<Option<OwnedFd>>,
}

impl Exited {
    pub(super) fn new() -> io::Result<Self> {
        let (read, write) = pipe()?;
        Ok(Exited { read, write: Mutex::new(Some(write)) })
    }

    /// Says that the runner has exited (idempotent).
    pub(super) fn raise(&self) {
        drop(self.write.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

/// A pipe with both ends close-on-exec.
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two-element array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `poll` on `fd` (for `events`) and on `exited`, waiting at most
/// `timeout_ms` (-1: without end). Returns (fd ready, exited raised).
fn wait(
    fd: RawFd,
    events: libc::c_short,
    exited: &Exited,
    timeout_ms: libc::c_int,
) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd { fd, events, revents: 0 },
        libc::pollfd { fd: exited.read.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    loop {
        // SAFETY: a valid array of two pollfd structures.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        if r >= 0 {
            return Ok((fds[0].revents != 0, fds[1].revents != 0));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reads one of the runner's output pipes until its end or, once the runner
/// has exited, until it holds nothing more.
pub(super) struct PipeReader<'a, R> {
    inner: R,
    exited: &'a Exited,
    /// Bytes read since the runner exited, and how many it can have left.
    after_exit: Option<(usize, usize)>,
}

impl<'a, R: Read + AsFd> PipeReader<'a, R> {
    pub(super) fn new(inner: R, exited: &'a Exited) -> Self {
        PipeReader { inner, exited, after_exit: None }
    }
}

impl<R: Read + AsFd> Read for PipeReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.inner.as_fd().as_raw_fd();
        loop {
            match &mut self.after_exit {
                None => {
                    let (ready, exited) = wait(fd, libc::POLLIN, self.exited, -1)?;
                    if exited {
                        // Counted from now on, whether or not data is there.
                        self.after_exit = Some((0, capacity(fd)));
                    } else if ready {
                        return self.inner.read(buf);
                    }
                }
                Some((taken, cap)) => {
                    // The runner is gone: what it wrote is in the pipe now,
                    // at most its capacity. More comes from a process that
                    // outlived it, not from the runner: stop there.
                    if *taken >= *cap {
                        return Ok(0);
                    }
                    let (ready, _) = wait(fd, libc::POLLIN, self.exited, 0)?;
                    if !ready {
                        return Ok(0);
                    }
                    let room = buf.len().min(*cap - *taken);
                    let n = self.inner.read(&mut buf[..room])?;
                    *taken += n;
                    return Ok(n);
                }
            }
        }
    }
}

/// The capacity of the pipe `fd` (64 KiB where it cannot be asked).
fn capacity(fd: RawFd) -> usize {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: fcntl on a descriptor we hold, integer result.
        let n = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
        if n > 0 {
            return n as usize;
        }
    }
    let _ = fd;
    64 << 10
}

/// Makes `fd` (our end of the runner's stdin) non-blocking, so that
/// [`write_all`] never blocks where the runner's exit could not wake it.
pub(super) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we hold, integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes all of `buf` to the runner's stdin (made non-blocking with
/// [`set_nonblocking`]). A broken pipe, or the runner's exit while the pipe
/// is full, is an error of kind `BrokenPipe`.
pub(super) fn write_all<W: Write + AsFd>(pipe: &mut W, mut buf: &[u8], exited: &Exited) -> io::Result<()> {
    while !buf.is_empty() {
        match pipe.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let (ready, gone) = wait(pipe.as_fd().as_raw_fd(), libc::POLLOUT, exited, -1)?;
                if !ready && gone {
                    // Nobody will read it: the runner has exited and what
                    // holds its stdin now is not the runner.
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::time::{Duration, Instant};

    fn files() -> (File, File) {
        let (r, w) = pipe().unwrap();
        (File::from(r), File::from(w))
    }

    #[test]
    fn a_reader_takes_what_is_left_after_the_exit_and_then_stops() {
        let (r, mut w) = files();
        let exited = Exited::new().unwrap();
        w.write_all(b"left in the pipe").unwrap();
        exited.raise();
        // `w` stays open, as if a leftover process held it.
        let mut got = Vec::new();
        PipeReader::new(r, &exited).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"left in the pipe");
    }

    #[test]
    fn a_reader_waits_for_data_until_the_exit() {
        let (r, mut w) = files();
        let exited = Exited::new().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                w.write_all(b"late").unwrap();
                std::thread::sleep(Duration::from_millis(50));
                exited.raise();
            });
            let mut got = Vec::new();
            PipeReader::new(&r, &exited).read_to_end(&mut got).unwrap();
            assert_eq!(got, b"late");
        });
    }

    #[test]
    fn a_reader_stops_at_a_pipe_full_after_the_exit() {
        let (r, mut w) = files();
        let exited = Exited::new().unwrap();
        let cap = capacity(r.as_raw_fd());
        exited.raise();
        std::thread::scope(|s| {
            // A process that outlived the runner and writes for ever.
            let writer = s.spawn(move || {
                let chunk = vec![b'x'; 4096];
                while w.write_all(&chunk).is_ok() {}
            });
            let mut got = Vec::new();
            let mut reader = PipeReader::new(r, &exited);
            reader.read_to_end(&mut got).unwrap();
            assert!(got.len() <= cap, "{} > {cap}", got.len());
            drop(reader); // closes the pipe: the writer stops
            writer.join().unwrap();
        });
    }

    #[test]
    fn a_write_to_a_full_pipe_fails_once_the_runner_has_exited() {
        let (r, mut w) = files();
        set_nonblocking(w.as_raw_fd()).unwrap();
        let exited = Exited::new().unwrap();
        let start = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                exited.raise();
            });
            let big = vec![0u8; 4 << 20];
            let e = write_all(&mut w, &big, &exited).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        });
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(r);
    }
}
