//! The job controller as a pure state machine: task states, assignment to
//! agent slots, acknowledgements and re-sends, retries, speculative backup
//! attempts, lost agents and lost map outputs, and the map→reduce phase
//! change. It takes events and the current time and returns actions; it does
//! no I/O and reads no clock, so unit tests drive every race directly.
//! `run.rs` does the I/O.
//!
//! Invariants:
//! - a task is Done once, with the first successful attempt; every other
//!   attempt of it is then cancelled and its late results are ignored;
//! - only events naming a running attempt (task, attempt, agent) change it,
//!   so duplicated and stale events (QoS 1 delivers twice) are ignored;
//! - reducers are assigned only while every map is Done, with the map outputs
//!   as they are at that moment (a map re-run after a lost output may change
//!   its CIDs).

use std::collections::{BTreeMap, BTreeSet};

use ipdc_common::exec::ExecStats;
use ipdc_common::protocol::{CodeSpec, EventKind, Task, TaskEvent, TaskKind, TaskOutput};

/// How a job runs, fixed before it starts.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub job: String,
    pub input_cid: String,
    pub input_size: u64,
    pub splits: Vec<(u64, u64)>,
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
}

impl JobPlan {
    /// A plan with the usual timings.
    pub fn defaults(job: &str, code: CodeSpec) -> JobPlan {
        JobPlan {
            job: job.to_string(),
            input_cid: String::new(),
            input_size: 0,
            splits: Vec::new(),
            reducers: 1,
            code,
            memory_mb: 64,
            max_attempts: 4,
            accept_timeout_ms: 15_000,
            resend_ms: 3_000,
            query_ms: 10_000,
            speculative: true,
        }
    }
}

/// Unanswered queries after which an accepted attempt is taken as forgotten.
const QUERY_LIMIT: u32 = 3;
/// Failed attempts on one agent after which it gets no more of this job's tasks.
const AGENT_FAILURE_LIMIT: u32 = 3;
/// With every agent of the job offline (a broker restart takes them all
/// at once), how long the job waits for one to come back before it fails.
pub const AGENTS_BACK_MS: u64 = 60_000;
/// A straggler runs this many times longer than its finished siblings' median...
const SPECULATE_FACTOR: u64 = 2;
/// ...and at least this long, before a backup attempt starts.
const SPECULATE_MIN_MS: u64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Map,
    Reduce,
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
struct Attempt {
    agent: String,
    attempt: u32,
    since_ms: u64,
    accepted: bool,
    last_sent_ms: u64,
    last_query_ms: u64,
    /// Queries about this attempt that got no answer; at the limit the agent
    /// has forgotten it (e.g. it restarted) and the task runs again.
    unanswered: u32,
    speculative: bool,
    task: Task,
}

#[derive(Debug, Clone, PartialEq)]
struct Done {
    agent: String,
    attempt: u32,
    speculative: bool,
    elapsed_ms: u64,
    output: TaskOutput,
}

#[derive(Debug, Clone)]
struct TaskEntry {
    id: String,
    /// For maps: the map kind. Reduces build theirs at assignment.
    kind: TaskKind,
    attempts_made: u32,
    failures: u32,
    running: Vec<Attempt>,
    done: Option<Done>,
    /// Agents on which an attempt failed; tried last.
    failed_on: Vec<String>,
    /// Attempts given up on because their agent looked lost: one that
    /// finishes after all still counts while the task has no result.
    dropped: Vec<Attempt>,
    /// The error of the last failed attempt, to tell the user once, not
    /// once per attempt, when every attempt fails the same way.
    last_error: Option<String>,
    /// Attempts that failed because their agent's own IPFS node was down.
    /// Up to `max_attempts` are not counted as failures; past that they are
    /// (a task that keeps taking nodes down must not run forever).
    node_downs: u32,
}

impl TaskEntry {
    fn new(id: String, kind: TaskKind) -> Self {
        TaskEntry {
            id,
            kind,
            attempts_made: 0,
            failures: 0,
            running: Vec::new(),
            done: None,
            failed_on: Vec::new(),
            dropped: Vec::new(),
            last_error: None,
            node_downs: 0,
        }
    }
    fn pending(&self) -> bool {
        self.done.is_none() && self.running.is_empty()
    }
}

#[derive(Debug, Clone)]
struct AgentSlots {
    slots: u32,
    running: u32,
    /// Offline (its Last Will, or its heartbeats stopped); it may come back.
    lost: bool,
    /// Online but never acknowledged its assignments: no more of this job.
    silent: bool,
    failures: u32,
}

impl AgentSlots {
    fn usable(&self) -> bool {
        !self.lost && !self.silent
    }
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
    pub executor: ipdc_common::protocol::Executor,
    pub elapsed_ms: u64,
    pub bytes_read: u64,
    pub output_bytes: u64,
    pub spills: u32,
    pub stats: ExecStats,
}

pub struct Controller {
    plan: JobPlan,
    phase: Phase,
    maps: Vec<TaskEntry>,
    reduces: Vec<TaskEntry>,
    agents: BTreeMap<String, AgentSlots>,
    /// Agents in the order they were ranked (best first), for tie-breaks.
    rank: Vec<String>,
    /// Backup attempts started, for the summary.
    speculated: u32,
    /// Since when every agent of the job has been offline.
    all_lost_since: Option<u64>,
}

type Actions = Vec<Action>;

impl Controller {
    /// `agents`: the picked agents, best first, with their slot counts.
    pub fn new(plan: JobPlan, agents: &[(String, u32)]) -> Self {
        let maps = plan
            .splits
            .iter()
            .enumerate()
            .map(|(i, &(start, end))| {
                let kind = TaskKind::Map {
                    input_cid: plan.input_cid.clone(),
                    input_size: plan.input_size,
                    split: i as u32,
                    start,
                    end,
                };
                TaskEntry::new(format!("m-{i:05}"), kind)
            })
            .collect();
        let reduces = (0..plan.reducers)
            .map(|p| {
                TaskEntry::new(format!("r-{p:05}"), TaskKind::Reduce { partition: p, inputs: Vec::new() })
            })
            .collect();
        Controller {
            phase: Phase::Map,
            maps,
            reduces,
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
                            failures: 0,
                        },
                    )
                })
                .collect(),
            rank: agents.iter().map(|(a, _)| a.clone()).collect(),
            speculated: 0,
            all_lost_since: None,
            plan,
        }
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
        self.update_phase(&mut actions);
        self.schedule(now_ms, &mut actions);
        actions
    }

    /// Handles an agent's report about a task attempt.
    pub fn on_event(&mut self, ev: &TaskEvent, now_ms: u64) -> Actions {
        let mut actions = Vec::new();
        if ev.job != self.plan.job || self.over() {
            return actions;
        }
        let Some((is_map, idx)) = self.find(&ev.task) else { return actions };
        let entry = if is_map { &mut self.maps[idx] } else { &mut self.reduces[idx] };
        let same = |a: &Attempt| a.attempt == ev.attempt && a.agent == ev.agent;
        let pos = match entry.running.iter().position(same) {
            Some(pos) => pos,
            None => {
                // A late or duplicated report, ignored, unless it is the
                // result of an attempt given up on (its agent looked lost,
                // e.g. through a broker restart) and the task still needs one.
                let late_result = matches!(ev.kind, EventKind::Done { .. }) && entry.done.is_none();
                let Some(d) = entry.dropped.iter().position(same).filter(|_| late_result) else {
                    return actions;
                };
                let attempt = entry.dropped.remove(d);
                if let Some(a) = self.agents.get_mut(&attempt.agent) {
                    a.running += 1; // released again below, with the result
                }
                entry.running.push(attempt);
                entry.running.len() - 1
            }
        };
        let node_down_excused = matches!(ev.kind, EventKind::Failed { node_down: true, .. }) && {
            entry.node_downs += 1;
            entry.node_downs <= self.plan.max_attempts
        };
        match &ev.kind {
            EventKind::Accepted => {
                entry.running[pos].accepted = true;
                entry.running[pos].unanswered = 0;
            }
            EventKind::Done { output } => {
                let won = entry.running.remove(pos);
                entry.done = Some(Done {
                    agent: won.agent.clone(),
                    attempt: won.attempt,
                    speculative: won.speculative,
                    elapsed_ms: now_ms.saturating_sub(won.since_ms),
                    output: output.clone(),
                });
                // The first result wins; the others are cancelled.
                let losers: Vec<Attempt> = entry.running.drain(..).collect();
                let id = entry.id.clone();
                self.release(&won.agent);
                for l in losers {
                    self.release(&l.agent);
                    actions.push(Action::Cancel { agent: l.agent, task: id.clone(), attempt: l.attempt });
                }
            }
            EventKind::Failed { error, .. } if node_down_excused => {
                // Not the task's fault: the agent's own IPFS node is down.
                let usable = self.agents.get(&ev.agent).is_some_and(|a| a.usable());
                if usable {
                    return self.on_agent_lost(
                        &ev.agent,
                        &format!("cannot use its IPFS node ({error})"),
                        now_ms,
                    );
                }
                let dropped = entry.running.remove(pos);
                entry.dropped.push(dropped.clone());
                self.release(&dropped.agent);
            }
            EventKind::Failed { error, detail, lost_inputs, .. } => {
                let failed = entry.running.remove(pos);
                let agent = failed.agent.clone();
                self.release(&agent);
                if !is_map && !lost_inputs.is_empty() {
                    // Not the reducer's fault: the maps whose outputs are gone run again.
                    self.rerun_maps_of(lost_inputs);
                } else {
                    let entry = if is_map { &mut self.maps[idx] } else { &mut self.reduces[idx] };
                    entry.failures += 1;
                    entry.failed_on.push(agent.clone());
                    let repeated = entry.last_error.as_ref() == Some(error);
                    entry.last_error = Some(error.clone());
                    let (id, failures, still_running) =
                        (entry.id.clone(), entry.failures, !entry.running.is_empty());
                    if let Some(a) = self.agents.get_mut(&agent) {
                        a.failures += 1;
                    }
                    if failures >= self.plan.max_attempts && !still_running {
                        return self.fail(
                            format!("task {id} failed {failures} times; last on agent {agent}: {error}"),
                            detail.clone(),
                        );
                    }
                    if !repeated {
                        let max = self.plan.max_attempts;
                        actions.push(Action::Warn {
                            message: format!(
                                "task {id} attempt {} failed on agent {agent} (the job fails after {max} failures): {error}",
                                failed.attempt
                            ),
                        });
                    }
                }
            }
        }
        self.update_phase(&mut actions);
        if !self.over() {
            self.schedule(now_ms, &mut actions);
        }
        actions
    }

    /// An agent went offline (or cannot work: `why` says what happened, for
    /// the user): its running attempts are dropped (not counted as failures)
    /// and their tasks go to the others.
    pub fn on_agent_lost(&mut self, agent: &str, why: &str, now_ms: u64) -> Actions {
        let mut actions = Vec::new();
        if self.over() {
            return actions;
        }
        let Some(slots) = self.agents.get_mut(agent) else { return actions };
        if !slots.usable() {
            return actions;
        }
        slots.lost = true;
        let dropped = self.drop_attempts_of(agent);
        if !dropped.is_empty() {
            let (noun, failure) =
                if dropped.len() == 1 { ("task", "a failure") } else { ("tasks", "failures") };
            actions.push(Action::Warn {
                message: format!(
                    "agent {agent} {why}; its running {noun} {} will run again (not counted as {failure})",
                    dropped.join(", ")
                ),
            });
        }
        self.wait_if_none_usable(now_ms, &mut actions);
        self.schedule(now_ms, &mut actions);
        actions
    }

    /// Forgets the running attempts of `agent` (their tasks go elsewhere);
    /// returns the names of the tasks that now have no running attempt.
    fn drop_attempts_of(&mut self, agent: &str) -> Vec<String> {
        if let Some(slots) = self.agents.get_mut(agent) {
            slots.running = 0;
        }
        let mut names = Vec::new();
        for t in self.maps.iter_mut().chain(self.reduces.iter_mut()) {
            let (gone, kept): (Vec<Attempt>, Vec<Attempt>) =
                t.running.drain(..).partition(|a| a.agent == agent);
            t.running = kept;
            // Named when it will run again: not when done, or when another
            // attempt (a backup) still runs.
            if !gone.is_empty() && t.running.is_empty() && t.done.is_none() {
                names.push(t.id.clone());
            }
            t.dropped.extend(gone);
        }
        names
    }

    /// With no usable agent left, starts waiting for an offline one to come back.
    fn wait_if_none_usable(&mut self, now_ms: u64, actions: &mut Actions) {
        if self.usable_agents() == 0 && self.all_lost_since.is_none() {
            self.all_lost_since = Some(now_ms);
            actions.push(Action::Warn {
                message: format!(
                    "no agent of this job can work now (offline, or its IPFS node does not answer); waiting up to {} s for one to come back",
                    AGENTS_BACK_MS / 1000
                ),
            });
        }
    }

    /// The submitter's own connection to the broker is back after an
    /// outage, during which it heard nothing (ticks were skipped): what the
    /// agents did not acknowledge or answer meanwhile is not their fault, so
    /// the clocks of those waits start again.
    pub fn on_reconnect(&mut self, now_ms: u64) {
        for t in self.maps.iter_mut().chain(self.reduces.iter_mut()) {
            for a in t.running.iter_mut() {
                if !a.accepted {
                    a.since_ms = now_ms;
                    a.last_sent_ms = 0; // sent again at the next tick
                }
                a.last_query_ms = now_ms;
                a.unanswered = 0;
            }
        }
        if self.all_lost_since.is_some() {
            self.all_lost_since = Some(now_ms);
        }
    }

    /// Whether `agent` is one of the job's agents and went offline.
    pub fn is_lost(&self, agent: &str) -> bool {
        self.agents.get(agent).is_some_and(|a| a.lost)
    }

    /// An agent that went offline is back (its broker restarted, or it did):
    /// it takes tasks again. Its old attempts were already given out again.
    pub fn on_agent_back(&mut self, agent: &str, now_ms: u64) -> Actions {
        let mut actions = Vec::new();
        if self.over() {
            return actions;
        }
        let Some(slots) = self.agents.get_mut(agent) else { return actions };
        if !slots.lost || slots.silent {
            return actions;
        }
        slots.lost = false;
        slots.running = 0;
        if self.all_lost_since.take().is_some() {
            actions.push(Action::Warn { message: format!("agent {agent} is back; the job goes on") });
        }
        self.schedule(now_ms, &mut actions);
        actions
    }

    /// Time passes: re-send unacknowledged assignments, give up on silent
    /// agents, ask about quiet attempts, start backups for stragglers.
    pub fn tick(&mut self, now_ms: u64) -> Actions {
        let mut actions = Vec::new();
        if self.over() {
            return actions;
        }
        if let Some(since) = self.all_lost_since
            && now_ms.saturating_sub(since) >= AGENTS_BACK_MS
        {
            return self.fail(
                format!(
                    "no agent of this job could work for {} s (offline, or its IPFS node did not answer)",
                    AGENTS_BACK_MS / 1000
                ),
                String::new(),
            );
        }
        let p = &self.plan;
        let mut silent = BTreeSet::new();
        let mut query = BTreeSet::new();
        let mut forgotten = Vec::new();
        for t in self.maps.iter_mut().chain(self.reduces.iter_mut()) {
            for a in t.running.iter_mut() {
                if !a.accepted {
                    if now_ms.saturating_sub(a.since_ms) >= p.accept_timeout_ms {
                        silent.insert(a.agent.clone());
                    } else if now_ms.saturating_sub(a.last_sent_ms) >= p.resend_ms {
                        a.last_sent_ms = now_ms;
                        actions.push(Action::Assign { agent: a.agent.clone(), task: a.task.clone() });
                    }
                } else if now_ms.saturating_sub(a.last_query_ms.max(a.since_ms)) >= p.query_ms {
                    if a.unanswered >= QUERY_LIMIT {
                        forgotten.push((t.id.clone(), a.agent.clone(), a.attempt));
                        continue;
                    }
                    a.last_query_ms = now_ms;
                    a.unanswered += 1;
                    query.insert(a.agent.clone());
                }
            }
        }
        actions.extend(query.into_iter().map(|agent| Action::Query { agent }));
        for (task, agent, attempt) in forgotten {
            // Its agent no longer knows it (restarted, or lost its answers): run it again.
            if let Some((is_map, idx)) = self.find(&task) {
                let entry = if is_map { &mut self.maps[idx] } else { &mut self.reduces[idx] };
                entry.running.retain(|a| a.attempt != attempt);
                self.release(&agent);
                actions.push(Action::Warn {
                    message: format!("agent {agent} no longer knows {task} attempt {attempt} (restarted?); running it again"),
                });
                actions.push(Action::Cancel { agent, task, attempt });
            }
        }
        for agent in &silent {
            // An agent that does not acknowledge gets no more work from this job.
            for t in self.maps.iter().chain(self.reduces.iter()) {
                for a in t.running.iter().filter(|a| &a.agent == agent) {
                    actions.push(Action::Warn {
                        message: format!(
                            "agent {agent} did not acknowledge {} attempt {}; giving it to another agent",
                            t.id, a.attempt
                        ),
                    });
                    actions.push(Action::Cancel {
                        agent: agent.clone(),
                        task: t.id.clone(),
                        attempt: a.attempt,
                    });
                }
            }
            if let Some(a) = self.agents.get_mut(agent) {
                a.silent = true;
            }
            self.drop_attempts_of(agent);
        }
        if !silent.is_empty() && self.agents.values().all(|a| a.silent) {
            return self.fail(
                format!(
                    "no agent acknowledged its assignments within {} s (silent: {}); check that the agents are running and reach the broker",
                    self.plan.accept_timeout_ms / 1000,
                    silent.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
                String::new(),
            );
        }
        self.wait_if_none_usable(now_ms, &mut actions);
        self.schedule(now_ms, &mut actions);
        if self.plan.speculative {
            self.speculate(now_ms, &mut actions);
        }
        actions
    }

    /// Part CIDs in partition order, once the job is Done.
    pub fn part_cids(&self) -> Vec<(String, u64)> {
        self.reduces
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
        let bytes_read = self.maps.iter().filter_map(|t| t.done.as_ref()).map(|d| d.output.bytes_read).sum();
        Progress {
            maps_done: done(&self.maps),
            maps: self.maps.len(),
            reduces_done: done(&self.reduces),
            reduces: self.reduces.len(),
            bytes_read,
        }
    }

    /// Every finished task, maps then reduces.
    pub fn records(&self) -> Vec<TaskRecord> {
        self.maps
            .iter()
            .chain(self.reduces.iter())
            .filter_map(|t| {
                let d = t.done.as_ref()?;
                Some(TaskRecord {
                    task: t.id.clone(),
                    agent: d.agent.clone(),
                    attempt: d.attempt,
                    attempts: t.attempts_made,
                    speculative: d.speculative,
                    executor: d.output.executor.clone(),
                    elapsed_ms: d.output.elapsed_ms,
                    bytes_read: d.output.bytes_read,
                    output_bytes: d.output.sizes.iter().sum(),
                    spills: d.output.spills,
                    stats: d.output.stats,
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

    fn find(&self, task: &str) -> Option<(bool, usize)> {
        if let Some(i) = self.maps.iter().position(|t| t.id == task) {
            return Some((true, i));
        }
        self.reduces.iter().position(|t| t.id == task).map(|i| (false, i))
    }

    fn release(&mut self, agent: &str) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.running = a.running.saturating_sub(1);
        }
    }

    fn usable_agents(&self) -> usize {
        self.agents.values().filter(|a| a.usable()).count()
    }

    /// Maps whose outputs include any of `cids` lose their result and run again.
    fn rerun_maps_of(&mut self, cids: &[String]) {
        for m in self.maps.iter_mut() {
            let lost = m.done.as_ref().is_some_and(|d| d.output.cids.iter().any(|c| cids.contains(c)));
            if lost {
                m.done = None;
            }
        }
    }

    fn update_phase(&mut self, actions: &mut Actions) {
        if self.over() {
            return;
        }
        let maps_done = self.maps.iter().all(|t| t.done.is_some());
        if !maps_done {
            self.phase = Phase::Map;
        } else if self.reduces.iter().all(|t| t.done.is_some()) {
            self.phase = Phase::Done;
            actions.push(Action::Finished);
        } else {
            self.phase = Phase::Reduce;
        }
    }

    /// The reduce task for partition `p` with the current map outputs.
    fn reduce_kind(&self, p: u32) -> TaskKind {
        let inputs = self
            .maps
            .iter()
            .filter_map(|m| m.done.as_ref())
            .filter(|d| d.output.sizes.get(p as usize).copied().unwrap_or(0) > 0)
            .map(|d| d.output.cids[p as usize].clone())
            .collect();
        TaskKind::Reduce { partition: p, inputs }
    }

    fn free(&self, agent: &str) -> u32 {
        let a = &self.agents[agent];
        if a.usable() { a.slots.saturating_sub(a.running) } else { 0 }
    }

    /// Whether an agent failed too many of this job's tasks (while others have not).
    fn banned(&self, agent: &str) -> bool {
        let a = &self.agents[agent];
        a.failures >= AGENT_FAILURE_LIMIT
            && self.agents.values().any(|o| o.usable() && o.failures < AGENT_FAILURE_LIMIT)
    }

    /// The best agent with a free slot for a task: most free slots, then rank;
    /// agents the task failed on last; `exclude`d agents never.
    fn pick_agent(&self, failed_on: &[String], exclude: &[&str]) -> Option<String> {
        self.rank
            .iter()
            .enumerate()
            .filter(|(_, a)| self.free(a) > 0 && !self.banned(a) && !exclude.contains(&a.as_str()))
            .max_by_key(|(pos, a)| {
                let failed = failed_on.iter().filter(|f| f == a).count();
                (std::cmp::Reverse(failed), self.free(a), std::cmp::Reverse(*pos))
            })
            .map(|(_, a)| a.clone())
    }

    fn launch(
        &mut self,
        is_map: bool,
        idx: usize,
        agent: String,
        now_ms: u64,
        speculative: bool,
        actions: &mut Actions,
    ) {
        let kind = if is_map {
            self.maps[idx].kind.clone()
        } else {
            self.reduce_kind(self.reduces[idx].kind.partition())
        };
        let entry = if is_map { &mut self.maps[idx] } else { &mut self.reduces[idx] };
        entry.attempts_made += 1;
        let task = Task {
            job: self.plan.job.clone(),
            task: entry.id.clone(),
            attempt: entry.attempts_made,
            reducers: self.plan.reducers,
            code: self.plan.code.clone(),
            memory_mb: self.plan.memory_mb,
            kind,
        };
        entry.running.push(Attempt {
            agent: agent.clone(),
            attempt: task.attempt,
            since_ms: now_ms,
            accepted: false,
            last_sent_ms: now_ms,
            last_query_ms: now_ms,
            unanswered: 0,
            speculative,
            task: task.clone(),
        });
        self.agents.get_mut(&agent).expect("ranked agents exist").running += 1;
        actions.push(Action::Assign { agent, task });
    }

    /// Hands pending tasks to free slots: maps whenever there are any, reduces
    /// only while every map is done.
    fn schedule(&mut self, now_ms: u64, actions: &mut Actions) {
        let is_map = match self.phase {
            Phase::Map => true,
            Phase::Reduce => false,
            _ => return,
        };
        let n = if is_map { self.maps.len() } else { self.reduces.len() };
        for idx in 0..n {
            let entry = if is_map { &self.maps[idx] } else { &self.reduces[idx] };
            if !entry.pending() {
                continue;
            }
            let Some(agent) = self.pick_agent(&entry.failed_on.clone(), &[]) else { break };
            self.launch(is_map, idx, agent, now_ms, false, actions);
        }
    }

    /// With nothing left to hand out and slots idle, a task running much
    /// longer than its finished siblings gets a backup attempt elsewhere.
    fn speculate(&mut self, now_ms: u64, actions: &mut Actions) {
        let is_map = match self.phase {
            Phase::Map => true,
            Phase::Reduce => false,
            _ => return,
        };
        let tasks = if is_map { &self.maps } else { &self.reduces };
        if tasks.iter().any(|t| t.pending()) {
            return;
        }
        let mut times: Vec<u64> =
            tasks.iter().filter_map(|t| t.done.as_ref()).map(|d| d.elapsed_ms).collect();
        if times.is_empty() {
            return;
        }
        times.sort_unstable();
        let median = times[times.len() / 2];
        let threshold = (median * SPECULATE_FACTOR).max(SPECULATE_MIN_MS);
        let stragglers: Vec<usize> = tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.done.is_none() && t.running.len() == 1)
            // A backup that could fail too must not take the task past its
            // max_attempts failures (it did: "failed 6 times" for 4).
            .filter(|(_, t)| t.failures + 1 < self.plan.max_attempts)
            .filter(|(_, t)| now_ms.saturating_sub(t.running[0].since_ms) > threshold)
            .map(|(i, _)| i)
            .collect();
        for idx in stragglers {
            let entry = if is_map { &self.maps[idx] } else { &self.reduces[idx] };
            let busy = entry.running[0].agent.clone();
            let Some(agent) = self.pick_agent(&entry.failed_on.clone(), &[busy.as_str()]) else { break };
            self.speculated += 1;
            self.launch(is_map, idx, agent, now_ms, true, actions);
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
    pub bytes_read: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipdc_common::protocol::PROTOCOL_VERSION;

    fn plan(splits: usize, reducers: u32) -> JobPlan {
        let code = CodeSpec {
            map_cid: "m".into(),
            reduce_cid: "r".into(),
            combiner: false,
            force_native: None,
            native_fallback: None,
            limits: Default::default(),
            files: Default::default(),
        };
        JobPlan {
            input_cid: "in".into(),
            input_size: splits as u64 * 10,
            splits: (0..splits as u64).map(|i| (i * 10, i * 10 + 10)).collect(),
            reducers,
            accept_timeout_ms: 10_000,
            speculative: false,
            ..JobPlan::defaults("j", code)
        }
    }

    fn ev(task: &Task, agent: &str, kind: EventKind) -> TaskEvent {
        TaskEvent {
            v: PROTOCOL_VERSION,
            job: task.job.clone(),
            task: task.task.clone(),
            attempt: task.attempt,
            agent: agent.into(),
            kind,
        }
    }

    fn done(task: &Task, agent: &str, reducers: u32) -> TaskEvent {
        let output = TaskOutput {
            cids: (0..reducers).map(|p| format!("{}-p{p}", task.task)).collect(),
            sizes: vec![5; reducers as usize],
            ..Default::default()
        };
        ev(task, agent, EventKind::Done { output })
    }

    fn warnings(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Warn { message } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    fn assigns(actions: &[Action]) -> Vec<(String, Task)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Assign { agent, task } => Some((agent.clone(), task.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn maps_fill_free_slots_then_queue_until_a_slot_frees() {
        let mut c = Controller::new(plan(5, 1), &[("a".into(), 2), ("b".into(), 1)]);
        let first = assigns(&c.start(0));
        assert_eq!(first.len(), 3);
        assert_eq!(first.iter().filter(|(a, _)| a == "a").count(), 2);
        let next = assigns(&c.on_event(&done(&first[0].1, &first[0].0, 1), 1));
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].0, first[0].0, "the freed slot gets the next task");
    }

    #[test]
    fn reduces_start_after_every_map_and_get_each_maps_partition() {
        let mut c = Controller::new(plan(2, 2), &[("a".into(), 4)]);
        let maps = assigns(&c.start(0));
        assert!(assigns(&c.on_event(&done(&maps[0].1, "a", 2), 1)).is_empty());
        let reduces = assigns(&c.on_event(&done(&maps[1].1, "a", 2), 2));
        assert_eq!(c.phase(), Phase::Reduce);
        assert_eq!(reduces.len(), 2);
        assert_eq!(
            reduces[1].1.kind,
            TaskKind::Reduce { partition: 1, inputs: vec!["m-00000-p1".into(), "m-00001-p1".into()] }
        );
        assert!(c.on_event(&done(&reduces[0].1, "a", 1), 3).is_empty());
        assert_eq!(c.on_event(&done(&reduces[1].1, "a", 1), 4), vec![Action::Finished]);
        assert_eq!(c.part_cids(), vec![("r-00000-p0".into(), 5), ("r-00001-p0".into(), 5)]);
    }

    #[test]
    fn empty_partitions_are_not_fetched_by_reducers() {
        let mut c = Controller::new(plan(1, 2), &[("a".into(), 2)]);
        let m = assigns(&c.start(0)).remove(0).1;
        let output =
            TaskOutput { cids: vec!["p0".into(), "p1".into()], sizes: vec![0, 9], ..Default::default() };
        let r = assigns(&c.on_event(&ev(&m, "a", EventKind::Done { output }), 1));
        assert_eq!(r[0].1.kind, TaskKind::Reduce { partition: 0, inputs: vec![] });
        assert_eq!(r[1].1.kind, TaskKind::Reduce { partition: 1, inputs: vec!["p1".into()] });
    }

    #[test]
    fn duplicated_and_stale_events_are_ignored() {
        let mut c = Controller::new(plan(2, 1), &[("a".into(), 1), ("b".into(), 1)]);
        let first = assigns(&c.start(0));
        let (agent, task) = &first[0];
        let d = done(task, agent, 1);
        c.on_event(&d, 1);
        assert!(c.on_event(&d, 2).is_empty(), "a second delivery changes nothing");
        assert_eq!(c.progress().maps_done, 1);
        let mut stale = d.clone();
        stale.task = first[1].1.task.clone();
        stale.attempt = 7;
        assert!(c.on_event(&stale, 3).is_empty());
        assert_eq!(c.progress().maps_done, 1);
    }

    #[test]
    fn a_failed_task_is_retried_on_another_agent_then_fails_the_job_with_its_error() {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1), ("b".into(), 1)]);
        let (a1, t1) = assigns(&c.start(0)).remove(0);
        let fail = |t: &Task, a: &str| {
            ev(
                t,
                a,
                EventKind::Failed {
                    error: "map() raised ValueError".into(),
                    detail: "Traceback...".into(),
                    lost_inputs: vec![],
                    node_down: false,
                },
            )
        };
        let first = c.on_event(&fail(&t1, &a1), 1);
        assert_eq!(
            warnings(&first),
            [format!(
                "task m-00000 attempt 1 failed on agent {a1} (the job fails after 4 failures): map() raised ValueError"
            )]
        );
        let (a2, t2) = assigns(&first).remove(0);
        assert_ne!(a1, a2, "the retry goes to the other agent");
        assert_eq!(t2.attempt, 2);
        let second = c.on_event(&fail(&t2, &a2), 2);
        assert!(warnings(&second).is_empty(), "the same error is told once: {second:?}");
        let (a3, t3) = assigns(&second).remove(0);
        let (a4, t4) = assigns(&c.on_event(&fail(&t3, &a3), 3)).remove(0);
        let end = c.on_event(&fail(&t4, &a4), 4);
        assert_eq!(c.phase(), Phase::Failed);
        match &end[0] {
            Action::Failed { message, detail } => {
                assert!(message.contains("m-00000 failed 4 times"), "{message}");
                assert!(message.contains("map() raised ValueError"));
                assert_eq!(detail, "Traceback...");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_job_waits_for_its_agents_to_come_back_after_they_all_went_offline() {
        // A broker restart: both agents' Last Wills arrive at once.
        let mut c = Controller::new(plan(2, 1), &[("a".into(), 1), ("b".into(), 1)]);
        let first = assigns(&c.start(0));
        assert_eq!(first.len(), 2);
        let w = warnings(&c.on_agent_lost("a", "went offline", 100));
        assert_eq!(
            w,
            ["agent a went offline; its running task m-00000 will run again (not counted as a failure)"]
        );
        let w = warnings(&c.on_agent_lost("b", "went offline", 100));
        assert_eq!(
            w[1..],
            [
                "no agent of this job can work now (offline, or its IPFS node does not answer); waiting up to 60 s for one to come back"
            ]
        );
        assert!(c.tick(30_000).iter().all(|a| !matches!(a, Action::Failed { .. })));
        assert_eq!(c.phase(), Phase::Map);
        // b reconnects: both maps run again there (a is still away).
        let back = c.on_agent_back("b", 31_000);
        assert_eq!(warnings(&back), ["agent b is back; the job goes on"]);
        let again = assigns(&back);
        assert_eq!(again.len(), 1, "b has one slot: {again:?}");
        assert_eq!(again[0].0, "b");
        assert_eq!(again[0].1.attempt, 2, "a new attempt, not a failure: {again:?}");
        let next = assigns(&c.on_event(&done(&again[0].1, "b", 1), 32_000));
        assert_eq!(next.len(), 1);
        c.on_event(&done(&next[0].1, "b", 1), 33_000);
        assert_eq!(c.phase(), Phase::Reduce);
        // Far past the wait: nothing fails, b is back.
        assert!(c.tick(200_000).iter().all(|a| !matches!(a, Action::Failed { .. })));
    }

    #[test]
    fn the_submitters_own_outage_is_not_blamed_on_the_agents() {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
        let (a1, t1) = assigns(&c.start(0)).remove(0);
        // Disconnected from 1 s to 40 s: no ticks, no acknowledgement heard.
        c.on_reconnect(40_000);
        let actions = c.tick(40_250);
        assert_eq!(
            assigns(&actions),
            vec![(a1.clone(), t1.clone())],
            "sent again, not given up: {actions:?}"
        );
        assert!(warnings(&actions).is_empty(), "{actions:?}");
        c.on_event(&ev(&t1, &a1, EventKind::Accepted), 40_300);
        assert!(c.tick(50_000).iter().all(|a| !matches!(a, Action::Failed { .. })));
    }

    #[test]
    fn a_result_from_an_attempt_given_up_on_still_counts() {
        // The agent only looked lost (a broker restart): its attempt ran on.
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1), ("b".into(), 1)]);
        let (a1, t1) = assigns(&c.start(0)).remove(0);
        let (a2, t2) = assigns(&c.on_agent_lost(&a1, "went offline", 100)).remove(0);
        assert_ne!(a1, a2);
        let actions = c.on_event(&done(&t1, &a1, 1), 200);
        assert_eq!(c.progress().maps_done, 1, "{actions:?}");
        assert!(
            actions.contains(&Action::Cancel {
                agent: a2.clone(),
                task: t2.task.clone(),
                attempt: t2.attempt
            }),
            "the second attempt is cancelled: {actions:?}"
        );
        // The first result stays the one; a duplicate changes nothing.
        assert!(c.on_event(&done(&t1, &a1, 1), 300).is_empty());
    }

    #[test]
    fn a_job_fails_when_no_agent_comes_back_in_time() {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
        c.start(0);
        c.on_agent_lost("a", "went offline", 1_000);
        assert!(c.tick(60_999).iter().all(|a| !matches!(a, Action::Failed { .. })));
        match &c.tick(61_000)[..] {
            [Action::Failed { message, .. }] => {
                assert_eq!(
                    message,
                    "no agent of this job could work for 60 s (offline, or its IPFS node did not answer)"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_new_error_of_a_task_is_told_again() {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1), ("b".into(), 1)]);
        let (mut agent, mut task) = assigns(&c.start(0)).remove(0);
        let mut told = Vec::new();
        for (at, error) in ["disk full", "timed out", "timed out"].into_iter().enumerate() {
            let kind = EventKind::Failed {
                error: error.into(),
                detail: String::new(),
                lost_inputs: vec![],
                node_down: false,
            };
            let actions = c.on_event(&ev(&task, &agent, kind), at as u64 + 1);
            told.push(warnings(&actions).len());
            (agent, task) = assigns(&actions).remove(0);
        }
        assert_eq!(told, [1, 1, 0]);
    }

    #[test]
    fn an_unacknowledged_assignment_is_resent_then_moves_to_another_agent() {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1), ("b".into(), 1)]);
        let (a1, t1) = assigns(&c.start(0)).remove(0);
        let resent = assigns(&c.tick(3_000));
        assert_eq!(resent, vec![(a1.clone(), t1.clone())], "the same attempt is sent again");
        let actions = c.tick(10_000);
        assert!(actions.contains(&Action::Cancel { agent: a1.clone(), task: t1.task.clone(), attempt: 1 }));
        assert_eq!(
            warnings(&actions),
            [format!("agent {a1} did not acknowledge m-00000 attempt 1; giving it to another agent")]
        );
        let (a2, t2) = assigns(&actions).remove(0);
        assert_ne!(a1, a2);
        assert_eq!(t2.attempt, 2);
    }

    #[test]
    fn a_quiet_accepted_attempt_is_queried_not_reassigned() {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
        let (a1, t1) = assigns(&c.start(0)).remove(0);
        c.on_event(&ev(&t1, &a1, EventKind::Accepted), 1);
        assert!(c.tick(5_000).is_empty());
        assert_eq!(c.tick(60_000), vec![Action::Query { agent: a1.clone() }]);
        assert!(c.tick(61_000).is_empty(), "one query per quiet period");
        // The result re-sent after the query completes the task.
        c.on_event(&done(&t1, &a1, 1), 61_500);
        assert_eq!(c.progress().maps_done, 1);
    }

    #[test]
    fn an_attempt_its_agent_no_longer_knows_runs_again() {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
        let (a1, t1) = assigns(&c.start(0)).remove(0);
        c.on_event(&ev(&t1, &a1, EventKind::Accepted), 1);
        // The agent restarts and never answers the queries.
        for n in 1..=3 {
            assert_eq!(c.tick(n * 10_000), vec![Action::Query { agent: a1.clone() }]);
        }
        let actions = c.tick(40_000);
        assert!(actions.contains(&Action::Cancel { agent: a1.clone(), task: t1.task.clone(), attempt: 1 }));
        let again = assigns(&actions);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1.attempt, 2);
        assert_eq!(c.reduces[0].failures + c.maps[0].failures, 0, "not counted as a failure");
    }

    #[test]
    fn when_no_agent_answers_the_job_fails_with_a_message() {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
        c.start(0);
        let end = c.tick(10_000);
        assert!(
            matches!(&end[..], [Action::Failed { message, .. }] if message.contains("no agent acknowledged") && message.contains("silent: a")),
            "{end:?}"
        );
    }

    #[test]
    fn a_straggler_gets_a_backup_attempt_and_the_first_result_wins() {
        let mut p = plan(3, 1);
        p.speculative = true;
        let mut c = Controller::new(p, &[("a".into(), 1), ("b".into(), 1), ("slow".into(), 1)]);
        let first = assigns(&c.start(0));
        for (agent, task) in &first {
            c.on_event(&ev(task, agent, EventKind::Accepted), 10);
        }
        let slow = first.iter().find(|(a, _)| a == "slow").unwrap().1.clone();
        for (agent, task) in first.iter().filter(|(a, _)| a != "slow") {
            c.on_event(&done(task, agent, 1), 1_000);
        }
        assert!(assigns(&c.tick(1_500)).is_empty(), "not yet a straggler");
        let backup = assigns(&c.tick(2_500));
        assert_eq!(backup.len(), 1);
        assert_eq!(backup[0].1.task, slow.task);
        assert_ne!(backup[0].0, "slow");
        assert_eq!(c.speculated(), 1);
        let actions = c.on_event(&done(&backup[0].1, &backup[0].0, 1), 3_000);
        assert!(warnings(&actions).is_empty(), "a lost race is not news: {actions:?}");
        assert!(actions.contains(&Action::Cancel {
            agent: "slow".into(),
            task: slow.task.clone(),
            attempt: 1
        }));
        // The slow attempt's late result is ignored.
        assert!(c.on_event(&done(&slow, "slow", 1), 9_000).is_empty());
        let records = c.records();
        let rec = records.iter().find(|r| r.task == slow.task).unwrap();
        assert!(rec.speculative && rec.attempts == 2);
    }

    #[test]
    fn backups_never_take_a_failing_task_past_max_attempts() {
        let mut p = plan(3, 1);
        p.speculative = true;
        p.max_attempts = 2;
        let mut c = Controller::new(p, &[("a".into(), 1), ("b".into(), 1), ("slow".into(), 1)]);
        let first = assigns(&c.start(0));
        for (agent, task) in &first {
            c.on_event(&ev(task, agent, EventKind::Accepted), 10);
        }
        let slow = first.iter().find(|(a, _)| a == "slow").unwrap().1.clone();
        for (agent, task) in first.iter().filter(|(a, _)| a != "slow") {
            c.on_event(&done(task, agent, 1), 1_000);
        }
        let backup = assigns(&c.tick(2_500));
        assert_eq!(backup.len(), 1, "a straggler gets a backup");
        c.on_event(&ev(&backup[0].1, &backup[0].0, EventKind::Accepted), 2_510);
        let fail = |t: &Task, a: &str| {
            let kind = EventKind::Failed {
                error: "map() raised ValueError".into(),
                detail: String::new(),
                lost_inputs: vec![],
                node_down: false,
            };
            ev(t, a, kind)
        };
        c.on_event(&fail(&backup[0].1, &backup[0].0), 3_000);
        // One failure, one attempt running: another backup could be a third failure.
        assert!(assigns(&c.tick(60_000)).is_empty());
        let end = c.on_event(&fail(&slow, "slow"), 61_000);
        assert!(
            matches!(&end[..], [Action::Failed { message, .. }] if message.starts_with("task m-") && message.contains("failed 2 times")),
            "{end:?}"
        );
    }

    #[test]
    fn losing_an_agent_names_only_the_tasks_that_run_again() {
        // slow's map has a backup on another agent: losing slow restarts nothing.
        let mut p = plan(3, 1);
        p.speculative = true;
        let mut c = Controller::new(p, &[("a".into(), 1), ("b".into(), 1), ("slow".into(), 1)]);
        let first = assigns(&c.start(0));
        for (agent, task) in &first {
            c.on_event(&ev(task, agent, EventKind::Accepted), 10);
        }
        for (agent, task) in first.iter().filter(|(a, _)| a != "slow") {
            c.on_event(&done(task, agent, 1), 1_000);
        }
        assert_eq!(assigns(&c.tick(2_500)).len(), 1, "a backup of slow's map");
        let acts = c.on_agent_lost("slow", "went offline", 2_600);
        assert!(warnings(&acts).is_empty(), "{acts:?}");
        assert!(assigns(&acts).is_empty());
    }

    #[test]
    fn a_task_failing_because_its_agents_ipfs_node_is_down_runs_again_without_counting() {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1), ("b".into(), 1)]);
        let (a1, t1) = assigns(&c.start(0)).remove(0);
        let down = |t: &Task, a: &str| {
            let kind = EventKind::Failed {
                error: "cat: connection refused".into(),
                detail: String::new(),
                lost_inputs: vec![],
                node_down: true,
            };
            ev(t, a, kind)
        };
        let acts = c.on_event(&down(&t1, &a1), 10);
        assert_eq!(
            warnings(&acts),
            [format!(
                "agent {a1} cannot use its IPFS node (cat: connection refused); its running task m-00000 will run again (not counted as a failure)"
            )]
        );
        assert!(c.is_lost(&a1));
        let (a2, t2) = assigns(&acts).remove(0);
        assert_ne!(a2, a1);
        assert_eq!(t2.attempt, 2);
        assert!(c.on_event(&down(&t1, &a1), 11).is_empty(), "a second delivery changes nothing");
        // The other node goes down too: the job waits instead of failing.
        let acts = c.on_event(&down(&t2, &a2), 20);
        assert!(
            warnings(&acts).iter().any(|w| w.starts_with("no agent of this job can work now")),
            "{acts:?}"
        );
        assert!(assigns(&acts).is_empty());
        // a's node answers again and goes down twice more: four such
        // failures, which would fail the job if they counted.
        let mut now = 5_000;
        let mut attempt = assigns(&c.on_agent_back(&a1, now)).remove(0).1;
        for _ in 0..2 {
            assert_eq!(c.phase(), Phase::Map);
            c.on_event(&down(&attempt, &a1), now + 1);
            now += 1_000;
            attempt = assigns(&c.on_agent_back(&a1, now)).remove(0).1;
        }
        assert_eq!(attempt.attempt, 5);
        c.on_event(&done(&attempt, &a1, 1), now + 1);
        assert_eq!(c.phase(), Phase::Reduce);
        assert_eq!(c.records()[0].attempts, 5);
    }

    #[test]
    fn a_task_that_keeps_taking_ipfs_nodes_down_fails_the_job_in_the_end() {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
        let mut attempt = assigns(&c.start(0)).remove(0).1;
        let down = |t: &Task| {
            let kind = EventKind::Failed {
                error: "cat: connection refused".into(),
                detail: String::new(),
                lost_inputs: vec![],
                node_down: true,
            };
            ev(t, "a", kind)
        };
        let mut now = 0;
        for n in 1..=20 {
            now += 1_000;
            let acts = c.on_event(&down(&attempt), now);
            if c.phase() == Phase::Failed {
                // 4 excused, then 4 counted.
                assert_eq!(n, 8, "{acts:?}");
                return;
            }
            let mut next = assigns(&acts);
            if next.is_empty() {
                next = assigns(&c.on_agent_back("a", now + 500));
            }
            attempt = next.remove(0).1;
        }
        panic!("the job never failed");
    }

    #[test]
    fn a_lost_map_output_runs_its_map_again_without_counting_a_failure() {
        let mut c = Controller::new(plan(2, 1), &[("a".into(), 2)]);
        let maps = assigns(&c.start(0));
        c.on_event(&done(&maps[0].1, "a", 1), 1);
        let r = assigns(&c.on_event(&done(&maps[1].1, "a", 1), 2)).remove(0).1;
        let lost = ev(
            &r,
            "a",
            EventKind::Failed {
                error: "cannot fetch".into(),
                detail: String::new(),
                lost_inputs: vec!["m-00000-p0".into()],
                node_down: false,
            },
        );
        let again = assigns(&c.on_event(&lost, 3));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1.task, "m-00000");
        assert_eq!(c.phase(), Phase::Map);
        let r2 = assigns(&c.on_event(&done(&again[0].1, "a", 1), 4)).remove(0).1;
        assert_eq!(r2.task, "r-00000");
        assert_eq!(r2.attempt, 2);
        assert_eq!(c.reduces[0].failures, 0);
    }

    #[test]
    fn an_agent_failing_repeatedly_gets_no_more_of_the_jobs_tasks() {
        let mut c = Controller::new(plan(4, 1), &[("bad".into(), 1), ("good".into(), 1)]);
        let mut bad_failures = 0;
        let mut actions = c.start(0);
        for now in 1..40 {
            let mut next = Vec::new();
            for (agent, task) in assigns(&actions) {
                let kind = if agent == "bad" {
                    bad_failures += 1;
                    EventKind::Failed {
                        error: "boom".into(),
                        detail: String::new(),
                        lost_inputs: vec![],
                        node_down: false,
                    }
                } else {
                    let output = TaskOutput { cids: vec!["x".into()], sizes: vec![1], ..Default::default() };
                    EventKind::Done { output }
                };
                next.extend(c.on_event(&ev(&task, &agent, kind), now));
            }
            actions = next;
        }
        assert_eq!(bad_failures, 3, "no task after the third failure");
        assert_eq!(c.phase(), Phase::Done);
    }

    #[test]
    fn a_lost_agents_running_tasks_go_to_the_others() {
        let mut c = Controller::new(plan(2, 1), &[("a".into(), 1), ("b".into(), 1)]);
        let first = assigns(&c.start(0));
        let lost = &first[0].0;
        let (d_agent, d_task) = &first[1];
        c.on_event(&done(d_task, d_agent, 1), 1);
        let again = assigns(&c.on_agent_lost(lost, "went offline", 2));
        assert_eq!(again.len(), 1);
        assert_eq!(&again[0].0, d_agent);
        assert_eq!(again[0].1.attempt, 2);
    }

    #[test]
    fn an_empty_input_goes_straight_to_reduce() {
        let mut c = Controller::new(plan(0, 1), &[("a".into(), 1)]);
        let r = assigns(&c.start(0));
        assert_eq!(r[0].1.kind, TaskKind::Reduce { partition: 0, inputs: vec![] });
    }
}
