//! Running one job, as a pipeline of small parts:
//!
//! 1. claim the output folder ([`crate::output`]) and check the code's syntax;
//! 2. connect ([`session`]) and say the job's controller is running (its
//!    Last Will says gone, so agents drop its tasks if this process dies);
//! 3. pick K agents ([`pick`]);
//! 4. add the input and the code to IPFS ([`upload`]) and plan the splits;
//! 5. drive the controller until the job is done or failed ([`drive`]);
//! 6. tell the agents the job is over, then write the parts and
//!    `summary.json` ([`summary`]) into the output folder.

pub mod drive;
pub mod early;
mod locality;
pub mod pick;
pub mod publish;
mod reuse;
mod sent;
pub mod session;
pub mod summary;
pub mod upload;

use std::time::{Duration, Instant};

use ipdc_common::ipfs::IpfsClient;
#[cfg(test)]
use ipdc_common::mapreduce::split::Split;
use ipdc_common::mapreduce::split::{plan_file_groups, plan_file_splits};
use ipdc_common::protocol::{
    CodeFiles, CodeSpec, InputFile, JobInfo, MAX_FILES_PER_TASK, StepIo, TaskLimits, now_ms,
};
use log::info;

use crate::cluster::Cluster;
use crate::controller::{Controller, JobPlan, MapSplit, Verification};
use crate::job::{InputFormat, JobSpec};
use crate::output;
use crate::progress::ProgressView;
use crate::task_cache::TaskCache;
use publish::PartEntry;
use session::Session;
use summary::{InputFacts, Summary, Times};
use upload::InputObject;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub overwrite: bool,
    /// How long to wait for enough capable agents.
    pub wait: Duration,
    /// An assignment not acknowledged within this long goes to another agent.
    pub accept_timeout: Duration,
    pub show_progress: bool,
    /// Leave the parts in IPFS (pinned on the submitter's node): write only
    /// `summary.json` and `_SUCCESS`.
    pub no_fetch: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            overwrite: false,
            wait: Duration::from_secs(10),
            accept_timeout: Duration::from_secs(15),
            show_progress: true,
            no_fetch: false,
        }
    }
}

/// Map tasks per job at most: a reduce assignment carries one CID per map
/// and must stay under the message size limit.
pub const MAX_MAP_TASKS: usize = 10_000;

/// A job id: the job's name, the time in base 36 and random bits, so ids of
/// jobs submitted anywhere at any time do not collide.
pub fn new_job_id(name: &str) -> String {
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).expect("the OS has a random source");
    let mut t = now_ms();
    let mut ts = Vec::new();
    while t > 0 {
        ts.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(t % 36) as usize]);
        t /= 36;
    }
    ts.reverse();
    let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}-{}-{hex}", String::from_utf8(ts).expect("ASCII"))
}

/// Runs a job from upload to output folder: its steps in order (one, unless
/// `ipdc.toml` has `[[step]]` tables), each step's parts the next one's
/// input by CID, only the last step's fetched.
pub async fn run(spec: &JobSpec, cluster: &Cluster, opts: &RunOptions) -> Result<(), String> {
    let t0 = Instant::now();
    let steps = spec.steps();
    let of = steps.len();
    let ids: Vec<String> = match of {
        1 => vec![new_job_id(&spec.name)],
        _ => (1..=of).map(|n| new_job_id(&format!("{}-s{n}", spec.name))).collect(),
    };
    let mut keep = vec![spec.folder.as_path()];
    for s in &steps {
        keep.extend([s.map_py.as_path(), s.reduce_py.as_path()]);
        keep.extend(s.side_files.iter().map(|f| f.path.as_path()));
    }
    keep.extend(spec.input_files.iter().map(|f| f.path.as_path()));
    let mut target = Some(output::Target::claim(&spec.out, opts.overwrite, &ids[of - 1], &keep)?);
    // Check the Python files while connecting (an interpreter start is slow).
    // Every step's code, checked before anything runs (so a step is named
    // as itself, not as the step that happened to be running).
    {
        let steps = steps.clone();
        tokio::task::spawn_blocking(move || {
            steps.iter().enumerate().try_for_each(|(i, s)| {
                s.check_python_syntax()
                    .map_err(|e| if of == 1 { e } else { format!("step {} of {of}: {e}", i + 1) })
            })
        })
        .await
        .map_err(|e| format!("syntax check crashed: {e}"))??;
    }
    let mut inputs = None;
    let mut done: Vec<serde_json::Value> = Vec::new();
    for (i, (step, job)) in steps.iter().zip(&ids).enumerate() {
        let last = i + 1 == of;
        let stage = Stage {
            job,
            number: i + 1,
            of,
            t0,
            inputs: inputs.take(),
            io: StepIo { pairs_in: i > 0, pairs_out: !last },
            target: if last { target.take() } else { None },
            earlier: &done,
        };
        let outcome = run_step(step, cluster, opts, stage).await.map_err(|e| match of {
            1 => e,
            _ => format!("step {} of {of}: {e}", i + 1),
        })?;
        if let Some((parts, summary)) = outcome {
            if parts.iter().all(|p| p.bytes == 0) {
                return Err(format!(
                    "step {} of {of} wrote no records, so step {} has nothing to map: no output was written",
                    i + 1,
                    i + 2
                ));
            }
            inputs = Some(
                parts
                    .into_iter()
                    .map(|p| InputObject { cid: p.cid, size: p.bytes, name: p.name, compression: None })
                    .collect(),
            );
            done.push(summary);
        }
    }
    Ok(())
}

/// Where one step stands in its job.
struct Stage<'a> {
    job: &'a str,
    /// 1-based, of `of` steps.
    number: usize,
    of: usize,
    /// When the whole job started.
    t0: Instant,
    /// The parts of the step before (None: the job's own input).
    inputs: Option<Vec<InputObject>>,
    io: StepIo,
    /// The output folder, for the last step.
    target: Option<output::Target>,
    /// The summaries of the steps before.
    earlier: &'a [serde_json::Value],
}

/// Runs one step. A step before the last returns its parts (left in IPFS
/// on the agents' nodes) and its summary; the last writes the output folder.
async fn run_step(
    spec: &JobSpec,
    cluster: &Cluster,
    opts: &RunOptions,
    stage: Stage<'_>,
) -> Result<Option<(Vec<PartEntry>, serde_json::Value)>, String> {
    let t0 = Instant::now();
    let conn = cluster.connection();
    let job = stage.job;
    let local_add = if stage.inputs.is_none() { upload::start_local_add(cluster, spec) } else { None };
    let ipfs = IpfsClient::new(&conn.ipfs).map_err(|e| e.to_string())?;
    let mut session = Session::connect(conn, &format!("ipdc-submit-{job}"), Some(job))?;
    session.connect_and_subscribe(Duration::from_secs(10)).await?;
    session.set_info(JobInfo {
        name: spec.name.clone(),
        by: crate::say::user_at_host(),
        started_ms: now_ms(),
        phase: "starting".into(),
        ..Default::default()
    });
    session.announce_running();
    // This machine's own node: an agent on it needs no swarm peers.
    let own_node = session.pump_until(ipfs.id()).await.ok();
    let picked = pick::pick_agents(&mut session, spec, cluster, opts.wait, own_node).await?;
    if picked.len() < spec.verify.agents_needed() {
        let names: Vec<&str> = picked.iter().map(|s| s.agent.as_str()).collect();
        return Err(format!(
            "verify = {} runs tasks on {} different agents, but only {} agent(s) can run this job ({}): start more agents or lower verify",
            spec.verify,
            spec.verify.agents_needed(),
            picked.len(),
            names.join(", ")
        ));
    }

    // Upload while the MQTT connection stays served.
    let remember = !cluster.is_local(); // a --local store starts empty every time
    let given = stage.inputs;
    let uploaded = session.pump_until(upload::upload(&ipfs, spec, local_add, remember, given)).await.map_err(|e| {
        if cluster.is_local() && !spec.input_cids.is_empty() && e.contains("could not find") {
            format!(
                "{e}\n--local finds a CID only in its kept store, which holds what recent --local runs made \
                 (their results): give the file with --input, or run on the cluster that holds it"
            )
        } else {
            e
        }
    })?;
    let upload_ms = t0.elapsed().as_millis() as u64;
    let input_size = uploaded.input_size();
    for i in &uploaded.inputs {
        info!("input {} is {} ({} bytes)", i.name, i.cid, i.size);
    }

    let slots: usize = picked.iter().map(|s| s.slots.max(1) as usize).sum();
    let map_splits = plan_map_tasks(spec.input_format, &uploaded.inputs, slots);
    if map_splits.len() > MAX_MAP_TASKS {
        return Err(format!(
            "input of {} needs {} map tasks, more than the limit of {MAX_MAP_TASKS} (a reduce assignment lists every map's output): split the input into several jobs",
            human_bytes(input_size),
            map_splits.len()
        ));
    }
    let code = CodeSpec {
        map_cid: uploaded.map_cid.clone(),
        reduce_cid: uploaded.reduce_cid.clone(),
        combiner: spec.combiner,
        force_native: spec.force_native.clone(),
        native_fallback: spec.native_fallback.clone(),
        limits: TaskLimits { wall_secs: Some(spec.task_timeout_secs), memory_mb: Some(spec.task_memory_mb) },
        files: CodeFiles::of(&spec.map_py, &spec.reduce_py),
        params: spec.params.clone(),
        side_files: uploaded.side_files.clone(),
        step_io: stage.io,
    };
    let plan = JobPlan {
        splits: map_splits.clone(),
        reducers: spec.reducers,
        memory_mb: spec.memory_mb,
        accept_timeout_ms: opts.accept_timeout.as_millis() as u64,
        speculative: spec.speculative,
        // The spot check's tasks, drawn here: the agents cannot predict them.
        verify: spec.verify.plan(map_splits.len(), spec.reducers, random_seed()),
        ..JobPlan::defaults(job, code)
    };
    let verifying = match &plan.verify {
        _ if !spec.verify.checks() => String::new(),
        Verification::Every(n) => format!(", each task verified on {n} agents"),
        Verification::Spot { tasks, .. } => format!(", {} task(s) spot-checked on 2 agents", tasks.len()),
    };
    let files = match uploaded.inputs.len() {
        1 => String::new(),
        n => format!(" in {n} files"),
    };
    let step = match stage.of {
        1 => String::new(),
        of => format!("step {} of {of}, ", stage.number),
    };
    crate::say!(
        "job {job}: {step}{} map task(s) over {}{files}, {} reduce task(s), {} agent(s){verifying}",
        map_splits.len(),
        human_bytes(input_size),
        spec.reducers,
        picked.len()
    );
    crate::say::event(
        "started",
        serde_json::json!({
            "job": job,
            "map_tasks": map_splits.len(),
            "reduce_tasks": spec.reducers,
            "input_bytes": input_size,
            "agents": picked.iter().map(|s| s.agent.as_str()).collect::<Vec<_>>(),
        }),
    );
    let agent_slots: Vec<(String, u32)> = picked.iter().map(|s| (s.agent.clone(), s.slots)).collect();
    let mut ctl = Controller::new(plan, &agent_slots);
    // A --local store is this machine's: nothing is anywhere else.
    if !cluster.is_local()
        && let Some(local) = locality::locate(&mut session, &ipfs, job, &map_splits, &picked).await
    {
        if let Some(line) = locality::describe(&local, &map_splits) {
            crate::say!("{line}");
        }
        ctl.set_locality(local);
    }
    let cache = cluster.cache_scope().filter(|_| spec.cache).and_then(TaskCache::open);
    if let Some(cache) = &cache {
        let reused = session.pump_until(reuse::reuse(cache, &ipfs, &mut ctl)).await;
        if reused > 0 {
            let all = map_splits.len() + spec.reducers as usize;
            crate::say!("reusing {reused} of {all} task(s) from the task cache (outputs of an earlier run)");
        }
    }
    let mut view = opts.show_progress.then(ProgressView::new);
    // The last step's parts come here as their tasks finish (--local reads its own store).
    let mut early = match &stage.target {
        Some(t) if !opts.no_fetch && !cluster.is_local() => {
            Some(early::EarlyParts::new(ipfs.clone(), t.temporary_folder().to_path_buf()))
        }
        _ => None,
    };
    let t_map = Instant::now();
    let (outcome, map_ms) =
        drive::drive(&mut session, &mut ctl, &picked, job, view.as_mut(), early.as_mut()).await;
    let early = match early {
        Some(e) => e.finish().await,
        None => early::Fetched::new(),
    };
    if let Some(cache) = &cache {
        reuse::remember(cache, &ctl);
    }
    if let Some(v) = view.as_mut() {
        v.update(ctl.progress());
        v.finish();
    }
    // Tell the agents the job is over, done or not: they drop what is left of it.
    session.end_job(picked.iter().map(|s| s.agent.as_str()));
    let reduce_ms = (t_map.elapsed().as_millis() as u64).saturating_sub(map_ms);
    if let Err((message, detail)) = outcome {
        session.disconnect().await;
        if message.starts_with("cancelled by ") {
            return Err(format!("job {job} {message}\nno output was written"));
        }
        let mut msg = format!("job {job} failed: {message}");
        if !detail.trim().is_empty() {
            msg += &format!("\n--- detail from the agent ---\n{}", detail.trim_end());
        }
        msg += "\nno output was written";
        return Err(msg);
    }

    let parts = ctl.part_cids();
    let prefix = if spec.reducers == 0 { "part-m-" } else { "part-" };
    let entries: Vec<PartEntry> = parts
        .iter()
        .enumerate()
        .map(|(i, (cid, bytes))| PartEntry {
            name: output::part_name(prefix, i),
            cid: cid.clone(),
            bytes: *bytes,
        })
        .collect();
    let input = InputFacts { inputs: &uploaded.inputs };
    let mut summary = Summary::new(
        job,
        input,
        spec,
        &picked,
        ctl.records(),
        ctl.speculated(),
        ctl.disagreements().to_vec(),
    );
    summary.times_ms = Times { upload: upload_ms, map: map_ms, reduce: reduce_ms, total: 0 };
    summary.attempts = ctl.attempts(ipdc_common::protocol::now_ms());
    summary.parts = entries.clone();
    let Some(target) = stage.target else {
        // A step before the last: its parts stay on the agents' nodes for
        // the next step; nothing of them passes through this machine.
        session.disconnect().await;
        summary.times_ms.total = t0.elapsed().as_millis() as u64;
        summary.fetched = false;
        crate::say!(
            "job {job} (step {} of {}) done in {:.1} s: {} map + {} reduce task(s){}; {} records for the next step",
            stage.number,
            stage.of,
            t0.elapsed().as_millis() as f64 / 1000.0,
            summary.map_tasks,
            summary.reduce_tasks,
            from_cache(summary.cached_tasks),
            summary.output_records(spec),
        );
        return Ok(Some((entries, serde_json::to_value(&summary).expect("a summary serializes"))));
    };
    // --local keeps results in its bounded store, unpinned: collected oldest first.
    let published = session.pump_until(publish::publish(&ipfs, &entries, !cluster.is_local())).await;
    if let (Err(e), true) = (&published, opts.no_fetch) {
        session.disconnect().await;
        return Err(format!(
            "could not make the output directory in IPFS: {e}\n{}",
            parts_still_in_ipfs(&entries)
        ));
    }
    summary.times_ms.total = stage.t0.elapsed().as_millis() as u64;
    summary.steps = stage.earlier.to_vec();
    match published {
        Ok(cid) => summary.output_cid = Some(cid),
        Err(e) => summary
            .warnings
            .push(format!("the output directory could not be made in IPFS ({e}): no output_cid")),
    }
    summary.fetched = !opts.no_fetch;
    let summary_json = serde_json::to_value(&summary).expect("a summary serializes");
    let logs: Vec<(String, String)> =
        summary.tasks.iter().filter_map(|r| Some((r.task.clone(), r.log_cid.clone()?))).collect();
    let files = output::Parts { cids: &parts, prefix, logs: &logs, fetch: !opts.no_fetch, early: &early };
    let written = session.pump_until(target.write(&ipfs, &files, &summary_json)).await;
    session.disconnect().await;
    if let Err(e) = written {
        if cluster.is_local() {
            return Err(e); // its store goes with this process
        }
        return Err(match &summary.output_cid {
            Some(cid) => format!(
                "{e}\nthe result is in IPFS, pinned on this machine's node, as {cid} (`ipfs ls {cid}`)"
            ),
            None => format!("{e}\n{}", parts_still_in_ipfs(&entries)),
        });
    }
    crate::say!(
        "job {job} done in {:.1} s: {} map + {} reduce task(s){} on {} agent(s); {} input records -> {} output records",
        stage.t0.elapsed().as_millis() as f64 / 1000.0,
        summary.map_tasks,
        summary.reduce_tasks,
        from_cache(summary.cached_tasks),
        picked.len(),
        summary.counters.map_input_records,
        summary.output_records(spec),
    );
    for line in summary.verification_lines() {
        crate::say!("{line}");
    }
    for (name, n) in &summary.user_counters {
        crate::say!("counter {name}: {n}");
    }
    for w in &summary.warnings {
        crate::say!("warning: {w}");
    }
    crate::say!("output: {}", spec.out.display());
    if let Some(cid) = &summary.output_cid {
        crate::say!("output CID: {cid}");
    }
    crate::say::event(
        "done",
        serde_json::json!({
            "job": job,
            "output": spec.out,
            "output_cid": summary.output_cid,
            "summary": summary_json,
        }),
    );
    Ok(None)
}

/// How many of the tasks came from the task cache, for the job's last line.
fn from_cache(cached: usize) -> String {
    match cached {
        0 => String::new(),
        n => format!(" ({n} from the task cache)"),
    }
}

/// Where a result's parts may still be found when they could not be
/// written or pinned.
fn parts_still_in_ipfs(parts: &[PartEntry]) -> String {
    let listed: Vec<String> = parts.iter().map(|p| format!("{} {}", p.name, p.cid)).collect();
    format!(
        "the result's parts were added to IPFS unpinned by the agents that made them and may still be \
         there (fetch them with `ipfs cat CID` soon: garbage collection removes them): {}",
        listed.join(", ")
    )
}

/// The map tasks of a job: byte ranges of its files (a compressed one whole),
/// or for a per-file job runs of whole files, for the picked agents' slots.
fn plan_map_tasks(format: InputFormat, inputs: &[InputObject], slots: usize) -> Vec<MapSplit> {
    let sizes: Vec<u64> = inputs.iter().map(|i| i.size).collect();
    if format == InputFormat::Files {
        return plan_file_groups(&sizes, slots, MAX_MAP_TASKS, MAX_FILES_PER_TASK)
            .into_iter()
            .map(|group| MapSplit {
                files: inputs[group]
                    .iter()
                    .map(|i| InputFile { name: i.name.clone(), cid: i.cid.clone(), size: i.size })
                    .collect(),
                ..MapSplit::default()
            })
            .collect();
    }
    let whole: Vec<bool> = inputs.iter().map(|i| i.compression.is_some()).collect();
    plan_file_splits(&sizes, &whole, slots, MAX_MAP_TASKS)
        .into_iter()
        .map(|(f, s)| {
            let input = &inputs[f];
            MapSplit {
                input_cid: input.cid.clone(),
                input_size: input.size,
                name: input.name.clone(),
                compression: input.compression,
                start: s.start,
                end: s.end,
                files: Vec::new(),
            }
        })
        .collect()
}

/// 64 bits from the OS's random source.
fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS has a random source");
    u64::from_le_bytes(b)
}

/// The splits of one input file for the picked agents' slots: per slot,
/// not per agent, as a board runs one task per core at once. Only the
/// input's size (not a huge cluster, or an agent announcing absurd slots)
/// can need more than [`MAX_MAP_TASKS`] splits.
#[cfg(test)]
fn splits_for(input_size: u64, slots: impl Iterator<Item = u32>) -> Vec<Split> {
    let slots: usize = slots.map(|s| s.max(1) as usize).sum();
    plan_file_splits(&[input_size], &[false], slots, MAX_MAP_TASKS).into_iter().map(|(_, s)| s).collect()
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_have_the_shape_agents_recognise() {
        for name in ["wordcount", "a", "my-job_2"] {
            let id = new_job_id(name);
            assert!(ipdc_common::protocol::looks_like_job_id(&id), "{id}");
        }
    }

    #[test]
    fn splits_follow_the_slots_and_only_the_input_size_can_pass_the_task_limit() {
        const MIB: u64 = 1 << 20;
        // Two splits per slot: agents of 2 and 3 slots, 400 MiB.
        assert_eq!(splits_for(400 * MIB, [2, 3].into_iter()).len(), 10);
        // A slot count of 0 counts as 1.
        assert_eq!(splits_for(400 * MIB, [0, 0].into_iter()).len(), 4);
        // A huge cluster (80 agents of 64 cores) or an absurd slot count stays
        // within the limit on 20 GiB ...
        let big = 20 << 30;
        // (one 4 MiB split per slot: every slot gets one, as 5,120 are within
        // the limit; so do 6,000 slots on 60 GiB, and 20,000 on 600 GiB get
        // the limit, two per slot being past it)
        assert_eq!(splits_for(big, std::iter::repeat_n(64, 80)).len(), 5_120);
        assert_eq!(splits_for(60 << 30, std::iter::repeat_n(1, 6_000)).len(), 6_000);
        assert_eq!(splits_for(600 << 30, std::iter::repeat_n(1, 20_000)).len(), MAX_MAP_TASKS);
        assert!(splits_for(big, [u32::MAX, u32::MAX].into_iter()).len() <= MAX_MAP_TASKS);
        // ... and only an input over MAX_MAP_TASKS * 128 MiB needs more.
        assert!(splits_for(2 << 40, [1].into_iter()).len() > MAX_MAP_TASKS);
    }

    #[test]
    fn job_ids_differ_and_are_topic_safe() {
        let a = new_job_id("wordcount");
        let b = new_job_id("wordcount");
        assert_ne!(a, b);
        ipdc_common::protocol::validate_name("job", &a).unwrap();
        assert!(a.starts_with("wordcount-"));
    }

    #[test]
    fn bytes_read_like_a_human_would() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
    }
}
