//! The job controller as a pure state machine: task states, assignment to
//! agent slots, acknowledgements and re-sends, retries, speculative backup
//! attempts, lost agents and lost map outputs, and the map→reduce phase
//! change. It takes events, agents' statuses and the current time and
//! returns actions; it does no I/O and reads no clock, so unit tests drive
//! every race directly. `run.rs` does the I/O.
//!
//! Invariants:
//! - a task is Done once, when `need` results from different agents agree
//!   on its output CIDs (`need` is 1 without verification: the first
//!   successful attempt); every other attempt of it is then cancelled and
//!   its late results are ignored (a map whose output a reducer could not
//!   fetch is no longer Done and runs again, verified again);
//! - one agent, one vote: a task never runs on an agent that returned a
//!   result for it or is running it, and a second result of the same agent
//!   counts for nothing; an agent whose result was outvoted gets no more of
//!   the job's tasks and its results stop counting (see `verify.rs`);
//! - only events naming a running attempt (task, attempt, agent) change it,
//!   so duplicated and stale events (QoS 1 delivers twice) are ignored; the
//!   one exception is the result of an attempt dropped because its agent
//!   looked lost, which still counts while its task has none;
//! - reducers are assigned only while every map is Done, with the map outputs
//!   as they are at that moment, the agreed ones when verified (a map re-run
//!   after a lost output may change its CIDs; results of a reduce computed
//!   from other inputs never agree with, nor outvote, those of the current);
//! - only the job's agents (those given to [`Controller::new`]) get its
//!   tasks; events and statuses of any other agent change nothing;
//! - a failure counts towards `max_attempts` only when it may be the task's
//!   fault: attempts given up with a lost, silent or forgetful agent, a
//!   reducer's lost inputs, and up to `max_attempts` failures of an agent's
//!   own IPFS node do not count, and a backup never takes a task past it; a
//!   backup is not a verification attempt: it races a straggler for its
//!   vote (on an agent with no result or attempt of the task), never adds a
//!   vote needed, and stays within the task's bound of results;
//! - the liveness rule lives here, in `liveness.rs`: an agent is lost or
//!   back only by [`Controller::on_agent_status`] (the driver gives it every
//!   picked agent's latest status on each tick) or by a failure that says
//!   its IPFS node is down; with no agent able to work (with verification:
//!   fewer than a task needs), the job waits [`AGENTS_BACK_MS`] for them to
//!   come back, then fails; a task that can no longer get its agreeing
//!   results (more than `need + EXTRA_RESULTS` results, or too few agents
//!   left that have not returned one) fails the job at once.
//!
//! Layout: this file has the types the driver sees and the controller's
//! state; `task.rs` the task table, `events.rs` the agents' reports about
//! attempts, `liveness.rs` the job's agents (lost, back), `timers.rs` what
//! time passing does, `schedule.rs` which agent gets which task,
//! `verify.rs` results as votes, `cached.rs` results from the task cache,
//! `parts.rs` the parts as this machine fetches them, `timeline.rs`
//! every attempt as it ran, `tests.rs` the unit
//! tests.

mod cached;
mod events;
mod liveness;
mod parts;
mod schedule;
mod task;
mod timeline;
mod timers;
mod verify;

use std::collections::BTreeMap;

use ipdc_common::exec::ExecStats;
use ipdc_common::protocol::{CodeSpec, Compression, InputFile, Task, TaskKind};

use liveness::AgentSlots;
pub use parts::PartRef;
pub use schedule::LOCALITY_WAIT_MS;
use task::{TaskEntry, Tasks};
pub use timeline::{AttemptRecord, Outcome};
pub use verify::{Disagreement, EXTRA_RESULTS, Verification, VoteRecord, spot_check};

/// How a job runs, fixed before it starts.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub job: String,
    /// One map task per split.
    pub splits: Vec<MapSplit>,
    pub reducers: u32,
    pub code: CodeSpec,
    pub memory_mb: u64,
    /// Failed attempts per task before the job fails (Hadoop's default is 4).
    pub max_attempts: u32,
    /// An assignment not acknowledged within this long goes to another agent.
    pub accept_timeout_ms: u64,
    /// Unacknowledged assignments are sent again this often.
    pub resend_ms: u64,
    /// Agents silent about a running attempt this long are asked where it stands.
    pub query_ms: u64,
    /// Run backup attempts of stragglers when slots are idle.
    pub speculative: bool,
    /// Agreeing results from different agents each task needs.
    pub verify: Verification,
}

/// One map task's input: a byte range of one input file, or (a per-file
/// job's task) whole files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MapSplit {
    pub input_cid: String,
    /// The whole file's length.
    pub input_size: u64,
    /// The file's name as the job's code sees it.
    pub name: String,
    /// Compressed (then the split is the whole file).
    pub compression: Option<Compression>,
    pub start: u64,
    pub end: u64,
    /// A per-file job's task: these whole files (the fields above unused).
    pub files: Vec<InputFile>,
}

impl JobPlan {
    /// A plan with the usual timings.
    pub fn defaults(job: &str, code: CodeSpec) -> JobPlan {
        JobPlan {
            job: job.to_string(),
            splits: Vec::new(),
            reducers: 1,
            code,
            memory_mb: 64,
            max_attempts: 4,
            accept_timeout_ms: 15_000,
            resend_ms: 3_000,
            query_ms: 10_000,
            speculative: true,
            verify: Verification::Every(1),
        }
    }
}

/// With every agent of the job offline (a broker restart takes them all
/// at once), how long the job waits for one to come back before it fails.
pub const AGENTS_BACK_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Map,
    Reduce,
    Done,
    Failed,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // short-lived; boxing buys nothing
pub enum Action {
    /// Send this assignment (again, when its attempt was sent before).
    Assign {
        agent: String,
        task: Task,
    },
    Cancel {
        agent: String,
        task: String,
        attempt: u32,
    },
    /// Ask the agent to re-send where the job's attempts stand.
    Query {
        agent: String,
    },
    /// Tell the user (an attempt failed or went elsewhere; the job goes on).
    Warn {
        message: String,
    },
    /// Every reducer is done: fetch the parts.
    Finished,
    /// The job cannot finish; the message says what failed and where.
    Failed {
        message: String,
        detail: String,
    },
}

/// One finished task, for the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskRecord {
    pub task: String,
    pub agent: String,
    pub attempt: u32,
    /// Attempts started for this task (more than 1: retries or a backup).
    pub attempts: u32,
    /// The winning attempt was a speculative backup.
    pub speculative: bool,
    /// The agents whose results agreed on the output, the one above first
    /// (more than one: the result was verified).
    pub agreed_by: Vec<String>,
    pub executor: ipdc_common::protocol::Executor,
    pub elapsed_ms: u64,
    pub bytes_read: u64,
    /// Of a map's bytes read, those its agent's node held when the job
    /// started, and the rest, fetched over the swarm (absent: not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_bytes: Option<u64>,
    pub output_bytes: u64,
    pub spills: u32,
    pub stats: ExecStats,
    /// What the winning attempt's code printed, in IPFS (`_logs/TASK.log`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_cid: Option<String>,
    /// Taken from the task cache: an earlier job's output, not run again
    /// (its agent, attempt and times are that job's).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

pub struct Controller {
    plan: JobPlan,
    phase: Phase,
    tasks: Tasks,
    agents: BTreeMap<String, AgentSlots>,
    /// Agents in the order they were ranked (best first), for tie-breaks.
    rank: Vec<String>,
    /// Backup attempts started, for the summary.
    speculated: u32,
    /// Since when too few of the job's agents can work (none; or, with
    /// verification, fewer than a task needs).
    short_since: Option<u64>,
    /// Tasks whose agents returned different results.
    disagreements: Vec<Disagreement>,
    /// Done only once every part is fetched (`parts.rs`).
    holds_parts: bool,
    /// The parts fetched so far.
    fetched: Vec<PartRef>,
    /// Per agent, the bytes of each split its node held when the job
    /// started (empty: not known); maps go where their bytes are.
    local: LocalBytes,
    /// When a map last went to a node holding its bytes (or the job
    /// started): maps wait for such a node until [`LOCALITY_WAIT_MS`] after.
    local_launch_ms: u64,
    /// Every attempt as it ran.
    timeline: timeline::Timeline,
}

/// The bytes of each split (by index) each agent's node holds.
pub type LocalBytes = BTreeMap<String, Vec<u64>>;

type Actions = Vec<Action>;

impl Controller {
    /// `agents`: the picked agents, best first, with their slot counts.
    pub fn new(plan: JobPlan, agents: &[(String, u32)]) -> Self {
        let maps = plan
            .splits
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let kind = if s.files.is_empty() {
                    TaskKind::Map {
                        input_cid: s.input_cid.clone(),
                        input_size: s.input_size,
                        split: i as u32,
                        start: s.start,
                        end: s.end,
                        name: s.name.clone(),
                        compression: s.compression,
                    }
                } else {
                    TaskKind::MapFiles { split: i as u32, files: s.files.clone() }
                };
                let id = verify::map_id(i);
                let need = plan.verify.votes(&id);
                TaskEntry::new(id, kind, need)
            })
            .collect();
        let reduces = (0..plan.reducers)
            .map(|p| {
                let id = verify::reduce_id(p);
                let need = plan.verify.votes(&id);
                TaskEntry::new(id, TaskKind::Reduce { partition: p, inputs: Vec::new() }, need)
            })
            .collect();
        Controller {
            phase: Phase::Map,
            tasks: Tasks { maps, reduces },
            agents: agents
                .iter()
                .map(|(a, s)| {
                    (
                        a.clone(),
                        AgentSlots {
                            slots: (*s).max(1),
                            running: 0,
                            lost: false,
                            silent: false,
                            outvoted: false,
                            failures: 0,
                            mem_available_mb: None,
                            node: None,
                        },
                    )
                })
                .collect(),
            rank: agents.iter().map(|(a, _)| a.clone()).collect(),
            speculated: 0,
            short_since: None,
            disagreements: Vec::new(),
            holds_parts: false,
            fetched: Vec::new(),
            local: LocalBytes::new(),
            local_launch_ms: 0,
            timeline: Default::default(),
            plan,
        }
    }

    /// Where the splits' bytes already are (see `run/locality.rs`): a map
    /// goes first to an agent whose node holds most of its split, and waits
    /// a little for a slot there (see `schedule.rs`).
    pub fn set_locality(&mut self, local: LocalBytes) {
        self.local = local;
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Backup attempts started so far.
    pub fn speculated(&self) -> u32 {
        self.speculated
    }

    /// First assignments.
    pub fn start(&mut self, now_ms: u64) -> Actions {
        let mut actions = Vec::new();
        if self.verifying() {
            // Too few agents for the verification asked for: fail now.
            self.check_verifiable(&mut actions);
            if self.over() {
                return actions;
            }
        }
        self.local_launch_ms = now_ms;
        self.update_phase(&mut actions);
        self.schedule(now_ms, &mut actions);
        actions
    }

    /// Part CIDs in partition order (a map-only job's: in split order),
    /// once the job is Done.
    pub fn part_cids(&self) -> Vec<(String, u64)> {
        self.part_tasks()
            .iter()
            .filter_map(|t| {
                let d = t.done.as_ref()?;
                Some((
                    d.output.cids.first().cloned().unwrap_or_default(),
                    d.output.sizes.first().copied().unwrap_or(0),
                ))
            })
            .collect()
    }

    pub fn progress(&self) -> Progress {
        let done = |ts: &[TaskEntry]| ts.iter().filter(|t| t.done.is_some()).count();
        let Tasks { maps, reduces } = &self.tasks;
        // A running map counts what its furthest attempt has read (within
        // its split: a compressed input's reader counts decompressed bytes).
        let (mut bytes_read, mut lines, mut input_bytes) = (0, 0, 0);
        for t in maps {
            let size = match &t.kind {
                TaskKind::Map { start, end, .. } => end - start,
                TaskKind::MapFiles { files, .. } => files.iter().map(|f| f.size).sum(),
                TaskKind::Reduce { .. } => 0,
            };
            input_bytes += size;
            match &t.done {
                Some(d) => {
                    bytes_read += d.output.bytes_read.min(size);
                    lines += d.output.stats.input_records;
                }
                None => {
                    let (b, l) = t.running.iter().map(|a| a.read).max().unwrap_or_default();
                    bytes_read += b.min(size);
                    lines += l;
                }
            }
        }
        Progress {
            maps_done: done(maps),
            maps: maps.len(),
            reduces_done: done(reduces),
            reduces: reduces.len(),
            bytes_read,
            lines,
            input_bytes,
        }
    }

    /// Every attempt started, maps first, as of `now_ms`.
    pub fn attempts(&mut self, now_ms: u64) -> Vec<AttemptRecord> {
        self.timeline.sync(&self.tasks, now_ms);
        self.timeline.records()
    }

    /// Every finished task, maps then reduces.
    pub fn records(&self) -> Vec<TaskRecord> {
        let maps = self.tasks.maps.len();
        self.tasks
            .all()
            .enumerate()
            .filter_map(|(i, t)| {
                let d = t.done.as_ref()?;
                let local = (i < maps && !d.cached && !self.local.is_empty())
                    .then(|| self.local_bytes(&d.agent, i).min(d.output.bytes_read));
                Some(TaskRecord {
                    task: t.id.clone(),
                    agent: d.agent.clone(),
                    attempt: d.attempt,
                    attempts: t.attempts_made,
                    speculative: d.speculative,
                    agreed_by: d.agreed_by.clone(),
                    executor: d.output.executor.clone(),
                    elapsed_ms: d.output.elapsed_ms,
                    bytes_read: d.output.bytes_read,
                    local_bytes: local,
                    remote_bytes: local.map(|l| d.output.bytes_read - l),
                    output_bytes: d.output.sizes.iter().sum(),
                    spills: d.output.spills,
                    stats: d.output.stats.clone(),
                    log_cid: d.output.log_cid.clone(),
                    cached: d.cached,
                })
            })
            .collect()
    }

    fn over(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Failed)
    }

    fn fail(&mut self, message: String, detail: String) -> Actions {
        self.phase = Phase::Failed;
        vec![Action::Failed { message, detail }]
    }

    fn update_phase(&mut self, actions: &mut Actions) {
        if self.over() {
            return;
        }
        let all_done = |ts: &[TaskEntry]| ts.iter().all(|t| t.done.is_some());
        if !all_done(&self.tasks.maps) {
            self.phase = Phase::Map;
        } else if all_done(&self.tasks.reduces) && self.parts_held() {
            self.phase = Phase::Done;
            actions.push(Action::Finished);
        } else {
            self.phase = Phase::Reduce;
        }
    }
}

/// Counts for the progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub maps_done: usize,
    pub maps: usize,
    pub reduces_done: usize,
    pub reduces: usize,
    /// Map input read so far, running attempts' included.
    pub bytes_read: u64,
    /// Lines the maps read so far.
    pub lines: u64,
    /// The maps' whole input.
    pub input_bytes: u64,
}

#[cfg(test)]
mod tests;
