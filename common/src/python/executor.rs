//! [`PythonExecutor`]: one run of the runner per task, from starting the
//! interpreter on the sealed runner script to the [`ExecStats`] or the
//! [`ExecError`] the run ended with. The byte formats on the pipes belong to
//! the protocol module; the containment, limits and watchdog to the sandbox.
//!
//! Threads: the calling thread feeds stdin and hands records to the sink;
//! one thread drains stdout into a channel, another keeps the last
//! [`STDERR_TAIL`](super::STDERR_TAIL) bytes of stderr; the watchdog waits
//! for the runner to exit. Because stdout and stderr are always drained,
//! writing stdin cannot deadlock, and a runner that exits early just turns
//! the next write into a broken pipe, which ends the feeding. The run ends
//! with the runner: once it has exited, the pipes give what it wrote and
//! stop, whatever else still holds them.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use super::contain::Contained;
use super::landlock::{self, Ruleset};
use super::pipes::{Exited, PipeReader, set_nonblocking, write_all};
use super::protocol::{
    FEED_CHUNK, Frames, ReduceBlocks, memory_error, next_map_chunk, parse_stats, read_some, read_tail,
    runner_error, user_error, user_output,
};
use super::sandbox::{KillOnDrop, Running, Stop, confine, has_exited, watch};
use super::{CancelToken, Containment, ExecError, Limits, Stage, script};
use crate::exec::{ExecStats, RecordSink, RecordSource};

/// Runs user Python code for one task.
#[derive(Debug, Clone)]
pub struct PythonExecutor {
    /// The interpreter (e.g. `python3`, looked up in `PATH` if bare).
    pub python: PathBuf,
    /// The task's own temporary folder: the runner's working directory
    /// (and `TMPDIR`), the only place it may write where Landlock is on.
    pub workdir: PathBuf,
    /// Wall-clock and memory limits of each run.
    pub limits: Limits,
    /// Stops the runs of this executor (and of its clones) when cancelled.
    pub cancel: CancelToken,
    /// How each run's processes are kept together and killed at its end.
    pub containment: Containment,
    /// Whether the runner may write only in `workdir` (and /dev/null),
    /// where the kernel has Landlock; see [`landlock_abi`](super::landlock_abi).
    pub landlock: bool,
    /// What the job tells the runner beyond its code (see [`UserJob`]).
    pub job: UserJob,
}

/// What a task tells the runner beyond its code: what user code reads from
/// the `ipdc` module, and how a map reads and writes its records.
#[derive(Debug, Clone, Default)]
pub struct UserJob {
    /// The job's parameters, a JSON object's text (empty: none).
    pub params_json: String,
    /// A map's input file name (`ipdc.input_file()`).
    pub input_name: Option<String>,
    /// A map-only job's map: single values are allowed (key datum `n`).
    pub map_only: bool,
    /// The map's input is gzip-compressed: the runner decompresses it.
    pub gzip: bool,
    /// The map's input is whole files, framed (see the runner's
    /// `read_files`): `map(name, data)` runs once per file.
    pub files: bool,
    /// The map's input is typed lines of an earlier step: `map(key, value)`.
    pub pairs: bool,
}

impl UserJob {
    /// The runner's options that come before its command.
    fn args(&self, stage: Stage) -> Vec<OsString> {
        let mut args = Vec::new();
        if !self.params_json.is_empty() {
            args.extend(["--params".into(), self.params_json.clone().into()]);
        }
        if stage == Stage::Map {
            if let Some(name) = &self.input_name {
                args.extend(["--input-name".into(), name.clone().into()]);
            }
            args.extend(self.map_only.then(|| "--map-only".into()));
            args.extend(self.gzip.then(|| "--gzip".into()));
            args.extend(self.files.then(|| "--files".into()));
            args.extend(self.pairs.then(|| "--pairs".into()));
        }
        args
    }
}

impl PythonExecutor {
    /// An executor without limits, with a fresh (not cancelled) token,
    /// this process's containment ([`Containment::shared`]) and Landlock
    /// (unless `IPDC_LANDLOCK=off`).
    pub fn new(python: impl Into<PathBuf>, workdir: impl Into<PathBuf>) -> Self {
        PythonExecutor {
            python: python.into(),
            workdir: workdir.into(),
            limits: Limits::default(),
            cancel: CancelToken::default(),
            containment: Containment::shared().clone(),
            landlock: !landlock::disabled(),
            job: UserJob::default(),
        }
    }

    /// This executor for a task of `job`.
    pub fn with_job(mut self, job: UserJob) -> Self {
        self.job = job;
        self
    }

    /// This executor without Landlock, whatever the kernel offers.
    pub fn without_landlock(mut self) -> Self {
        self.landlock = false;
        self
    }

    /// This executor with its runs contained by `containment`.
    pub fn with_containment(mut self, containment: Containment) -> Self {
        self.containment = containment;
        self
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
        let mut args = self.job.args(Stage::Map);
        args.extend(["map".into(), std::path::absolute(map_py)?.into()]);
        if let Some(reduce_py) = combine_with {
            args.push("--combine".into());
            args.push(std::path::absolute(reduce_py)?.into());
        }
        let feed = move |buf: &mut Vec<u8>| next_map_chunk(&mut input, buf);
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
        let mut args = self.job.args(Stage::Reduce);
        args.extend(["reduce".into(), std::path::absolute(reduce_py)?.into()]);
        let mut blocks = ReduceBlocks::default();
        let feed = move |buf: &mut Vec<u8>| blocks.next_block(source, buf);
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
        let script = script::runner()?;
        let workdir = std::path::absolute(&self.workdir)?;
        let memory = self.limits.effective_memory_bytes();
        // The user's temporary files and home: a folder of the task's own,
        // removed with it, so that what `tempfile` or `~` give its code is
        // not left in the agent's temporary folder or the agent user's home.
        let scratch = std::path::absolute(self.workdir.join("tmp"))?;
        std::fs::create_dir_all(&scratch)?;
        let mut command = Command::new(&self.python);
        // -I (isolated, Python 3.4+): neither the script's folder nor the
        // user site-packages (whose .pth files run at every start) is on
        // sys.path, and PYTHON* variables are ignored: nothing a job can
        // write shadows the standard library for a later job. -B: no .pyc
        // files. TMPDIR: inside the task's folder, the one place it may write
        // under Landlock, removed with the task.
        command
            .arg("-I")
            .arg("-B")
            .arg(script.path())
            .args(args)
            .current_dir(&workdir)
            .envs(["TMPDIR", "TEMP", "TMP", "HOME"].map(|k| (k, &scratch)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let landlock = if self.landlock {
            Ruleset::writable_only(&workdir).unwrap_or_else(|e| {
                log::warn!(
                    "cannot make the Landlock ruleset for {}: {e}; running without it",
                    workdir.display()
                );
                None
            })
        } else {
            None
        };
        let contained = Contained::start(&self.containment)?;
        confine(&mut command, contained.hook(), memory, script.fd(), landlock.as_ref().map(Ruleset::fd));
        let started = Instant::now();
        let child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {}: {e}", self.python.display())))?;
        drop(landlock);
        // From here on, leaving this function in any way (error, panic)
        // kills the whole run and reaps the child.
        let mut running = Running::new(child, contained);
        let pid = running.pid;
        let mut stdin = running.child.stdin.take();
        let stdout = running.child.stdout.take().expect("piped stdout");
        let stderr = running.child.stderr.take().expect("piped stderr");
        if let Some(pipe) = &stdin {
            set_nonblocking(pipe.as_raw_fd())?;
        }
        let deadline = self.limits.wall.map(|w| started + w);
        let cancel = &self.cancel;
        let contained = &running.contained;
        let exited = Exited::new()?;
        let exited = &exited;

        let (outcome, tail, stopped, killed_by_us) = std::thread::scope(|s| {
            // Kills the run if this closure unwinds, so that the runner
            // exits, the watchdog and the readers end, and the scope can be left.
            let guard = KillOnDrop(contained, pid);
            let watchdog = s.spawn(move || watch(pid, contained, deadline, cancel, exited));
            let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>();
            s.spawn(move || {
                let mut stdout = PipeReader::new(stdout, exited);
                loop {
                    let mut chunk = vec![0u8; FEED_CHUNK];
                    match read_some(&mut stdout, &mut chunk) {
                        Ok(0) => break,
                        Ok(n) => {
                            chunk.truncate(n);
                            if tx.send(Ok(chunk)).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            break;
                        }
                    }
                }
            });
            let tail = s.spawn(move || read_tail(PipeReader::new(stderr, exited)));

            let mut frames = Frames::default();
            let outcome = (|| -> Result<(bool, u64), ExecError> {
                let mut buf = Vec::with_capacity(FEED_CHUNK);
                let mut broken = false;
                while let Some(pipe) = stdin.as_mut() {
                    feed(&mut buf)?;
                    if buf.is_empty() {
                        break;
                    }
                    if let Err(e) = write_all(pipe, &buf, exited) {
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
                // End of input: let the runner finish, then take the rest
                // (until its stdout ends, or the runner has exited and what
                // it wrote is read).
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
                // writing to us); the watchdog then sees it exit and the
                // readers end. Our error, not a limit, is then the story.
                killed_by_us = !has_exited(pid);
                contained.kill_all(pid);
            }
            drop(stdin);
            // Returns once the runner has exited; what it left is killed.
            let stopped = watchdog.join().unwrap_or(None);
            drop(guard);
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
                let mut stats = parse_stats(&tail)?;
                stats.log = user_output(&tail);
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
