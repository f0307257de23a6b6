//! Running one task attempt: fetch its input from IPFS, run the executor,
//! add its outputs to IPFS. Every attempt works in its own folder, removed
//! afterwards; only CIDs leave the agent.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ipdc_common::exec::{ExecStats, RecordSink};
use ipdc_common::ipfs::{IpfsClient, LocalFiles};
use ipdc_common::mapreduce::merge::KWayMerge;
use ipdc_common::mapreduce::sorter::MapOutput;
use ipdc_common::protocol::{CodeSpec, Compression, Task, TaskKind, TaskOutput};
use ipdc_common::python::{CancelToken, ExecError, Limits, PythonExecutor, UserJob};
use ipdc_common::{record, wordcount};
use log::info;

use crate::side_cache::{Got, SideCache};

mod input;
mod meter;
mod unzstd;
use input::{MapInput, files_named, open_files, open_split, wrong_size};
pub use meter::Meter;

/// What every task of this agent shares.
pub struct TaskContext {
    pub agent: String,
    pub ipfs: IpfsClient,
    pub work_dir: PathBuf,
    /// The Python interpreter, when this agent has one.
    pub python: Option<PathBuf>,
    /// The most memory one task's buffers may use, whatever the job asks.
    pub max_memory_mb: u64,
    /// Test hook: a pause before every task (a slow board).
    pub delay: std::time::Duration,
    /// The most a job may set as a task's wall-clock and memory limits.
    pub max_task_secs: u64,
    pub max_task_memory_mb: u64,
    /// The IPFS node's files, when the node runs in this process.
    pub local_files: Option<Arc<dyn LocalFiles>>,
    /// Side files of earlier tasks, by CID.
    pub side_files: SideCache,
}

impl TaskContext {
    /// The job's limits, lowered to this agent's maximums.
    pub fn limits(&self, task: &Task) -> Limits {
        let l = &task.code.limits;
        let secs = l.wall_secs.unwrap_or(self.max_task_secs).min(self.max_task_secs).max(1);
        let mb = l.memory_mb.unwrap_or(self.max_task_memory_mb).min(self.max_task_memory_mb);
        Limits { wall: Some(std::time::Duration::from_secs(secs)), memory_bytes: Some(mb << 20) }
    }
}

/// Why an attempt failed: a one-line error and the detail (e.g. a traceback).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskError {
    pub error: String,
    pub detail: String,
    /// Reduce inputs that could not be fetched (their maps must run again).
    pub lost_inputs: Vec<String>,
    /// This agent's own IPFS node did not answer (see `EventKind::Failed`).
    pub node_down: bool,
}

impl TaskError {
    fn new(error: impl Into<String>) -> Self {
        TaskError { error: error.into(), detail: String::new(), lost_inputs: Vec::new(), node_down: false }
    }
}

impl From<io::Error> for TaskError {
    fn from(e: io::Error) -> Self {
        local_io_error(&e)
    }
}

/// An error of the agent's own files (its work dir): a full disk or quota
/// is named as such, with what to do.
fn local_io_error(e: &io::Error) -> TaskError {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => TaskError::new(format!(
            "the agent's disk is full ({e}): free space where its work_dir is, or set work_dir to a larger disk"
        )),
        _ => TaskError::new(e.to_string()),
    }
}

impl From<ipdc_common::ipfs::IpfsError> for TaskError {
    fn from(e: ipdc_common::ipfs::IpfsError) -> Self {
        if let ipdc_common::ipfs::ErrorKind::Local(io) = e.kind() {
            // Writing what the node sent to the agent's own disk failed
            // (the error names the file).
            return local_io_error(io);
        }
        TaskError { node_down: e.is_node_unreachable(), ..TaskError::new(e.to_string()) }
    }
}

/// An error fetching `what` (the job's code, a side file), saying so: the
/// attempt's error names the split it was for, not what failed to come.
fn fetching(what: String) -> impl FnOnce(ipdc_common::ipfs::IpfsError) -> TaskError {
    move |e| {
        let local = matches!(e.kind(), ipdc_common::ipfs::ErrorKind::Local(_));
        let mut t = TaskError::from(e);
        if !local {
            t.error = format!("cannot fetch {what}: {}", t.error);
        }
        t
    }
}

impl From<ExecError> for TaskError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::User { summary, traceback } => {
                TaskError { error: summary, detail: traceback, lost_inputs: Vec::new(), node_down: false }
            }
            ExecError::OutOfMemory { ref detail, .. } => {
                let detail = detail.clone();
                TaskError { error: e.to_string(), detail, lost_inputs: Vec::new(), node_down: false }
            }
            // Reading the input or writing to the sink (a spill, the part).
            ExecError::Io(e) => e.into(),
            other => TaskError::new(other.to_string()),
        }
    }
}

/// The executor a task runs with on this agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Executor {
    Python(PathBuf),
    NativeWordCount,
}

impl Executor {
    /// Its name on the wire.
    fn name(&self) -> ipdc_common::protocol::Executor {
        match self {
            Executor::Python(_) => ipdc_common::protocol::Executor::Python,
            Executor::NativeWordCount => ipdc_common::protocol::Executor::Native("wordcount".into()),
        }
    }
}

/// `--native` wins; else Python when the agent has it; else the job's native fallback.
pub fn choose_executor(code: &CodeSpec, python: Option<&Path>) -> Result<Executor, TaskError> {
    let native = |name: &str| match name {
        "wordcount" => Ok(Executor::NativeWordCount),
        other => {
            Err(TaskError::new(format!("this agent has no native executor {other:?} (it has: wordcount)")))
        }
    };
    if let Some(n) = &code.force_native {
        return native(n);
    }
    match (python, &code.native_fallback) {
        (Some(p), _) => Ok(Executor::Python(p.to_path_buf())),
        (None, Some(n)) => native(n),
        (None, None) => Err(TaskError::new(
            "this agent has no Python and the job names no native fallback (set native = \"wordcount\" in ipdc.toml, or run agents with Python)",
        )),
    }
}

/// Runs one attempt in its own folder and removes the folder afterwards.
/// `cancel` stops the attempt's user code (its whole process group).
/// `meter` counts the input as it is read (a map's).
pub async fn run(
    ctx: Arc<TaskContext>,
    task: Task,
    cancel: CancelToken,
    meter: Arc<Meter>,
) -> Result<TaskOutput, TaskError> {
    let started = Instant::now();
    let limits = ctx.limits(&task);
    let wall = limits.wall.unwrap_or(std::time::Duration::MAX);
    // The Python executor enforces the limit itself (killing its process
    // group); this bound also covers fetching, native executors and uploads.
    let grace = std::time::Duration::from_secs(5);
    match tokio::time::timeout(wall.saturating_add(grace), run_attempt(&ctx, &task, limits, &cancel, meter))
        .await
    {
        Ok(result) => {
            let mut out = result?;
            out.elapsed_ms = started.elapsed().as_millis() as u64;
            let log = std::mem::take(&mut out.stats.log);
            if !log.is_empty() {
                out.log_cid = Some(ctx.ipfs.add_bytes(log.into_bytes()).await?.cid);
            }
            lie_for_tests(&ctx, &task, out).await
        }
        Err(_) => {
            cancel.cancel();
            let dir = ctx.work_dir.join(&task.job).join(format!("{}-a{}", task.task, task.attempt));
            let _ = tokio::fs::remove_dir_all(&dir).await;
            Err(TaskError::new(format!(
                "task killed: it ran longer than the task's wall-clock limit of {} s",
                wall.as_secs()
            )))
        }
    }
}

/// Test hook only (`config::test_lie`, off unless `ipdc-agent --test-lie`):
/// replaces each output CID with the CID of something else this agent adds
/// to IPFS, a well-formed lie for the submitter's verification to catch.
async fn lie_for_tests(ctx: &TaskContext, task: &Task, mut out: TaskOutput) -> Result<TaskOutput, TaskError> {
    if !crate::config::test_lie() {
        return Ok(out);
    }
    for (i, cid) in out.cids.iter_mut().enumerate() {
        let lie =
            format!("a lie of agent {} for {} attempt {} part {i}\n", ctx.agent, task.task, task.attempt);
        *cid = ctx.ipfs.add_bytes(lie.into_bytes()).await?.cid;
    }
    Ok(out)
}

async fn run_attempt(
    ctx: &Arc<TaskContext>,
    task: &Task,
    limits: Limits,
    cancel: &CancelToken,
    meter: Arc<Meter>,
) -> Result<TaskOutput, TaskError> {
    let (ctx, task) = (ctx.clone(), task.clone());
    let dir = ctx.work_dir.join(&task.job).join(format!("{}-a{}", task.task, task.attempt));
    make_private_dir(&dir)
        .await
        .map_err(|e| TaskError::new(format!("cannot create work folder {}: {e}", dir.display())))?;
    if !ctx.delay.is_zero() {
        // Test hook: a slow board, working in its folder.
        tokio::time::sleep(ctx.delay).await;
    }
    let result = match &task.kind {
        TaskKind::Map { input_cid, input_size, start, end, split, name, compression } => {
            let py = (limits, cancel.clone(), meter.clone());
            let input = MapInput::Range {
                cid: input_cid,
                size: *input_size,
                start: *start,
                end: *end,
                name,
                compression: *compression,
            };
            run_map(&ctx, &task, &dir, input, py).await.map_err(|mut e| {
                // Name the split, so the user can find the input that broke.
                let file = if name.is_empty() { String::new() } else { format!("{name}, ") };
                e.error = format!("{} [split {split} ({file}bytes {start}..{end} of {input_cid})]", e.error);
                e
            })
        }
        TaskKind::MapFiles { split, files } => {
            let py = (limits, cancel.clone(), meter.clone());
            run_map(&ctx, &task, &dir, MapInput::Files(files), py).await.map_err(|mut e| {
                e.error = format!("{} [split {split} ({})]", e.error, files_named(files));
                e
            })
        }
        TaskKind::Reduce { inputs, .. } => {
            run_reduce(&ctx, &task, &dir, inputs, (limits, cancel.clone())).await
        }
    };
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let job_dir = ctx.work_dir.join(&task.job);
    let _ = tokio::fs::remove_dir(&job_dir).await; // only succeeds once the job's last task is gone
    result
}

/// Makes the attempt's folder (and its job's folder), private to the
/// agent's user (0700): other users of the board may not read a task's
/// input, code or output. (Other jobs run as the same user: where the kernel
/// has Landlock, their code may not write here either; see the sandbox.)
async fn make_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).await?;
    // An existing folder keeps its mode; the attempt's own must be private.
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).await
}

fn budget_bytes(ctx: &TaskContext, task: &Task) -> usize {
    let mb = task.memory_mb.clamp(1, ctx.max_memory_mb.max(1));
    (mb as usize) << 20
}

/// Fetches a code file into the attempt's folder, under `name` (the user's
/// own file name when it is safe: see `CodeFiles::checked`).
async fn fetch_code(ctx: &TaskContext, cid: &str, dir: &Path, name: &str) -> Result<PathBuf, TaskError> {
    // A folder of their own, which the runner puts last on sys.path (so a
    // user's `json.py` is never what the runner or the job imports as
    // `json`); the runner itself is not in any folder (see the sandbox).
    let code = dir.join("code");
    tokio::fs::create_dir_all(&code).await?;
    let path = code.join(name);
    ctx.ipfs
        .cat_to_scratch_file(cid, &path)
        .await
        .map_err(fetching(format!("the job's code {name} ({cid})")))?;
    Ok(path)
}

/// The most bytes of side files one job may have (each agent fetches them).
pub const MAX_SIDE_FILE_BYTES: u64 = 256 << 20;

/// Fetches the job's side files into the attempt's code folder, beside
/// Map.py and Reduce.py. Their paths come off the wire: each must be a
/// plain relative path that names neither of the code files.
async fn fetch_side_files(ctx: &TaskContext, task: &Task, dir: &Path) -> Result<(), TaskError> {
    let (map_name, reduce_name) = task.code.files.checked();
    let total: u64 = task.code.side_files.iter().map(|f| f.size).sum();
    if total > MAX_SIDE_FILE_BYTES {
        return Err(TaskError::new(format!(
            "the job's side files hold {total} bytes, more than this agent takes ({MAX_SIDE_FILE_BYTES})"
        )));
    }
    for f in &task.code.side_files {
        let top = f.path.split('/').next().unwrap_or_default();
        if !ipdc_common::protocol::is_safe_relative_path(&f.path)
            || [map_name, reduce_name, ipdc_common::python::RUNNER_FILE_NAME].contains(&top)
        {
            return Err(TaskError::new(format!("refused side file path {:?}", f.path)));
        }
        let path = dir.join("code").join(&f.path);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let got = ctx.side_files.copy_to(&ctx.ipfs, &f.cid, f.size, &path).await;
        match got.map_err(fetching(format!("side file {} ({})", f.path, f.cid)))? {
            Ok(Got::Cached) => info!("side file {} ({}) from the cache", f.path, f.cid),
            Ok(Got::Fetched) => info!("side file {} ({}) fetched", f.path, f.cid),
            Err(got) => return Err(wrong_size("side file", &f.path, &f.cid, f.size, got)),
        }
    }
    Ok(())
}

/// The Python executor for a task: its folder, limits and cancel, and what
/// the job tells its runner.
fn python_executor(
    python: &Path,
    work: PathBuf,
    job: UserJob,
    (limits, cancel): (Limits, CancelToken),
) -> PythonExecutor {
    PythonExecutor::new(python, work).with_limits(limits).with_cancel(cancel).with_job(job)
}

/// The most bytes of a job's parameters, as JSON (they go to the runner as
/// one argument, and the kernel limits one to 128 KiB).
pub const MAX_PARAMS_BYTES: usize = 64 << 10;

/// What a task (a map of `input`, or a reduce) tells its runner, checked:
/// its parameters' size and its input's name come off the wire.
fn user_job(task: &Task, input: Option<&MapInput<'_>>) -> Result<UserJob, TaskError> {
    let (name, compression, files) = match input {
        None => ("", None, &[][..]),
        Some(MapInput::Range { name, compression, .. }) => (*name, *compression, &[][..]),
        Some(MapInput::Files(files)) => ("", None, *files),
    };
    let names = std::iter::once(name).chain(files.iter().map(|f| f.name.as_str()));
    if !names.into_iter().all(ipdc_common::protocol::is_safe_input_name) {
        return Err(TaskError::new(
            "refused the task: its input file name is too long or has control characters",
        ));
    }
    let params_json = if task.code.params.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&task.code.params).expect("JSON values serialize")
    };
    if params_json.len() > MAX_PARAMS_BYTES {
        return Err(TaskError::new(format!(
            "the job's parameters take {} bytes as JSON, more than {MAX_PARAMS_BYTES}",
            params_json.len()
        )));
    }
    Ok(UserJob {
        params_json,
        input_name: (!name.is_empty()).then(|| name.to_string()),
        map_only: input.is_some() && task.reducers == 0,
        gzip: compression == Some(Compression::Gzip),
        pairs: input.is_some() && task.code.step_io.pairs_in,
        files: matches!(input, Some(MapInput::Files(_))),
    })
}

async fn run_map(
    ctx: &TaskContext,
    task: &Task,
    dir: &Path,
    input: MapInput<'_>,
    (limits, cancel, meter): (Limits, CancelToken, Arc<Meter>),
) -> Result<TaskOutput, TaskError> {
    let job = user_job(task, Some(&input))?;
    let exec = choose_executor(&task.code, ctx.python.as_deref())?;
    let python = matches!(exec, Executor::Python(_));
    match input {
        MapInput::Range { start, end, size, compression: Some(_), .. } if start != 0 || end != size => {
            return Err(TaskError::new(
                "refused the task: a compressed input is mapped whole, not in byte ranges",
            ));
        }
        MapInput::Range { compression: Some(Compression::Gzip), .. } if !python => {
            return Err(TaskError::new(
                "a gzip-compressed input needs Python on the agent (the native executors read plain text)",
            ));
        }
        _ if task.code.step_io.pairs_in && !python => {
            return Err(TaskError::new(
                "a later step of a multi-step job needs Python on the agent for map(key, value)",
            ));
        }
        MapInput::Files(_) if !python => {
            return Err(TaskError::new(
                "a per-file job (input_format = \"files\") needs Python on the agent for map(name, data)",
            ));
        }
        _ => {}
    }
    let mut combine_with = None;
    let mut map_py = PathBuf::new();
    if let Executor::Python(_) = exec {
        let (map_name, reduce_name) = task.code.files.checked();
        map_py = fetch_code(ctx, &task.code.map_cid, dir, map_name).await?;
        if task.code.combiner {
            combine_with = Some(fetch_code(ctx, &task.code.reduce_cid, dir, reduce_name).await?);
        }
        fetch_side_files(ctx, task, dir).await?;
    }
    let budget = budget_bytes(ctx, task);
    let input = match input {
        MapInput::Range { cid, size, start, end, name, compression } => {
            let split = open_split(ctx, cid, size, start, end)?;
            match compression {
                Some(Compression::Zstd) => split.zstd(if name.is_empty() { cid } else { name }),
                _ => split,
            }
        }
        MapInput::Files(files) => open_files(ctx, dir, files, &limits).await?,
    };
    let python_job = (limits, cancel);

    let reducers = task.reducers;
    let pairs_out = task.code.step_io.pairs_out;
    let spill_dir = dir.join("spill");
    let work = dir.to_path_buf();
    let executor = exec.clone();
    let mapped = tokio::task::spawn_blocking(move || -> Result<_, TaskError> {
        std::fs::create_dir_all(&spill_dir)?;
        let mut input = meter::Metered::new(input.reader, meter);
        if reducers == 0 {
            // Map-only: the map's records, in input order, are the job's part.
            let Executor::Python(python) = &executor else {
                return Err(TaskError::new("a map-only job (reducers = 0) needs Python on the agent"));
            };
            let path = work.join("part");
            let mut sink = PartWriter::create(&path, pairs_out)?;
            let stats = python_executor(python, work, job, python_job)
                .run_map(&map_py, None, &mut input, &mut sink)?;
            sink.finish()?;
            let bytes = std::fs::metadata(&path)?.len();
            let records = stats.output_records;
            let part = ipdc_common::mapreduce::sorter::PartitionFile { partition: 0, path, records, bytes };
            return Ok((stats, vec![part], 0, input.get_ref().bytes_read()));
        }
        // Half the budget for the executor's own table, half for the sort buffer.
        let mut out = MapOutput::new(reducers, budget / 2, &spill_dir)?;
        let stats = match &executor {
            Executor::NativeWordCount => wordcount::map(&mut input, &mut out, budget / 2)?,
            Executor::Python(python) => python_executor(python, work, job, python_job).run_map(
                &map_py,
                combine_with.as_deref(),
                &mut input,
                &mut out,
            )?,
        };
        let spills = out.spills();
        let parts = out.finish()?;
        Ok((stats, parts, spills, input.get_ref().bytes_read()))
    });
    let mapped = mapped.await.map_err(|e| TaskError::new(format!("map task crashed: {e}")))?;
    // A fetch error explains a short input better than the executor's view of it.
    let bytes_read = match input.fetch {
        None => mapped.as_ref().map_or(0, |m| m.3),
        Some(fetch) => match fetch.await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(TaskError::new(format!("input fetch crashed: {e}"))),
        },
    };
    let (stats, parts, spills, _) = mapped?;
    let mut output =
        TaskOutput { stats, bytes_read, executor: exec.name(), spills: spills as u32, ..Default::default() };
    for part in &parts {
        let added = ctx.ipfs.add_scratch(&part.path).await?;
        output.cids.push(added.cid);
        output.sizes.push(part.bytes);
    }
    Ok(output)
}

async fn run_reduce(
    ctx: &TaskContext,
    task: &Task,
    dir: &Path,
    inputs: &[String],
    (limits, cancel): (Limits, CancelToken),
) -> Result<TaskOutput, TaskError> {
    let exec = choose_executor(&task.code, ctx.python.as_deref())?;
    let job = user_job(task, None)?;
    let reduce_py = match exec {
        Executor::Python(_) => {
            let path = fetch_code(ctx, &task.code.reduce_cid, dir, task.code.files.checked().1).await?;
            fetch_side_files(ctx, task, dir).await?;
            path
        }
        Executor::NativeWordCount => PathBuf::new(),
    };
    let mut files = Vec::with_capacity(inputs.len());
    let mut bytes_read = 0;
    for (i, cid) in inputs.iter().enumerate() {
        let (file, len) = open_map_output(ctx, cid, &dir.join(format!("in-{i:05}"))).await?;
        bytes_read += len;
        files.push(file);
    }
    let part_path = dir.join("part");
    let work = dir.to_path_buf();
    let executor = exec.clone();
    let part = part_path.clone();
    let pairs_out = task.code.step_io.pairs_out;
    let stats =
        tokio::task::spawn_blocking(move || -> Result<ExecStats, TaskError> {
            let mut source = KWayMerge::from_files(files)?;
            let mut sink = PartWriter::create(&part, pairs_out)?;
            let stats =
                match &executor {
                    Executor::NativeWordCount => wordcount::reduce(&mut source, &mut sink)?,
                    Executor::Python(python) => python_executor(python, work, job, (limits, cancel))
                        .run_reduce(&reduce_py, &mut source, &mut sink)?,
                };
            sink.finish()?;
            Ok(stats)
        })
        .await
        .map_err(|e| TaskError::new(format!("reduce task crashed: {e}")))??;
    let size = tokio::fs::metadata(&part_path).await?.len();
    let added = ctx.ipfs.add_scratch(&part_path).await?;
    Ok(TaskOutput {
        cids: vec![added.cid],
        sizes: vec![size],
        stats,
        bytes_read,
        executor: exec.name(),
        ..Default::default()
    })
}

/// One map output for a reduce, and its length: the node's own file when
/// the node runs in this process (as for a map's split), else a copy
/// fetched with `cat` into `scratch`.
///
/// Only what the IPFS node could not give is a lost input (its map must
/// run again). When the node itself is down the map outputs may be fine,
/// and an error of this agent's own disk (full, a quota, EIO, permissions)
/// while keeping the copy is this agent's failure, not the input's.
async fn open_map_output(
    ctx: &TaskContext,
    cid: &str,
    scratch: &Path,
) -> Result<(std::fs::File, u64), TaskError> {
    let lost = |why: String| TaskError {
        error: format!("cannot fetch map output {cid}: {why}"),
        detail: String::new(),
        lost_inputs: vec![cid.to_string()],
        node_down: false,
    };
    let local = |what: TaskError| TaskError::new(format!("cannot keep map output {cid}: {}", what.error));
    if let Some(opened) = ctx.local_files.as_ref().and_then(|files| files.open(cid)) {
        // The node's own file (it runs in this process): its errors are the node's.
        return opened.map_err(|e| lost(e.to_string()));
    }
    let len = match ctx.ipfs.cat_to_scratch_file(cid, scratch).await {
        Ok(len) => len,
        Err(e) if matches!(e.kind(), ipdc_common::ipfs::ErrorKind::Local(_)) => return Err(local(e.into())),
        Err(e) if e.is_node_unreachable() => {
            return Err(TaskError {
                error: format!("cannot fetch map output {cid}: {e}"),
                node_down: true,
                ..TaskError::new("")
            });
        }
        Err(e) => return Err(lost(e.to_string())),
    };
    let file = std::fs::File::open(scratch)
        .map_err(|e| local(io::Error::new(e.kind(), format!("{}: {e}", scratch.display())).into()))?;
    Ok((file, len))
}

/// Writes reducer output as the part file's text: `key<TAB>value` lines.
struct PartWriter {
    out: io::BufWriter<std::fs::File>,
    /// Typed lines (`JSON key<TAB>JSON value`) for the next step of a job.
    typed: bool,
}

impl PartWriter {
    fn create(path: &Path, typed: bool) -> io::Result<Self> {
        Ok(PartWriter { out: io::BufWriter::with_capacity(256 << 10, std::fs::File::create(path)?), typed })
    }

    /// Flushes the part. Not synced to disk: it is added to IPFS and removed
    /// with the task's folder right after.
    fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl RecordSink for PartWriter {
    fn emit(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let write = if self.typed { record::write_json_datum } else { record::write_text_datum };
        if key != record::NO_KEY {
            write(&mut self.out, key)?;
            self.out.write_all(b"\t")?;
        }
        write(&mut self.out, value)?;
        self.out.write_all(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_as_such() {
        let e: TaskError = io::Error::from_raw_os_error(28).into(); // ENOSPC
        assert!(e.error.starts_with("the agent's disk is full (No space left on device"), "{}", e.error);
        assert!(e.error.contains("work_dir"), "{}", e.error);
    }

    #[test]
    fn a_full_disk_under_the_executor_is_named_as_such_too() {
        let e: TaskError = ExecError::Io(io::Error::from_raw_os_error(28)).into();
        assert!(e.error.starts_with("the agent's disk is full"), "{}", e.error);
        let e: TaskError = ExecError::Io(io::Error::from_raw_os_error(libc_edquot())).into();
        assert!(e.error.starts_with("the agent's disk is full"), "{}", e.error);
    }

    /// EDQUOT on Linux (a quota, not a full disk, but the same to the user).
    fn libc_edquot() -> i32 {
        if cfg!(target_os = "linux") { 122 } else { 69 }
    }

    const JOB: &str = "wc-mwwtc2sy-d46ad903c424";
    const MAP_OUTPUT: &str = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";

    /// An IPFS API on loopback that answers every request with `answer`
    /// (a raw HTTP response).
    async fn scripted_node(answer: String) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = sock.write_all(answer.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        url
    }

    fn http(status: &str, body: &str) -> String {
        format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len())
    }

    /// Runs a native reduce of one map output against the IPFS API at `api`.
    async fn reduce_one(api: &str, work: &Path) -> Result<TaskOutput, TaskError> {
        let ctx = Arc::new(TaskContext {
            agent: "pi-1".into(),
            ipfs: IpfsClient::new(api).unwrap(),
            work_dir: work.to_path_buf(),
            python: None,
            max_memory_mb: 16,
            delay: std::time::Duration::ZERO,
            max_task_secs: 60,
            max_task_memory_mb: 256,
            local_files: None,
            side_files: SideCache::new(work),
        });
        let task = Task {
            job: JOB.into(),
            task: "r-00000".into(),
            attempt: 1,
            reducers: 1,
            code: code(Some("wordcount"), None),
            memory_mb: 16,
            kind: TaskKind::Reduce { partition: 0, inputs: vec![MAP_OUTPUT.into()] },
        };
        run(ctx, task, CancelToken::new(), Default::default()).await
    }

    #[tokio::test]
    async fn a_reducers_own_full_disk_is_its_failure_and_loses_no_input() {
        let work = tempfile::tempdir().unwrap();
        // The node answers; the copy of the map output goes to a full disk
        // (the client's temporary file, here a link to /dev/full).
        let api = scripted_node(http("200 OK", "some bytes of a map output")).await;
        let attempt = work.path().join(JOB).join("r-00000-a1");
        std::fs::create_dir_all(&attempt).unwrap();
        let part = attempt.join(format!(".in-00000.part-{}", std::process::id()));
        std::os::unix::fs::symlink("/dev/full", &part).unwrap();
        let e = reduce_one(&api, work.path()).await.unwrap_err();
        assert_eq!(e.lost_inputs, Vec::<String>::new(), "{e:?}");
        assert!(!e.node_down, "{e:?}");
        assert!(
            e.error.starts_with(&format!("cannot keep map output {MAP_OUTPUT}: the agent's disk is full")),
            "{}",
            e.error
        );
        assert!(e.error.contains("work_dir"), "{}", e.error);

        // What the node cannot give is a lost input...
        let missing = format!(
            "{{\"Message\":\"block was not found locally (offline): ipld: could not find {MAP_OUTPUT}\",\"Code\":0,\"Type\":\"error\"}}"
        );
        let api = scripted_node(http("500 Internal Server Error", &missing)).await;
        let e = reduce_one(&api, work.path()).await.unwrap_err();
        assert_eq!(e.lost_inputs, [MAP_OUTPUT], "{e:?}");
        assert!(!e.node_down && e.error.contains("could not find"), "{e:?}");

        // ...and a node that does not answer at all loses none.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let e = reduce_one(&format!("http://{closed}"), work.path()).await.unwrap_err();
        assert!(e.node_down && e.lost_inputs.is_empty(), "{e:?}");
    }

    #[tokio::test]
    async fn code_that_cannot_be_fetched_is_named_as_the_code_not_as_the_input() {
        let work = tempfile::tempdir().unwrap();
        let missing = "{\"Message\":\"ipld: could not find bafycode\",\"Code\":0,\"Type\":\"error\"}";
        let api = scripted_node(http("500 Internal Server Error", missing)).await;
        let ctx = TaskContext {
            agent: "pi-1".into(),
            ipfs: IpfsClient::new(&api).unwrap(),
            work_dir: work.path().to_path_buf(),
            python: None,
            max_memory_mb: 16,
            delay: std::time::Duration::ZERO,
            max_task_secs: 60,
            max_task_memory_mb: 256,
            local_files: None,
            side_files: SideCache::new(work.path()),
        };
        let e = fetch_code(&ctx, "bafycode", work.path(), "wc.py").await.unwrap_err();
        assert!(e.error.starts_with("cannot fetch the job's code wc.py (bafycode): "), "{}", e.error);
        assert!(e.error.contains("could not find"), "{}", e.error);
        assert!(e.lost_inputs.is_empty(), "{e:?}");
    }

    fn code(force: Option<&str>, fallback: Option<&str>) -> CodeSpec {
        CodeSpec {
            map_cid: String::new(),
            reduce_cid: String::new(),
            combiner: false,
            force_native: force.map(String::from),
            native_fallback: fallback.map(String::from),
            limits: Default::default(),
            files: Default::default(),
            params: Default::default(),
            side_files: Vec::new(),
            step_io: Default::default(),
        }
    }

    #[test]
    fn executor_choice_follows_native_then_python_then_fallback() {
        let py = Path::new("/usr/bin/python3");
        assert_eq!(
            choose_executor(&code(Some("wordcount"), None), Some(py)).unwrap(),
            Executor::NativeWordCount
        );
        assert_eq!(
            choose_executor(&code(None, Some("wordcount")), Some(py)).unwrap(),
            Executor::Python(py.into())
        );
        assert_eq!(choose_executor(&code(None, Some("wordcount")), None).unwrap(), Executor::NativeWordCount);
        let e = choose_executor(&code(None, None), None).unwrap_err();
        assert!(e.error.contains("no Python"), "{}", e.error);
        let e = choose_executor(&code(Some("grep"), None), Some(py)).unwrap_err();
        assert!(e.error.contains("\"grep\""), "{}", e.error);
    }

    #[tokio::test]
    async fn attempt_folders_are_private_to_the_agents_user() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("job-x").join("m-00000-a1");
        make_private_dir(&dir).await.unwrap();
        for p in [&dir, &d.path().join("job-x")] {
            assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o700, "{}", p.display());
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_private_dir(&dir).await.unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn part_lines_are_key_tab_value() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("part");
        let mut w = PartWriter::create(&p, false).unwrap();
        w.emit(b"sna\xefve", b"j2").unwrap();
        w.emit(b"j[1,2]", b"s{x}").unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"na\xefve\t2\n[1,2]\t{x}\n");
        // A step's part for the next step: both sides as JSON.
        let mut w = PartWriter::create(&p, true).unwrap();
        w.emit(b"sna\xefve", b"j2").unwrap();
        w.emit(b"n", b"s{x}").unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"\"na\\udcefve\"\t2\n\"{x}\"\n");
    }
}
