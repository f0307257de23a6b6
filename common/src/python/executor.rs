//! [`PythonExecutor`]: one run of the runner per task, from writing the
//! runner script into the task's folder to the [`ExecStats`] or the
//! [`ExecError`] the run ended with. The byte formats on the pipes belong to
//! the protocol module, the process group, limits and watchdog to the
//! sandbox.
//!
//! Threads: the calling thread feeds stdin and hands records to the sink;
//! one thread drains stdout into a channel, another keeps the last
//! [`STDERR_TAIL`](super::STDERR_TAIL) bytes of stderr. Because stdout and
//! stderr are always drained, writing stdin cannot deadlock, and a runner
//! that exits early just turns the next write into a broken pipe, which ends
//! the feeding.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use super::protocol::{
    FEED_CHUNK, Frames, RUNNER_FILE_NAME, RUNNER_PY, ReduceBlocks, memory_error, next_map_chunk, parse_stats,
    read_some, read_tail, runner_error, user_error,
};
use super::sandbox::{KillGroupOnDrop, Running, Stop, confine, has_exited, kill_group, wait_exited, watch};
use super::{CancelToken, ExecError, Limits, Stage};
use crate::exec::{ExecStats, RecordSink, RecordSource};

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
        let mut args: Vec<OsString> = vec!["map".into(), std::path::absolute(map_py)?.into()];
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
        let args: Vec<OsString> = vec!["reduce".into(), std::path::absolute(reduce_py)?.into()];
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
        // Absolute: the runner starts in `workdir`, where a relative path
        // would be looked up again.
        let runner = std::path::absolute(self.workdir.join(RUNNER_FILE_NAME))?;
        std::fs::write(&runner, RUNNER_PY).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot write the Python runner to {}: {e}", runner.display()))
        })?;
        let memory = self.limits.effective_memory_bytes();
        // The user's temporary files and home: a folder of the task's own,
        // removed with it, so that what `tempfile` or `~` give its code is
        // not left in the agent's temporary folder or the agent user's home.
        let scratch = std::path::absolute(self.workdir.join("tmp"))?;
        std::fs::create_dir_all(&scratch)?;
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
            .envs(["TMPDIR", "TEMP", "TMP", "HOME"].map(|k| (k, &scratch)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        confine(&mut command, memory);
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
