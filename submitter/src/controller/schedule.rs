//! Which agent gets which task: picking an agent (free slots, rank, past
//! failures, bans, and never one that returned a result for it or runs
//! it), launching an attempt, handing out pending tasks (as many attempts
//! as a verified task misses results), and speculative backups of
//! stragglers.

use ipdc_common::protocol::{Task, TaskKind};

use super::task::{Attempt, Stage, TaskRef, inputs_key};
use super::timeline::{AttemptRecord, Outcome};
use super::verify::EXTRA_RESULTS;
use super::{Action, Actions, Controller, Phase};

/// Failed attempts on one agent after which it gets no more of this job's tasks.
const AGENT_FAILURE_LIMIT: u32 = 3;
/// A straggler runs this many times longer than its finished siblings' median...
const SPECULATE_FACTOR: u64 = 2;
/// ...and at least this long, before a backup attempt starts.
const SPECULATE_MIN_MS: u64 = 2_000;
/// A map whose bytes are on a busy agent's node waits this long for a slot
/// there (from the last map that went to its data) before it goes to a
/// free agent and fetches them (Spark's `spark.locality.wait`): moving a
/// split over a board's link costs more than a short wait.
pub const LOCALITY_WAIT_MS: u64 = 3_000;

impl Controller {
    /// The reduce task for partition `p` with the current map outputs.
    pub(super) fn reduce_kind(&self, p: u32) -> TaskKind {
        let inputs = self
            .tasks
            .maps
            .iter()
            .filter_map(|m| m.done.as_ref())
            .filter(|d| d.output.sizes.get(p as usize).copied().unwrap_or(0) > 0)
            .map(|d| d.output.cids[p as usize].clone())
            .collect();
        TaskKind::Reduce { partition: p, inputs }
    }

    /// The bytes of map `idx`'s split that `agent`'s node held.
    pub(super) fn local_bytes(&self, agent: &str, idx: usize) -> u64 {
        self.local.get(agent).and_then(|v| v.get(idx)).copied().unwrap_or(0)
    }

    /// Whether map `idx`, never started, waits for a slot on the agent
    /// whose node holds most of its split, all such agents being busy.
    fn waits_for_its_data(&self, idx: usize, now_ms: u64) -> bool {
        if self.local.is_empty()
            || self.tasks.maps[idx].attempts_made > 0
            || now_ms >= self.local_launch_ms + LOCALITY_WAIT_MS
        {
            return false;
        }
        let usable = |a: &&String| self.agents[*a].usable() && !self.banned(a, &[]);
        let best = self.agents.keys().filter(usable).map(|a| self.local_bytes(a, idx)).max().unwrap_or(0);
        best > 0
            && !self
                .agents
                .keys()
                .filter(usable)
                .any(|a| self.free(a) > 0 && self.local_bytes(a, idx) == best)
    }

    pub(super) fn free(&self, agent: &str) -> u32 {
        let a = &self.agents[agent];
        if a.usable() { a.slots.saturating_sub(a.running) } else { 0 }
    }

    /// Whether any agent has a free slot.
    fn any_free(&self) -> bool {
        self.agents.keys().any(|a| self.free(a) > 0)
    }

    /// Whether an agent failed too many of this job's tasks, while others
    /// that may take the task (not `cannot`: they returned a result for it)
    /// have not.
    pub(super) fn banned(&self, agent: &str, cannot: &[String]) -> bool {
        let a = &self.agents[agent];
        a.failures >= AGENT_FAILURE_LIMIT
            && self
                .agents
                .iter()
                .any(|(n, o)| o.usable() && o.failures < AGENT_FAILURE_LIMIT && !cannot.contains(n))
    }

    /// The best agent with a free slot for a task: for a map, the one whose
    /// node holds most of its split; then most free slots, then rank;
    /// agents the task failed on last; never one that returned a result for
    /// it (`voted`: one agent, one vote) or is running it (`running`).
    pub(super) fn pick_agent(
        &self,
        r: TaskRef,
        failed_on: &[String],
        voted: &[String],
        running: &[String],
    ) -> Option<String> {
        self.rank
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                self.free(a) > 0 && !self.banned(a, voted) && !voted.contains(a) && !running.contains(a)
            })
            .max_by_key(|(pos, a)| {
                let failed = failed_on.iter().filter(|f| f == a).count();
                let local = if r.stage == Stage::Map { self.local_bytes(a, r.idx) } else { 0 };
                (std::cmp::Reverse(failed), local, self.free(a), std::cmp::Reverse(*pos))
            })
            .map(|(_, a)| a.clone())
    }

    /// The stage whose tasks are handed out now, if any.
    fn stage(&self) -> Option<Stage> {
        match self.phase {
            Phase::Map => Some(Stage::Map),
            Phase::Reduce => Some(Stage::Reduce),
            Phase::Done | Phase::Failed => None,
        }
    }

    pub(super) fn launch(
        &mut self,
        r: TaskRef,
        agent: String,
        now_ms: u64,
        speculative: bool,
        actions: &mut Actions,
    ) {
        let kind = match r.stage {
            Stage::Map => self.tasks.get(r).kind.clone(),
            Stage::Reduce => self.reduce_kind(self.tasks.get(r).kind.partition()),
        };
        let entry = self.tasks.get_mut(r);
        // Results computed from other inputs (a reduce's, before a map ran
        // again) are of other work: they neither count nor bar their agents.
        let inputs = inputs_key(&kind);
        entry.votes.retain(|v| v.result.inputs == inputs);
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
            read: (0, 0),
        });
        let range = match &task.kind {
            TaskKind::Map { start, end, .. } => Some((*start, *end)),
            _ => None,
        };
        self.timeline.started(
            r,
            AttemptRecord {
                task: task.task.clone(),
                attempt: task.attempt,
                agent: agent.clone(),
                speculative,
                start_ms: now_ms,
                end_ms: None,
                outcome: Outcome::Running,
                range,
            },
        );
        if r.stage == Stage::Map && self.local_bytes(&agent, r.idx) > 0 {
            self.local_launch_ms = now_ms;
        }
        self.agents.get_mut(&agent).expect("ranked agents exist").running += 1;
        actions.push(Action::Assign { agent, task });
    }

    /// Hands pending tasks to free slots: maps whenever there are any, reduces
    /// only while every map is done. A verified task gets as many attempts
    /// at once as it misses results, each on an agent of its own.
    pub(super) fn schedule(&mut self, now_ms: u64, actions: &mut Actions) {
        let Some(stage) = self.stage() else { return };
        // Maps whose bytes are on some agent's node first, the most held
        // first, so that agent's slots go to them and not to others.
        let mut order: Vec<usize> = (0..self.tasks.of(stage).len()).collect();
        if stage == Stage::Map && !self.local.is_empty() {
            let held = |i: usize| self.agents.keys().map(|a| self.local_bytes(a, i)).max().unwrap_or(0);
            order.sort_by_key(|&i| std::cmp::Reverse(held(i)));
        }
        for idx in order {
            let r = TaskRef { stage, idx };
            if stage == Stage::Map && self.waits_for_its_data(idx, now_ms) {
                continue;
            }
            while self.tasks.get(r).pending() {
                let entry = self.tasks.get(r);
                let (voted, running) = entry.busy_agents();
                let Some(agent) = self.pick_agent(r, &entry.failed_on.clone(), &voted, &running) else {
                    if (voted.is_empty() && running.is_empty()) || !self.any_free() {
                        return; // no free slot anywhere
                    }
                    break; // none for this one (it ran on every free agent); others may fit
                };
                self.launch(r, agent, now_ms, false, actions);
            }
        }
    }

    /// With nothing left to hand out and slots idle, a task running much
    /// longer than its finished siblings gets a backup attempt elsewhere,
    /// on an agent whose latest status has the job's `task_memory_mb` free.
    pub(super) fn speculate(&mut self, now_ms: u64, actions: &mut Actions) {
        let Some(stage) = self.stage() else { return };
        let tasks = self.tasks.of(stage);
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
        // A backup races a straggling attempt for its result; with
        // verification it runs on an agent with no result or attempt of the
        // task, so its result is one more vote (never one more needed), and
        // only while the task's results stay within their bound.
        let stragglers: Vec<TaskRef> = tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.done.is_none() && !t.running.is_empty() && t.running.len() as u32 == t.missing()
            })
            // A backup that could fail too must not take the task past its
            // max_attempts failures (it did: "failed 6 times" for 4).
            .filter(|(_, t)| t.failures + (t.running.len() as u32) < self.plan.max_attempts)
            .filter(|(_, t)| t.counted() + (t.running.len() as u32) < t.need + EXTRA_RESULTS)
            .filter(|(_, t)| {
                let oldest = t.running.iter().map(|a| a.since_ms).min().unwrap_or(now_ms);
                now_ms.saturating_sub(oldest) > threshold
            })
            .map(|(idx, _)| TaskRef { stage, idx })
            .collect();
        // A backup needs the attempt's memory limit free where it goes: with
        // `--local` every agent is this machine, and a backup of a large
        // attempt doubled the memory in use.
        let need = self.plan.code.limits.memory_mb.unwrap_or(0);
        let short: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, a)| a.mem_available_mb.is_some_and(|free| free < need))
            .map(|(name, _)| name.clone())
            .collect();
        for r in stragglers {
            let entry = self.tasks.get(r);
            let (voted, mut running) = entry.busy_agents();
            // Agents without the memory are passed over as if busy with it.
            running.extend(short.iter().cloned());
            let Some(agent) = self.pick_agent(r, &entry.failed_on.clone(), &voted, &running) else {
                if voted.is_empty() {
                    break;
                }
                continue;
            };
            self.speculated += 1;
            self.launch(r, agent, now_ms, true, actions);
        }
    }
}
