//! The Python executor: runs a user's `Map.py` / `Reduce.py` through
//! `runner.py` (embedded here) in one `python3` subprocess per task, streaming
//! records through pipes in batches.
//!
//! Command line (no shell): `PYTHON -B -s <workdir>/ipdc_runner.py map MAP_PY
//! [--combine REDUCE_PY]` or `... reduce REDUCE_PY`, with the task's own
//! temporary folder as the working directory. stdin carries the split's raw
//! lines (map) or blocks of records sorted by key (reduce: `u32 n`, then the
//! `2n` `u32` lengths of key, value, key, value..., then those datums; all
//! little-endian); stdout carries framed
//! records (see [`crate::record`]); stderr carries anything the user prints,
//! then one protocol line: `IPDC-STATS {json counters}` on success (exit
//! status 0), or `IPDC-ERROR: summary` after a traceback on failure (exit
//! status 2: the user's file cannot be loaded; 3: the user's code failed or
//! produced something that cannot be stored; 4: runner or protocol problem;
//! 5: the user's code raised `MemoryError`).
//!
//! Threads: the calling thread feeds stdin and hands records to the sink;
//! one thread drains stdout into a channel, another keeps the last
//! [`STDERR_TAIL`] bytes of stderr. Because stdout and stderr are always
//! drained, writing stdin cannot deadlock, and a runner that exits early just
//! turns the next write into a broken pipe, which ends the feeding.
//!
//! Sandbox limits ([`Limits`]) and cancellation ([`CancelToken`]): the
//! runner is the leader of its own process group, so it and everything the
//! user's code starts (subprocesses, `os.system`, ...) can be killed at once
//! with `kill(-pgid, SIGKILL)`. A watchdog thread does that at the wall-clock
//! deadline or when the task is cancelled, which closes the pipes and makes
//! the run return promptly with [`ExecError::TimedOut`] or
//! [`ExecError::Cancelled`]. The group is also killed when the run ends for
//! any other reason (success, an error of ours, a panic): nothing the user
//! started outlives its task. (Code that leaves the group on purpose, with
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
//! the memory limit when one is set. See [`MIN_MEMORY_BYTES`] for the floor.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::exec::{ExecStats, RecordSink, RecordSource};
use crate::record::MAX_DATUM_LEN;

/// The runner script, written into the task's folder before each run.
pub const RUNNER_PY: &str = include_str!("runner.py");

/// File name of the runner inside [`PythonExecutor::workdir`].
pub const RUNNER_FILE_NAME: &str = "ipdc_runner.py";

/// How much of the runner's stderr is kept (its end).
pub const STDERR_TAIL: usize = 64 << 10;

/// Bytes written to the runner's stdin at a time.
const FEED_CHUNK: usize = 256 << 10;

/// Records per block of reduce input: the runner works a block at a time,
/// and a small block stays in the CPU cache while it does.
const REDUCE_BLOCK_RECORDS: u32 = 2048;

/// Oldest Python the runner supports.
const MIN_VERSION: (u32, u32) = (3, 7);

/// How long [`detect_version`] waits for the interpreter.
const DETECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The smallest memory limit applied: a smaller [`Limits::memory_bytes`] is
/// raised to this. Python 3.11 needs about 24 MiB of address space just to
/// start and load the runner (below that it cannot even map its shared
/// libraries, and fails before the user's code runs); 64 MiB leaves room
/// for small user code. Big libraries (numpy, ...) need far more.
pub const MIN_MEMORY_BYTES: u64 = 64 << 20;

/// Exit status of the runner when the user's code raised `MemoryError`.
const EXIT_MEMORY: i32 = 5;

/// How often the watchdog looks at the cancel token.
const WATCH_POLL: Duration = Duration::from_millis(10);

/// Sandbox limits for one run of the runner. The default has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time from starting the interpreter; then the runner and
    /// everything it started are killed ([`ExecError::TimedOut`]).
    pub wall: Option<Duration>,
    /// Address space (`RLIMIT_AS`) of the runner and of each process it
    /// starts, at least [`MIN_MEMORY_BYTES`] ([`ExecError::OutOfMemory`]).
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
/// it, now and later; they return [`ExecError::Cancelled`] within
/// milliseconds.
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

/// Which user function a run executes, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `map()` (and `combine()`/`reduce()` as its combiner).
    Map,
    /// `reduce()`.
    Reduce,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Map => "map()",
            Stage::Reduce => "reduce()",
        })
    }
}

/// `d` for people: `5 s`, `1.5 s`, `200 ms`.
fn show_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// `n` bytes for people: `64 MiB`, `2 GiB`, `1.5 MiB`, `1000 bytes`.
fn show_bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if n >= GIB && n.is_multiple_of(GIB) {
        format!("{} GiB", n / GIB)
    } else if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else {
        format!("{n} bytes")
    }
}

/// The version of `python` (like `"3.11.7"`) if it runs and is at least
/// 3.7, else `None`. Gives up (and kills it) after 10 seconds.
pub fn detect_version(python: &Path) -> Option<String> {
    detect(python).map(|(_, version)| version)
}

/// The interpreter's real executable (`sys.executable`) and version, when
/// `python` runs and is recent enough. Running the real executable skips
/// wrappers such as pyenv's shims, which cost ~0.3 s per start.
pub fn detect(python: &Path) -> Option<(PathBuf, String)> {
    let mut child = Command::new(python)
        .args(["-S", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3]); print(sys.executable)"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < DETECT_TIMEOUT => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let mut out = String::new();
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    if !status.success() {
        return None;
    }
    let mut lines = out.lines();
    let version = lines.next().unwrap_or_default().trim().to_string();
    let executable = match lines.next().map(str::trim) {
        Some(exe) if !exe.is_empty() && Path::new(exe).is_file() => PathBuf::from(exe),
        _ => python.to_path_buf(),
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
        return None;
    };
    ((major, minor) >= MIN_VERSION).then_some((executable, version))
}

/// Why a Python task failed.
#[derive(Debug)]
pub enum ExecError {
    /// Starting the interpreter, reading the input or writing to the sink
    /// failed.
    Io(io::Error),
    /// The user's code failed: it could not be loaded, raised, or produced a
    /// key or value that cannot be stored. `summary` is one line (the
    /// runner's `IPDC-ERROR:` line without that prefix), `traceback` the
    /// stderr output before it (the Python traceback, and anything the user
    /// printed last).
    User { summary: String, traceback: String },
    /// The runner ended abnormally without a user error (killed, crashed,
    /// internal error, stopped reading its input).
    Runner { status: String, stderr_tail: String },
    /// The runner's output did not follow the protocol.
    Protocol(String),
    /// The run was killed (with everything it started) at the wall-clock
    /// limit [`Limits::wall`].
    TimedOut { stage: Stage, limit: Duration },
    /// The user's code exceeded the memory limit (the effective one, see
    /// [`Limits::effective_memory_bytes`]): `cause` is `MemoryError` (raised
    /// by Python, the runner's report and traceback are in `detail`) or the
    /// signal that killed the runner (`detail` has its last stderr output).
    OutOfMemory { stage: Stage, limit_bytes: u64, cause: String, detail: String },
    /// The run was stopped through its [`CancelToken`].
    Cancelled { stage: Stage },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Io(e) => write!(f, "{e}"),
            ExecError::User { summary, .. } => write!(f, "{summary}"),
            ExecError::Runner { status, stderr_tail } => {
                write!(f, "the Python runner failed ({status})")?;
                let tail = last_chars(stderr_tail.trim(), 2000);
                if !tail.is_empty() {
                    write!(f, "; its last output:\n{tail}")?;
                }
                Ok(())
            }
            ExecError::Protocol(m) => write!(f, "the Python runner broke the protocol: {m}"),
            ExecError::TimedOut { stage, limit } => write!(
                f,
                "{stage} killed: it ran longer than the task's wall-clock limit of {}",
                show_duration(*limit)
            ),
            ExecError::OutOfMemory { stage, limit_bytes, cause, .. } => write!(
                f,
                "{stage} killed: it exceeded the task's memory limit of {} ({cause})",
                show_bytes(*limit_bytes)
            ),
            ExecError::Cancelled { stage } => write!(f, "{stage} stopped: the task was cancelled"),
        }
    }
}

impl std::error::Error for ExecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExecError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ExecError {
    fn from(e: io::Error) -> Self {
        ExecError::Io(e)
    }
}

fn last_chars(s: &str, n: usize) -> &str {
    match s.char_indices().rev().nth(n) {
        Some((i, _)) => &s[i..],
        None => s,
    }
}

/// Runs user Python code for one task.
#[derive(Debug, Clone)]
pub struct PythonExecutor {
    /// The interpreter (e.g. `python3`, looked up in `PATH` if bare).
    pub python: PathBuf,
    /// The task's own temporary folder: the runner is written there and it
    /// is the subprocess's working directory.
    pub workdir: PathBuf,
    /// Wall-clock and memory limits of each run.
    pub limits: Limits,
    /// Stops the runs of this executor (and of its clones) when cancelled.
    pub cancel: CancelToken,
}

impl PythonExecutor {
    /// An executor without limits, with a fresh (not cancelled) token.
    pub fn new(python: impl Into<PathBuf>, workdir: impl Into<PathBuf>) -> Self {
        PythonExecutor {
            python: python.into(),
            workdir: workdir.into(),
            limits: Limits::default(),
            cancel: CancelToken::default(),
        }
    }

    /// This executor with `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// This executor stopped by `cancel`.
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Runs `map(line)` of `map_py` over the lines of `input` (the split's
    /// raw bytes), and with `combine_with` (a `Reduce.py`) its `combine`, or
    /// else its `reduce`, over the grouped map output. Records go to `sink`.
    pub fn run_map(
        &self,
        map_py: &Path,
        combine_with: Option<&Path>,
        mut input: impl Read + Send,
        sink: &mut dyn RecordSink,
    ) -> Result<ExecStats, ExecError> {
        let mut args: Vec<OsString> = vec!["map".into(), absolute(map_py)?.into()];
        if let Some(reduce_py) = combine_with {
            args.push("--combine".into());
            args.push(absolute(reduce_py)?.into());
        }
        let feed = move |buf: &mut Vec<u8>| -> io::Result<()> {
            buf.resize(FEED_CHUNK, 0);
            loop {
                match input.read(buf) {
                    Ok(n) => {
                        buf.truncate(n);
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        };
        self.run(Stage::Map, &args, feed, sink)
    }

    /// Runs `reduce(key, values)` of `reduce_py` over the records of
    /// `source` (sorted by key). Records go to `sink`.
    pub fn run_reduce(
        &self,
        reduce_py: &Path,
        source: &mut dyn RecordSource,
        sink: &mut dyn RecordSink,
    ) -> Result<ExecStats, ExecError> {
        let args: Vec<OsString> = vec!["reduce".into(), absolute(reduce_py)?.into()];
        let mut lens: Vec<u8> = Vec::new();
        let mut data: Vec<u8> = Vec::new();
        let feed = move |buf: &mut Vec<u8>| -> io::Result<()> {
            buf.clear();
            lens.clear();
            data.clear();
            let mut n = 0u32;
            while n < REDUCE_BLOCK_RECORDS && data.len() < FEED_CHUNK {
                match source.next_record()? {
                    Some((k, v)) => {
                        lens.extend_from_slice(&(k.len() as u32).to_le_bytes());
                        lens.extend_from_slice(&(v.len() as u32).to_le_bytes());
                        data.extend_from_slice(k);
                        data.extend_from_slice(v);
                        n += 1;
                    }
                    None => break,
                }
            }
            if n > 0 {
                buf.extend_from_slice(&n.to_le_bytes());
                buf.extend_from_slice(&lens);
                buf.extend_from_slice(&data);
            }
            Ok(())
        };
        self.run(Stage::Reduce, &args, feed, sink)
    }

    /// Starts the runner, feeds it (`feed` fills its buffer with the next
    /// bytes for stdin, leaving it empty at the end) and collects its output.
    fn run(
        &self,
        stage: Stage,
        args: &[OsString],
        mut feed: impl FnMut(&mut Vec<u8>) -> io::Result<()>,
        sink: &mut dyn RecordSink,
    ) -> Result<ExecStats, ExecError> {
        if self.cancel.is_cancelled() {
            return Err(ExecError::Cancelled { stage });
        }
        // Absolute: the runner starts in `workdir`, where a relative path
        // would be looked up again.
        let runner = std::path::absolute(self.workdir.join(RUNNER_FILE_NAME))?;
        std::fs::write(&runner, RUNNER_PY).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot write the Python runner to {}: {e}", runner.display()))
        })?;
        let memory = self.limits.effective_memory_bytes();
        let mut command = Command::new(&self.python);
        // -B: no .pyc files in the task folder. -s: no user site-packages,
        // whose .pth files run at every start: a job could otherwise leave
        // code there (in the agent user's home) that runs inside later jobs.
        command
            .arg("-B")
            .arg("-s")
            .arg(&runner)
            .args(args)
            .current_dir(&self.workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
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
        let started = Instant::now();
        let child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {}: {e}", self.python.display())))?;
        // From here on, leaving this function in any way (error, panic)
        // kills the group and reaps the runner.
        let mut running = Running::new(child);
        let pid = running.pid;
        let mut stdin = running.child.stdin.take();
        let mut stdout = running.child.stdout.take().expect("piped stdout");
        let stderr = running.child.stderr.take().expect("piped stderr");
        let deadline = self.limits.wall.map(|w| started + w);
        let cancel = &self.cancel;

        let (outcome, tail, stopped, killed_by_us) = std::thread::scope(|s| {
            // Kills the group if this closure unwinds, so that the reader
            // threads end and the scope can be left.
            let group = KillGroupOnDrop(pid);
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let watchdog = s.spawn(move || watch(pid, deadline, cancel, done_rx));
            let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>();
            s.spawn(move || {
                loop {
                    let mut chunk = vec![0u8; FEED_CHUNK];
                    match stdout.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => {
                            chunk.truncate(n);
                            if tx.send(Ok(chunk)).is_err() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            break;
                        }
                    }
                }
            });
            let tail = s.spawn(move || read_tail(stderr));

            let mut frames = Frames::default();
            let outcome = (|| -> Result<(bool, u64), ExecError> {
                let mut buf = Vec::with_capacity(FEED_CHUNK);
                let mut broken = false;
                while let Some(pipe) = stdin.as_mut() {
                    feed(&mut buf)?;
                    if buf.is_empty() {
                        break;
                    }
                    if let Err(e) = pipe.write_all(&buf) {
                        if e.kind() != io::ErrorKind::BrokenPipe {
                            return Err(e.into());
                        }
                        // The runner is gone or stopped reading: its exit
                        // status and stderr tell why.
                        broken = true;
                        break;
                    }
                    while let Ok(chunk) = rx.try_recv() {
                        frames.push(&chunk?, sink)?;
                    }
                }
                // End of input: let the runner finish, then take the rest.
                drop(stdin.take());
                for chunk in rx.iter() {
                    frames.push(&chunk?, sink)?;
                }
                frames.finish()?;
                Ok((broken, frames.records))
            })();
            let mut killed_by_us = false;
            if outcome.is_err() {
                // Stop a runner we no longer listen to (it may be blocked
                // writing to us); this also ends the reader threads. Our
                // error, not a limit, is then the story: stop the watchdog.
                killed_by_us = !has_exited(pid);
                kill_group(pid);
                drop(done_tx);
            } else {
                // The runner closed its stdout; the watchdog keeps watching
                // until it has exited (not reaped: its group id stays ours).
                wait_exited(pid);
                drop(done_tx);
            }
            drop(stdin);
            let stopped = watchdog.join().unwrap_or(None);
            // Whatever the user's code started and left behind (it may hold
            // stderr open) goes now.
            drop(group);
            let tail = tail.join().unwrap_or_default();
            (outcome, tail, stopped, killed_by_us)
        });
        let status = running.wait()?;
        let tail = String::from_utf8_lossy(&tail).into_owned();
        if let (Ok(_), true) = (&outcome, status.success()) {
            // Done, even if a limit was reached while it was exiting.
        } else if let Some(stop) = stopped {
            return Err(match stop {
                Stop::Cancelled => ExecError::Cancelled { stage },
                Stop::Deadline => ExecError::TimedOut { stage, limit: self.limits.wall.unwrap_or_default() },
            });
        } else if let Some(limit_bytes) = memory
            && let Some(e) = memory_error(stage, limit_bytes, status, killed_by_us, &tail)
        {
            return Err(e);
        }
        match outcome {
            Err(e) => {
                // An error of the runner itself explains more than the broken
                // stream it left behind; but if we killed it, ours is the story.
                if let Some(user) = user_error(status, &tail) {
                    return Err(user);
                }
                Err(e)
            }
            Ok((broken, records)) => {
                if !status.success() {
                    return Err(user_error(status, &tail).unwrap_or_else(|| runner_error(status, &tail)));
                }
                if broken {
                    return Err(ExecError::Runner {
                        status: "exited with status 0 without reading all of its input".into(),
                        stderr_tail: tail,
                    });
                }
                let stats = parse_stats(&tail)?;
                if stats.output_records != records {
                    return Err(ExecError::Protocol(format!(
                        "it reported {} output records but wrote {records}",
                        stats.output_records
                    )));
                }
                Ok(stats)
            }
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
enum Stop {
    Deadline,
    Cancelled,
}

/// Kills the group `pgid` at `deadline` or when `cancel` is cancelled,
/// unless `done` (dropped by the run) says first that it is over.
fn watch(
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
fn kill_group(pgid: u32) {
    // SAFETY: kill() has no memory-safety preconditions.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), libc::SIGKILL);
    }
}

/// Kills the group when dropped.
struct KillGroupOnDrop(u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// Whether our child `pid` has exited (without reaping it).
fn has_exited(pid: u32) -> bool {
    waitid(pid, libc::WNOHANG).unwrap_or(true)
}

/// Waits until our child `pid` has exited, without reaping it.
fn wait_exited(pid: u32) {
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
struct Running {
    child: Child,
    pid: u32,
    reaped: bool,
}

impl Running {
    fn new(child: Child) -> Self {
        let pid = child.id();
        Running { child, pid, reaped: false }
    }

    fn wait(&mut self) -> io::Result<ExitStatus> {
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

/// The memory-limit error for a runner that ended with `status`, if that
/// is how it ended: it reported `MemoryError` (exit status 5), or it was
/// killed by SIGKILL (not ours) or SIGSEGV.
fn memory_error(
    stage: Stage,
    limit_bytes: u64,
    status: ExitStatus,
    killed_by_us: bool,
    tail: &str,
) -> Option<ExecError> {
    let cause = if status.code() == Some(EXIT_MEMORY) {
        "MemoryError".to_string()
    } else {
        match status.signal() {
            Some(libc::SIGKILL) if !killed_by_us => "killed by SIGKILL".to_string(),
            Some(libc::SIGSEGV) => "killed by SIGSEGV".to_string(),
            _ => return None,
        }
    };
    let detail = match last_line_with(tail, "IPDC-ERROR: ") {
        Some((summary, before)) if status.code() == Some(EXIT_MEMORY) => {
            format!("{}\n{summary}", before.trim())
        }
        _ => last_chars(tail.trim(), 4000).to_string(),
    };
    Some(ExecError::OutOfMemory { stage, limit_bytes, cause, detail })
}

/// `path` made absolute (the runner runs in another folder).
fn absolute(path: &Path) -> io::Result<PathBuf> {
    std::path::absolute(path)
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

/// Reads `r` to its end, keeping the last [`STDERR_TAIL`] bytes.
fn read_tail(mut r: impl Read) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
    tail
}

/// The last line of `tail` starting with `prefix`, without it, and the text
/// before that line.
fn last_line_with<'a>(tail: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let start =
        if tail.starts_with(prefix) { Some(0) } else { tail.rfind(&format!("\n{prefix}")).map(|i| i + 1) }?;
    let line = &tail[start + prefix.len()..];
    let line = line.split('\n').next().unwrap_or("");
    Some((line.trim_end(), &tail[..start]))
}

/// The user error the runner reported, if it exited with status 2, 3 or 5
/// (`MemoryError` without a memory limit of ours) and an `IPDC-ERROR:` line.
fn user_error(status: ExitStatus, tail: &str) -> Option<ExecError> {
    if !matches!(status.code(), Some(2 | 3 | EXIT_MEMORY)) {
        return None;
    }
    let (summary, before) = last_line_with(tail, "IPDC-ERROR: ")?;
    Some(ExecError::User { summary: summary.to_string(), traceback: before.trim().to_string() })
}

fn runner_error(status: ExitStatus, tail: &str) -> ExecError {
    let status = match last_line_with(tail, "IPDC-ERROR: ") {
        Some((summary, _)) => format!("{status}: {summary}"),
        None => status.to_string(),
    };
    ExecError::Runner { status, stderr_tail: tail.to_string() }
}

/// The counters of the runner's final `IPDC-STATS` line.
fn parse_stats(tail: &str) -> Result<ExecStats, ExecError> {
    let (json, _) = last_line_with(tail, "IPDC-STATS ")
        .ok_or_else(|| ExecError::Protocol(
            "it exited with success before it finished (no IPDC-STATS line): does the job's code call os._exit()?".into(),
        ))?;
    serde_json::from_str(json).map_err(|e| ExecError::Protocol(format!("bad IPDC-STATS line {json:?}: {e}")))
}

/// Cuts the runner's stdout (arriving in arbitrary chunks) into records.
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
    records: u64,
}

impl Frames {
    fn push(&mut self, chunk: &[u8], sink: &mut dyn RecordSink) -> Result<(), ExecError> {
        self.buf.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            let Some(klen) = datum_len(rest)? else { break };
            let Some(vlen) = datum_len(&rest[(4 + klen).min(rest.len())..])? else {
                break;
            };
            if rest.len() < 4 + klen {
                break;
            }
            let end = 8 + klen + vlen;
            if rest.len() < end {
                break;
            }
            sink.emit(&rest[4..4 + klen], &rest[8 + klen..end])?;
            self.records += 1;
            pos += end;
        }
        self.buf.drain(..pos);
        Ok(())
    }

    fn finish(&self) -> Result<(), ExecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ExecError::Protocol(format!(
                "its output ends inside a record ({} bytes left)",
                self.buf.len()
            )))
        }
    }
}

/// The length prefix at the start of `b`, if all 4 bytes are there.
fn datum_len(b: &[u8]) -> Result<Option<usize>, ExecError> {
    let Some(len) = b.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
    if len > MAX_DATUM_LEN {
        // The user's doing (one huge key or value), not the runner's.
        return Err(ExecError::User {
            summary: format!(
                "a key or value of {len} bytes is larger than the limit of {} MiB for one key or value; \
                 yield smaller ones (e.g. split it over several records)",
                MAX_DATUM_LEN >> 20
            ),
            traceback: String::new(),
        });
    }
    if len == 0 {
        return Err(ExecError::Protocol("its output has an empty datum".into()));
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RecordReader, write_record};
    use std::collections::BTreeMap;

    struct Job {
        dir: tempfile::TempDir,
        exec: PythonExecutor,
    }

    /// A temp folder with the given user files and an executor for it.
    fn job(files: &[(&str, &str)]) -> Job {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let work = dir.path().join("task");
        std::fs::create_dir(&work).unwrap();
        Job { exec: PythonExecutor::new("python3", work), dir }
    }

    impl Job {
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
    }

    const WC_MAP: &str = "def map(line):\n    for w in line.split():\n        yield w, 1\n";
    const WC_REDUCE: &str = "def reduce(key, values):\n    yield key, sum(values)\n";
    const WC_REDUCE_COMBINE: &str = "def reduce(key, values):\n    yield key, sum(values)\n\n\
        def combine(key, values):\n    yield key, sum(values)\n";

    fn tricky_text() -> Vec<u8> {
        let mut t = Vec::new();
        for i in 0..300 {
            t.extend_from_slice(format!("line {i} the quick brown fox\r\n").as_bytes());
            t.extend_from_slice(b"nbsp\xc2\xa0word nel\xc2\x85w ideo\xe3\x80\x80x zwsp\xe2\x80\x8bnot\n");
            t.extend_from_slice(
                b"bad \xff\xfe utf8 \xe2\x80 trunc \xc0\xa0 over \xed\xa0\x80 sur \x1cfs\x1fus\n",
            );
            t.extend_from_slice(
                b"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \x00nul\x0bvt\x0cff\rcr\n",
            );
        }
        t.extend_from_slice(b"last line without newline \xe2\x80\xa8 end");
        t
    }

    fn counts(records: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<Vec<u8>, u64> {
        let mut m = BTreeMap::new();
        for (k, v) in records {
            assert_eq!(k[0], b's');
            assert_eq!(v[0], b'j');
            let n: u64 = std::str::from_utf8(&v[1..]).unwrap().parse().unwrap();
            *m.entry(k.clone()).or_insert(0) += n;
        }
        m
    }

    fn user_error(e: ExecError) -> (String, String) {
        match e {
            ExecError::User { summary, traceback } => (summary, traceback),
            other => panic!("expected a user error, got {other:?}"),
        }
    }

    #[test]
    fn detects_the_python_version() {
        let v = detect_version(Path::new("python3")).expect("python3 >= 3.7");
        assert!(v.starts_with("3."), "{v}");
        assert_eq!(detect_version(Path::new("/nonexistent/python3")), None);
    }

    #[test]
    fn wordcount_map_matches_native_with_and_without_combine() {
        let j = job(&[("Map.py", WC_MAP), ("Reduce.py", WC_REDUCE), ("Combine.py", WC_REDUCE_COMBINE)]);
        let text = tricky_text();
        let mut native = Vec::new();
        let nstats = crate::wordcount::map(&text[..], &mut native, 1 << 30).unwrap();
        let want = counts(&native);

        let mut plain = Vec::new();
        let stats = j.exec.run_map(&j.path("Map.py"), None, &text[..], &mut plain).unwrap();
        assert_eq!(counts(&plain), want);
        assert_eq!(stats.input_records, nstats.input_records);
        assert_eq!(stats.map_output_records, nstats.map_output_records);
        assert_eq!(stats.combine_output_records, 0);
        assert_eq!(stats.output_records, plain.len() as u64);
        assert_eq!(plain.len() as u64, nstats.map_output_records);

        for reduce in ["Reduce.py", "Combine.py"] {
            let mut combined = Vec::new();
            let stats =
                j.exec.run_map(&j.path("Map.py"), Some(&j.path(reduce)), &text[..], &mut combined).unwrap();
            assert_eq!(counts(&combined), want, "{reduce}");
            assert_eq!(combined.len(), want.len());
            assert_eq!(stats.input_records, nstats.input_records);
            assert_eq!(stats.map_output_records, nstats.map_output_records);
            assert_eq!(stats.combine_output_records, want.len() as u64);
            assert_eq!(stats.output_records, want.len() as u64);
        }
    }

    struct Sorted(Vec<(Vec<u8>, Vec<u8>)>, usize);
    impl RecordSource for Sorted {
        fn next_record(&mut self) -> io::Result<Option<(&[u8], &[u8])>> {
            self.1 += 1;
            Ok(self.0.get(self.1 - 1).map(|(k, v)| (&k[..], &v[..])))
        }
    }

    #[test]
    fn reduce_round_trip_matches_native_reduce() {
        let j = job(&[("Map.py", WC_MAP), ("Reduce.py", WC_REDUCE)]);
        let text = tricky_text();
        let mut mapped = Vec::new();
        for _ in 0..3 {
            j.exec.run_map(&j.path("Map.py"), Some(&j.path("Reduce.py")), &text[..], &mut mapped).unwrap();
        }
        mapped.sort();
        let n = mapped.len() as u64;
        let mut py = Vec::new();
        let stats = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(mapped.clone(), 0), &mut py).unwrap();
        let mut native = Vec::new();
        let nstats = crate::wordcount::reduce(&mut Sorted(mapped, 0), &mut native).unwrap();
        assert_eq!(py, native);
        assert_eq!(stats, nstats);
        assert_eq!(stats.input_records, n);
    }

    #[test]
    fn json_keys_and_values_survive_the_round_trip() {
        let map = r#"
def map(line):
    n, word = line.split()
    yield int(n), (word, {"w": word, "f": 1.5, "b": True, "z": None})
    yield [int(n), word], [1, 2]
    yield None, 1
    yield word, 2.5
"#;
        let reduce = r#"
def reduce(key, values):
    values = list(values)
    yield key, [type(key).__name__, len(values), values[0]]
"#;
        let j = job(&[("Map.py", map), ("Reduce.py", reduce)]);
        let mut mapped = Vec::new();
        j.exec.run_map(&j.path("Map.py"), None, &b"1 a\n2 caf\xc3\xa9\n1 \xff\n"[..], &mut mapped).unwrap();
        assert_eq!(mapped[0], (b"j1".to_vec(), br#"j["a",{"w":"a","f":1.5,"b":true,"z":null}]"#.to_vec()));
        assert_eq!(mapped[1], (br#"j[1,"a"]"#.to_vec(), b"j[1,2]".to_vec()));
        assert_eq!(mapped[2], (b"jnull".to_vec(), b"j1".to_vec()));
        assert_eq!(mapped[3], (b"sa".to_vec(), b"j2.5".to_vec()));
        assert_eq!(mapped[4].0, b"j2".to_vec());
        assert_eq!(mapped[4].1, "j[\"café\",{\"w\":\"café\",\"f\":1.5,\"b\":true,\"z\":null}]".as_bytes());
        // Undecodable bytes inside JSON text stay raw bytes.
        assert_eq!(mapped[8].1, b"j[\"\xff\",{\"w\":\"\xff\",\"f\":1.5,\"b\":true,\"z\":null}]".to_vec());
        mapped.sort();
        let mut out = Vec::new();
        let stats = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(mapped, 0), &mut out).unwrap();
        assert_eq!(stats.input_records, 12);
        assert_eq!(stats.reduce_input_groups, 9);
        let got: BTreeMap<Vec<u8>, Vec<u8>> = out.into_iter().collect();
        assert_eq!(got[&b"j1".to_vec()], br#"j["int",2,["a",{"w":"a","f":1.5,"b":true,"z":null}]]"#.to_vec());
        assert_eq!(got[&br#"j[1,"a"]"#.to_vec()], br#"j["list",1,[1,2]]"#.to_vec());
        assert_eq!(got[&b"jnull".to_vec()], br#"j["NoneType",3,1]"#.to_vec());
        assert_eq!(got[&b"s\xff".to_vec()], br#"j["str",1,2.5]"#.to_vec());
    }

    #[test]
    fn combine_sees_values_as_the_reducer_would() {
        let map = "def map(line):\n    yield (1, 'x'), (line, 2)\n";
        let reduce = "def reduce(key, values):\n    yield key, [[type(key).__name__] + [type(v).__name__ for v in values]]\n";
        let j = job(&[("Map.py", map), ("Reduce.py", reduce)]);
        let mut out = Vec::new();
        j.exec.run_map(&j.path("Map.py"), Some(&j.path("Reduce.py")), &b"a\nb\n"[..], &mut out).unwrap();
        assert_eq!(out, vec![(br#"j[1,"x"]"#.to_vec(), br#"j[["list","list","list"]]"#.to_vec())]);
    }

    #[test]
    fn reduce_groups_span_input_blocks() {
        // Groups of 1 to 3 records, and one of 5,000 that spans whole blocks
        // of the reduce input (REDUCE_BLOCK_RECORDS records each).
        let mut recs = Vec::new();
        let mut want = Vec::new();
        for i in 0..3000u32 {
            let n = if i == 1500 { 5000 } else { 1 + i % 3 };
            let (mut total, mut text) = (0f64, String::new());
            for j in 0..n {
                let v: Vec<u8> = match (i + j) % 3 {
                    0 => b"j1".to_vec(),
                    1 => b"j2.5".to_vec(),
                    _ => b"sx".to_vec(),
                };
                match v[1] {
                    b'1' => total += 1.0,
                    b'2' => total += 2.5,
                    _ => text.push('x'),
                }
                recs.push((format!("sk{i:05}").into_bytes(), v));
            }
            let first = recs[recs.len() - n as usize].1.clone();
            want.push((i, n, total, text.len(), first));
        }
        let reduce = "def reduce(key, values):\n    vs = list(values)\n    yield key, [len(vs), float(sum(v for v in vs if not isinstance(v, str))), len(''.join(v for v in vs if isinstance(v, str)))]\n";
        let first = "def reduce(key, values):\n    yield key, next(values)\n";
        let j = job(&[("Reduce.py", reduce), ("First.py", first)]);
        let mut out = Vec::new();
        let stats = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(recs.clone(), 0), &mut out).unwrap();
        assert_eq!(
            (stats.input_records, stats.reduce_input_groups, stats.output_records),
            (recs.len() as u64, 3000, 3000)
        );
        for ((k, v), (i, n, total, strs, _)) in out.iter().zip(&want) {
            assert_eq!(k, format!("sk{i:05}").as_bytes());
            let got = String::from_utf8(v.clone()).unwrap();
            assert_eq!(got, format!("j[{n},{total:?},{strs}]"), "key {i}");
        }
        let mut out = Vec::new();
        j.exec.run_reduce(&j.path("First.py"), &mut Sorted(recs, 0), &mut out).unwrap();
        assert_eq!(out.len(), 3000);
        for ((_, v), (_, _, _, _, first)) in out.iter().zip(&want) {
            assert_eq!(v, first);
        }
    }

    #[test]
    fn a_str_is_not_taken_for_a_pair() {
        // `yield word` for `yield word, 1`: "ab" would unpack as key "a",
        // value "b"; refused, in map() and in reduce() alike.
        let j = job(&[
            ("Map.py", "def map(line):\n    for w in line.split():\n        yield w\n"),
            ("Reduce.py", "def reduce(k, vs):\n    yield k\n"),
        ]);
        let e = j.exec.run_map(&j.path("Map.py"), None, &b"ab\n"[..], &mut Vec::new()).unwrap_err();
        let ExecError::User { summary, .. } = &e else { panic!("{e:?}") };
        assert!(summary.contains("a str, not a (key, value) pair: yield key, value"), "{summary}");
        assert!(summary.contains("on line 1 of this split"), "{summary}");
        let recs = vec![(b"sab".to_vec(), b"j1".to_vec())];
        let e = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(recs, 0), &mut Vec::new()).unwrap_err();
        let ExecError::User { summary, .. } = &e else { panic!("{e:?}") };
        assert!(summary.contains("a str, not a (key, value) pair"), "{summary}");
    }

    #[test]
    fn user_code_reading_stdin_gets_nothing_and_every_line_is_mapped() {
        // The split comes on the runner's stdin: a map() that reads stdin
        // must not eat lines (it did, and the job still "succeeded").
        let map = "import sys\ndef map(line):\n    assert sys.stdin.read() == ''\n    yield line, 1\n";
        let j = job(&[("Map.py", map)]);
        let input: Vec<u8> = (0..20_000).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
        let mut out = Vec::new();
        let stats = j.exec.run_map(&j.path("Map.py"), None, &input[..], &mut out).unwrap();
        assert_eq!((stats.input_records, out.len()), (20_000, 20_000));
        assert_eq!(out[19_999].0, b"sline 19999");
    }

    #[test]
    fn a_set_or_dict_of_two_is_not_taken_for_a_pair_and_the_runner_is_not_in_the_traceback() {
        for shape in ["{w, 1}", "{'w': w, 'n': 1}"] {
            let map = format!("def map(line):\n    for w in line.split():\n        yield {shape}\n");
            let j = job(&[("Map.py", map.as_str())]);
            let e = j.exec.run_map(&j.path("Map.py"), None, &b"ab\n"[..], &mut Vec::new()).unwrap_err();
            let ExecError::User { summary, traceback } = &e else { panic!("{e:?}") };
            assert!(summary.contains("not a (key, value) pair"), "{summary}");
            assert!(!traceback.contains("ipdc_runner") && !traceback.contains("runner.py"), "{traceback}");
        }
    }

    #[test]
    fn sys_exit_in_user_code_is_its_error_and_os_exit_is_named() {
        let j = job(&[
            ("Map.py", "import sys\ndef map(line):\n    sys.exit(0)\n    yield line, 1\n"),
            ("Quit.py", "import os\ndef map(line):\n    os._exit(0)\n"),
        ]);
        let e = j.exec.run_map(&j.path("Map.py"), None, &b"ab\n"[..], &mut Vec::new()).unwrap_err();
        let ExecError::User { summary, .. } = &e else { panic!("{e:?}") };
        assert!(summary.contains("map() raised SystemExit: 0 on line 1 of this split"), "{summary}");
        let e = j.exec.run_map(&j.path("Quit.py"), None, &b"ab\n"[..], &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("os._exit()"), "{e}");
    }

    #[test]
    fn a_key_over_the_size_limit_is_the_users_error() {
        let map = "def map(line):\n    yield 'k' * (17 << 20), 1\n";
        let j = job(&[("Map.py", map)]);
        let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err();
        let ExecError::User { summary, .. } = &e else { panic!("{e:?}") };
        assert!(
            summary.starts_with("a key or value of 17825793 bytes is larger than the limit of 16 MiB"),
            "{summary}"
        );
    }

    #[test]
    fn reduce_groups_even_when_values_are_not_read() {
        let reduce = "def reduce(key, values):\n    yield 'k:' + key, 1\n";
        let j = job(&[("Reduce.py", reduce)]);
        let recs: Vec<_> =
            [b"sa", b"sa", b"sa", b"sb", b"sc", b"sc"].iter().map(|k| (k.to_vec(), b"j1".to_vec())).collect();
        let mut out = Vec::new();
        let stats = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(recs, 0), &mut out).unwrap();
        let keys: Vec<_> = out.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![b"sk:a".to_vec(), b"sk:b".to_vec(), b"sk:c".to_vec()]);
        assert_eq!((stats.input_records, stats.reduce_input_groups, stats.output_records), (6, 3, 3));
    }

    #[test]
    fn a_map_that_raises_names_the_line_and_the_user_code() {
        let map = "def map(line):\n    if line == 'boom':\n        raise ValueError('bad value')\n    yield line, 1\n";
        let j = job(&[("Map.py", map)]);
        let mut text = b"a\nb\r\n".to_vec();
        text.extend(b"x\n".repeat(14));
        text.extend(b"boom\r\nafter\n");
        let e = j.exec.run_map(&j.path("Map.py"), None, &text[..], &mut Vec::new()).unwrap_err();
        let shown = e.to_string();
        let (summary, traceback) = user_error(e);
        assert_eq!(summary, "map() raised ValueError: bad value on line 17 of this split: 'boom'");
        assert_eq!(shown, summary);
        assert!(traceback.contains("Map.py\", line 3, in map"), "{traceback}");
        assert!(traceback.contains("ValueError: bad value"), "{traceback}");
        assert!(!traceback.contains(RUNNER_FILE_NAME), "{traceback}");
    }

    #[test]
    fn a_reduce_that_raises_names_the_key() {
        let reduce = "def reduce(key, values):\n    return {}[key]\n";
        let j = job(&[("Reduce.py", reduce)]);
        let recs = vec![(b"sthe".to_vec(), b"j1".to_vec())];
        let e = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(recs, 0), &mut Vec::new()).unwrap_err();
        let (summary, traceback) = user_error(e);
        assert_eq!(summary, "reduce() raised KeyError: 'the' for key 'the'");
        assert!(traceback.contains("File \"Reduce.py\", line 2, in reduce"), "{traceback}");
    }

    #[test]
    fn load_errors_are_clear() {
        let j = job(&[
            ("Map.py", "def map(line):\n    yield line,, 1\n"),
            ("NoMap.py", "def mapper(line):\n    yield line, 1\n"),
            ("BadImport.py", "import os\nimport no_such_module_ipdc\n"),
            ("Reduce.py", WC_REDUCE),
        ]);
        let run =
            |m: &str| user_error(j.exec.run_map(&j.path(m), None, &b"a\n"[..], &mut Vec::new()).unwrap_err());
        let (summary, traceback) = run("Map.py");
        assert!(summary.starts_with("Map.py has a syntax error on line 2 of Map.py"), "{summary}");
        assert!(summary.contains("Fix Map.py"), "{summary}");
        assert!(traceback.contains("SyntaxError"), "{traceback}");
        // Named as the job names it, not by the agent's task folder.
        assert!(traceback.contains("File \"Map.py\", line 2"), "{traceback}");
        let (summary, _) = run("NoMap.py");
        assert!(summary.contains("NoMap.py defines no function map()"), "{summary}");
        assert!(summary.contains("def map(line):"), "{summary}");
        let (summary, _) = run("BadImport.py");
        assert!(summary.contains("BadImport.py failed while being imported (line 2)"), "{summary}");
        assert!(summary.contains("no_such_module_ipdc"), "{summary}");
        let e =
            j.exec.run_reduce(&j.path("Map.py"), &mut Sorted(Vec::new(), 0), &mut Vec::new()).unwrap_err();
        assert!(user_error(e).0.contains("syntax error"));
        let e =
            j.exec.run_reduce(&j.path("NoMap.py"), &mut Sorted(Vec::new(), 0), &mut Vec::new()).unwrap_err();
        assert!(user_error(e).0.contains("defines no function reduce()"));
    }

    #[test]
    fn values_json_cannot_encode_are_clear_errors() {
        let j = job(&[
            ("SetKey.py", "def map(line):\n    yield {line}, 1\n"),
            ("NanValue.py", "def map(line):\n    yield line, float('nan')\n"),
            ("NotPair.py", "def map(line):\n    yield line\n"),
            ("Reduce.py", WC_REDUCE),
        ]);
        let run = |m: &str, c: Option<&Path>| {
            user_error(j.exec.run_map(&j.path(m), c, &b"first\nsecond\n"[..], &mut Vec::new()).unwrap_err()).0
        };
        for combine in [None, Some(j.path("Reduce.py"))] {
            let s = run("SetKey.py", combine.as_deref());
            assert!(s.contains("a key of type set"), "{s}");
            assert!(s.contains("on line 1 of this split: 'first'"), "{s}");
            let s = run("NanValue.py", combine.as_deref());
            assert!(s.contains("a value of type float"), "{s}");
            let s = run("NotPair.py", combine.as_deref());
            assert!(s.contains("must yield (key, value) pairs"), "{s}");
        }
    }

    #[test]
    fn user_prints_do_not_corrupt_records() {
        let map = "import sys\ndef map(line):\n    print('hello from map', line)\n    sys.stdout.write('more')\n    yield line, 1\n";
        let j = job(&[("Map.py", map)]);
        let mut out = Vec::new();
        let stats = j.exec.run_map(&j.path("Map.py"), None, &b"a\nb\n"[..], &mut out).unwrap();
        assert_eq!(out, vec![(b"sa".to_vec(), b"j1".to_vec()), (b"sb".to_vec(), b"j1".to_vec())]);
        assert_eq!(stats.output_records, 2);
    }

    /// An endless-ish input: 1 GiB of lines, generated on the fly.
    struct Lots(u64);
    impl Read for Lots {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = (buf.len() as u64).min(self.0) as usize;
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = if i % 16 == 15 { b'\n' } else { b'w' };
            }
            self.0 -= n as u64;
            Ok(n)
        }
    }

    #[test]
    fn a_runner_that_stops_early_does_not_hang() {
        let j = job(&[
            ("Raise.py", "def map(line):\n    raise RuntimeError('no')\n"),
            ("Exit0.py", "import os\nos._exit(0)\n"),
            ("Exit7.py", "import os\nos._exit(7)\n"),
        ]);
        let start = Instant::now();
        let e = j.exec.run_map(&j.path("Raise.py"), None, Lots(1 << 30), &mut Vec::new()).unwrap_err();
        assert!(user_error(e).0.contains("on line 1 of this split"));
        let e = j.exec.run_map(&j.path("Exit0.py"), None, Lots(1 << 30), &mut Vec::new()).unwrap_err();
        assert!(matches!(e, ExecError::Runner { .. } | ExecError::Protocol(_)), "{e:?}");
        let e = j.exec.run_map(&j.path("Exit7.py"), None, Lots(1 << 30), &mut Vec::new()).unwrap_err();
        assert!(matches!(&e, ExecError::Runner { status, .. } if status.contains('7')), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(60));
    }

    struct FailingSink(u32);
    impl RecordSink for FailingSink {
        fn emit(&mut self, _: &[u8], _: &[u8]) -> io::Result<()> {
            self.0 += 1;
            if self.0 > 1000 { Err(io::Error::other("disk full")) } else { Ok(()) }
        }
    }

    #[test]
    fn a_failing_sink_stops_the_runner() {
        let j = job(&[("Map.py", WC_MAP)]);
        let e = j.exec.run_map(&j.path("Map.py"), None, Lots(1 << 30), &mut FailingSink(0)).unwrap_err();
        assert!(matches!(&e, ExecError::Io(io) if io.to_string() == "disk full"), "{e:?}");
    }

    #[test]
    fn a_missing_interpreter_is_an_io_error() {
        let mut j = job(&[("Map.py", WC_MAP)]);
        j.exec.python = "/nonexistent/python3".into();
        let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err();
        assert!(matches!(e, ExecError::Io(_)), "{e:?}");
    }

    #[test]
    fn frames_are_cut_at_any_chunk_boundary() {
        let mut framed = Vec::new();
        for i in 0..50 {
            write_record(&mut framed, format!("skey{i}").as_bytes(), b"j[1,2,3]").unwrap();
        }
        let want: Vec<_> = {
            let mut r = RecordReader::new(&framed[..]);
            let mut v = Vec::new();
            while let Some((k, val)) = r.next_record().unwrap() {
                v.push((k.to_vec(), val.to_vec()));
            }
            v
        };
        for step in [1, 3, 7, 100, framed.len()] {
            let mut f = Frames::default();
            let mut out = Vec::new();
            for chunk in framed.chunks(step) {
                f.push(chunk, &mut out).unwrap();
            }
            f.finish().unwrap();
            assert_eq!(out, want);
        }
        let mut f = Frames::default();
        f.push(&framed[..framed.len() - 1], &mut Vec::new()).unwrap();
        assert!(matches!(f.finish(), Err(ExecError::Protocol(_))));
    }

    // ------------------------------------------------------------ limits

    /// Whether process `pid` exists and is not a zombie.
    fn alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
                !matches!(state, None | Some("Z" | "X"))
            }
            Err(_) => false,
        }
    }

    /// The live (not zombie) processes of the group `pgid`.
    fn group_members(pgid: i32) -> Vec<i32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let Some((_, rest)) = stat.rsplit_once(')') else { continue };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.get(2) == Some(&pgid.to_string().as_str()) && !matches!(fields[0], "Z" | "X") {
                pids.push(pid);
            }
        }
        pids
    }

    /// Asserts that none of `pids` and no process of the group `pgid` is
    /// alive (allowing a moment for SIGKILL to land).
    fn assert_all_gone(pgid: i32, pids: &[i32]) {
        let start = Instant::now();
        loop {
            let left: Vec<i32> =
                pids.iter().copied().filter(|&p| alive(p)).chain(group_members(pgid)).collect();
            if left.is_empty() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "processes left behind: {left:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pids the user code wrote to `pids` in the task folder: its own
    /// (= its process group), then those of its subprocesses.
    fn user_pids(j: &Job) -> Vec<i32> {
        let text =
            std::fs::read_to_string(j.exec.workdir.join("pids")).expect("the user code wrote its pids");
        text.split_whitespace().map(|p| p.parse().unwrap()).collect()
    }

    /// Writes the runner's pid, its group and `extra` pids to `pids`.
    const WRITE_PIDS: &str = "import os, subprocess\n\
        def write_pids(*extra):\n    \
            assert os.getpgid(0) == os.getpid()\n    \
            with open('pids', 'w') as f:\n        \
                f.write(' '.join(str(p) for p in (os.getpid(),) + extra))\n";

    fn limited(j: &mut Job, wall: Option<u64>, memory_mib: Option<u64>) {
        j.exec.limits =
            Limits { wall: wall.map(Duration::from_secs), memory_bytes: memory_mib.map(|m| m << 20) };
    }

    #[test]
    fn an_endless_map_times_out_and_its_group_is_gone() {
        let map = format!("{WRITE_PIDS}\ndef map(line):\n    write_pids()\n    while True:\n        pass\n");
        let mut j = job(&[("Map.py", &map)]);
        limited(&mut j, Some(2), None);
        let start = Instant::now();
        let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\nb\n"[..], &mut Vec::new()).unwrap_err();
        let took = start.elapsed();
        assert!(
            matches!(e, ExecError::TimedOut { stage: Stage::Map, limit } if limit == Duration::from_secs(2))
        );
        assert_eq!(e.to_string(), "map() killed: it ran longer than the task's wall-clock limit of 2 s");
        assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(3), "{took:?}");
        let pids = user_pids(&j);
        // SAFETY: kill with signal 0 only checks.
        let r = unsafe { libc::kill(-pids[0], 0) };
        assert_eq!((r, io::Error::last_os_error().raw_os_error()), (-1, Some(libc::ESRCH)));
        assert_all_gone(pids[0], &pids);
    }

    #[test]
    fn a_timeout_kills_the_users_subprocesses_too() {
        // The grandchild also holds the runner's stderr open (30 s: a run
        // that waits for it fails on time instead of hanging).
        let map = format!(
            "{WRITE_PIDS}\ndef map(line):\n    p = subprocess.Popen(['sleep', '30'])\n    \
             write_pids(p.pid)\n    while True:\n        pass\n"
        );
        let mut j = job(&[("Map.py", &map)]);
        limited(&mut j, Some(2), Some(1024));
        let start = Instant::now();
        let e = j.exec.run_map(&j.path("Map.py"), None, Lots(1 << 30), &mut Vec::new()).unwrap_err();
        assert!(matches!(e, ExecError::TimedOut { .. }), "{e:?}");
        // Killed at the limit, not left running (generous: machines here are shared).
        assert!(start.elapsed() < Duration::from_secs(15), "{:?}", start.elapsed());
        let pids = user_pids(&j);
        assert_eq!(pids.len(), 2);
        assert_all_gone(pids[0], &pids);
    }

    #[test]
    fn subprocesses_left_behind_by_a_successful_run_are_killed() {
        // No limits: the run must still end promptly (the first sleep holds
        // stderr open) and take both sleeps with it.
        let map = format!(
            "{WRITE_PIDS}\np = subprocess.Popen(['sleep', '30'])\n\
             q = subprocess.Popen(['sleep', '1000'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
             write_pids(p.pid, q.pid)\n\n\
             def map(line):\n    yield line, 1\n"
        );
        let j = job(&[("Map.py", &map)]);
        let start = Instant::now();
        let mut out = Vec::new();
        let stats = j.exec.run_map(&j.path("Map.py"), None, &b"a\nb\n"[..], &mut out).unwrap();
        assert_eq!(stats.output_records, 2);
        assert!(start.elapsed() < Duration::from_secs(10));
        let pids = user_pids(&j);
        assert_eq!(pids.len(), 3);
        assert_all_gone(pids[0], &pids);
    }

    #[test]
    fn a_failing_sink_kills_the_users_subprocesses() {
        let map = format!(
            "{WRITE_PIDS}\np = subprocess.Popen(['sleep', '30'])\nwrite_pids(p.pid)\n\n\
             def map(line):\n    yield line, 1\n"
        );
        let j = job(&[("Map.py", &map)]);
        let start = Instant::now();
        let e = j.exec.run_map(&j.path("Map.py"), None, Lots(1 << 30), &mut FailingSink(0)).unwrap_err();
        assert!(matches!(&e, ExecError::Io(io) if io.to_string() == "disk full"), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
        let pids = user_pids(&j);
        assert_all_gone(pids[0], &pids);
    }

    const HOG: &str = "hog = []\nwhile True:\n    hog.append(bytes(10 << 20))\n";

    #[test]
    fn a_map_that_allocates_without_bound_hits_the_memory_limit() {
        let map = format!("def map(line):\n    yield line, 1\n    {}", HOG.replace('\n', "\n    "));
        let mut j = job(&[("Map.py", &map), ("Reduce.py", WC_REDUCE)]);
        limited(&mut j, Some(60), Some(200));
        for combine in [None, Some(j.path("Reduce.py"))] {
            let start = Instant::now();
            let e = j.exec.run_map(&j.path("Map.py"), combine.as_deref(), &b"a\nb\n"[..], &mut Vec::new());
            let e = e.unwrap_err();
            assert_eq!(
                e.to_string(),
                "map() killed: it exceeded the task's memory limit of 200 MiB (MemoryError)"
            );
            let ExecError::OutOfMemory { stage: Stage::Map, limit_bytes, detail, .. } = e else {
                unreachable!()
            };
            assert_eq!(limit_bytes, 200 << 20);
            assert!(detail.contains("MemoryError: map() ran out of memory on line 1"), "{detail}");
            assert!(detail.contains("Map.py\", line 5, in map"), "{detail}");
            assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
        }
        // The same code without a limit would run the machine out of
        // memory; a MemoryError without our limit is the user's error.
        let j = job(&[("Map.py", "def map(line):\n    raise MemoryError('big')\n")]);
        let (summary, _) =
            user_error(j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err());
        assert_eq!(summary, "MemoryError: map() ran out of memory on line 1 of this split: 'a'");
    }

    #[test]
    fn a_crash_under_a_memory_limit_is_taken_as_the_memory_limit() {
        let map = "import os, signal\ndef map(line):\n    os.kill(os.getpid(), signal.SIGSEGV)\n";
        let mut j = job(&[("Map.py", map)]);
        let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err();
        assert!(matches!(e, ExecError::Runner { .. }), "{e:?}");
        limited(&mut j, None, Some(300));
        let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "map() killed: it exceeded the task's memory limit of 300 MiB (killed by SIGSEGV)"
        );
    }

    #[test]
    fn a_tiny_memory_limit_is_raised_to_the_floor() {
        // 1 MiB of address space would not even let Python start.
        let mut j = job(&[("Map.py", WC_MAP)]);
        limited(&mut j, None, None);
        j.exec.limits.memory_bytes = Some(1 << 20);
        assert_eq!(j.exec.limits.effective_memory_bytes(), Some(MIN_MEMORY_BYTES));
        let mut out = Vec::new();
        j.exec.run_map(&j.path("Map.py"), None, &b"a b\n"[..], &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn cancel_stops_a_long_map_promptly() {
        let map = format!("{WRITE_PIDS}\ndef map(line):\n    write_pids()\n    while True:\n        pass\n");
        let mut j = job(&[("Map.py", &map)]);
        limited(&mut j, Some(600), None);
        let token = j.exec.cancel.clone();
        let start = Instant::now();
        let pids_file = j.exec.workdir.join("pids");
        let canceller = std::thread::spawn(move || {
            // Cancel once the user code runs (a loaded machine starts Python slowly).
            while !pids_file.exists() && start.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(100));
            token.cancel();
            Instant::now()
        });
        let e = j.exec.run_map(&j.path("Map.py"), None, Lots(1 << 30), &mut Vec::new()).unwrap_err();
        let returned = Instant::now();
        let cancelled_at = canceller.join().unwrap();
        assert!(matches!(e, ExecError::Cancelled { stage: Stage::Map }), "{e:?}");
        assert_eq!(e.to_string(), "map() stopped: the task was cancelled");
        assert!(returned >= cancelled_at && returned - cancelled_at < Duration::from_secs(5));
        let pids = user_pids(&j);
        assert_all_gone(pids[0], &pids);
        // A cancelled token stops later runs before they start.
        let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err();
        assert!(matches!(e, ExecError::Cancelled { .. }), "{e:?}");
    }

    #[test]
    fn wordcount_under_generous_limits_is_unchanged() {
        let mut j = job(&[("Map.py", WC_MAP), ("Reduce.py", WC_REDUCE)]);
        limited(&mut j, Some(120), Some(2048));
        let text = tricky_text();
        let mut native = Vec::new();
        crate::wordcount::map(&text[..], &mut native, 1 << 30).unwrap();
        let mut plain = Vec::new();
        j.exec.run_map(&j.path("Map.py"), None, &text[..], &mut plain).unwrap();
        assert_eq!(counts(&plain), counts(&native));
        let mut combined = Vec::new();
        j.exec.run_map(&j.path("Map.py"), Some(&j.path("Reduce.py")), &text[..], &mut combined).unwrap();
        assert_eq!(counts(&combined), counts(&native));
        combined.sort();
        let mut py = Vec::new();
        j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(combined.clone(), 0), &mut py).unwrap();
        let mut nat = Vec::new();
        crate::wordcount::reduce(&mut Sorted(combined, 0), &mut nat).unwrap();
        assert_eq!(py, nat);
    }

    /// Many sorted records for a reduce.
    fn many_records() -> Sorted {
        Sorted((0..100_000).map(|i| (format!("sk{i:06}").into_bytes(), b"j1".to_vec())).collect(), 0)
    }

    #[test]
    fn reduce_honours_the_limits() {
        let endless = format!(
            "{WRITE_PIDS}\ndef reduce(key, values):\n    p = subprocess.Popen(['sleep', '30'])\n    \
             write_pids(p.pid)\n    while True:\n        pass\n"
        );
        let hog = format!("def reduce(key, values):\n    {}", HOG.replace('\n', "\n    "));
        let mut j = job(&[("Endless.py", &endless), ("Hog.py", &hog)]);
        limited(&mut j, Some(2), Some(200));

        let start = Instant::now();
        let e = j.exec.run_reduce(&j.path("Endless.py"), &mut many_records(), &mut Vec::new()).unwrap_err();
        assert_eq!(e.to_string(), "reduce() killed: it ran longer than the task's wall-clock limit of 2 s");
        assert!(start.elapsed() < Duration::from_secs(15), "{:?}", start.elapsed());
        let pids = user_pids(&j);
        assert_all_gone(pids[0], &pids);

        let start = Instant::now();
        let e = j.exec.run_reduce(&j.path("Hog.py"), &mut many_records(), &mut Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "reduce() killed: it exceeded the task's memory limit of 200 MiB (MemoryError)"
        );
        assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());

        std::fs::remove_file(j.exec.workdir.join("pids")).unwrap();
        j.exec.limits.wall = None;
        let token = j.exec.cancel.clone();
        let pids_file = j.exec.workdir.join("pids");
        let canceller = std::thread::spawn(move || {
            let waited = Instant::now();
            while !pids_file.exists() && waited.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(20));
            }
            token.cancel();
        });
        let start = Instant::now();
        let e = j.exec.run_reduce(&j.path("Endless.py"), &mut many_records(), &mut Vec::new()).unwrap_err();
        canceller.join().unwrap();
        assert!(matches!(e, ExecError::Cancelled { stage: Stage::Reduce }), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(15), "{:?}", start.elapsed());
        let pids = user_pids(&j);
        assert_all_gone(pids[0], &pids);
    }

    #[test]
    fn limits_are_shown_with_their_values() {
        assert_eq!(show_duration(Duration::from_secs(5)), "5 s");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(show_duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(show_bytes(64 << 20), "64 MiB");
        assert_eq!(show_bytes(2 << 30), "2 GiB");
        assert_eq!(show_bytes(3 << 19), "1.5 MiB");
        assert_eq!(show_bytes(1000), "1000 bytes");
        let e = ExecError::OutOfMemory {
            stage: Stage::Map,
            limit_bytes: 64 << 20,
            cause: "MemoryError".into(),
            detail: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "map() killed: it exceeded the task's memory limit of 64 MiB (MemoryError)"
        );
        let e = ExecError::TimedOut { stage: Stage::Map, limit: Duration::from_secs(5) };
        assert_eq!(e.to_string(), "map() killed: it ran longer than the task's wall-clock limit of 5 s");
    }

    /// Python map+combine speed on the benchmark corpus:
    /// `cargo test -p ipdc-common python::tests::python_map_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn python_map_speed() {
        let path = "/tmp/ipdc_corpus_16M.txt";
        if !Path::new(path).exists() {
            let out = Command::new("python3")
                .args([concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/corpus.py"), "16M", "--seed", "1"])
                .output()
                .unwrap();
            std::fs::write(path, out.stdout).unwrap();
        }
        let data = std::fs::read(path).unwrap();
        let j = job(&[("Map.py", WC_MAP), ("Reduce.py", WC_REDUCE)]);
        for combine in [Some(j.path("Reduce.py")), None] {
            let t = Instant::now();
            let mut out = Vec::new();
            let stats = j.exec.run_map(&j.path("Map.py"), combine.as_deref(), &data[..], &mut out).unwrap();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "python map (combine: {}): {} bytes, {} records out in {secs:.2}s = {:.1} MB/s",
                combine.is_some(),
                data.len(),
                stats.output_records,
                data.len() as f64 / secs / 1e6
            );
        }
    }
}
