//! The task table: one entry per map and reduce task, its running,
//! dropped and finished attempts, the results it has (its votes, when it
//! is verified), and the lookup by task id (`TaskRef` names a task in
//! either list).

use ipdc_common::protocol::{Task, TaskKind, TaskOutput};

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Attempt {
    pub(super) agent: String,
    pub(super) attempt: u32,
    pub(super) since_ms: u64,
    pub(super) accepted: bool,
    pub(super) last_sent_ms: u64,
    pub(super) last_query_ms: u64,
    /// Queries about this attempt that got no answer; at the limit the agent
    /// has forgotten it (e.g. it restarted) and the task runs again.
    pub(super) unanswered: u32,
    pub(super) speculative: bool,
    pub(super) task: Task,
    /// Bytes and lines of its input read so far, as it last said.
    pub(super) read: (u64, u64),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Done {
    pub(super) agent: String,
    pub(super) attempt: u32,
    pub(super) speculative: bool,
    pub(super) elapsed_ms: u64,
    pub(super) output: TaskOutput,
    /// The agents whose results agreed on this output, first to come first
    /// (more than one: the result was verified).
    pub(super) agreed_by: Vec<String>,
    /// What the result was computed from (see [`inputs_key`]): results
    /// agree only when they did the same work.
    pub(super) inputs: u64,
    /// Taken from the task cache, not from an attempt of this job.
    pub(super) cached: bool,
}

/// One result of a task from one agent: a vote on its output.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Vote {
    pub(super) result: Done,
    /// False once its agent was outvoted on some task of the job: a
    /// lying agent's results tip no vote, but stay on record.
    pub(super) counts: bool,
}

impl Vote {
    /// Whether two results are of the same work and say the same.
    pub(super) fn agrees(&self, other: &Done) -> bool {
        self.result.inputs == other.inputs && self.result.output.cids == other.output.cids
    }
}

/// A key for what a task attempt works on: 0 for a map (its split is
/// fixed), a hash of the input CIDs for a reduce (a map run again after a
/// lost output could, with code that is not deterministic, give new ones).
pub(super) fn inputs_key(kind: &TaskKind) -> u64 {
    use std::hash::{Hash, Hasher};
    match kind {
        TaskKind::Map { .. } | TaskKind::MapFiles { .. } => 0,
        TaskKind::Reduce { inputs, .. } => {
            // SipHash with fixed keys: the same in every run.
            let mut h = std::hash::DefaultHasher::new();
            inputs.hash(&mut h);
            h.finish()
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct TaskEntry {
    pub(super) id: String,
    /// For maps: the map kind. Reduces build theirs at assignment.
    pub(super) kind: TaskKind,
    pub(super) attempts_made: u32,
    pub(super) failures: u32,
    pub(super) running: Vec<Attempt>,
    /// The agreed result, once `need` results from different agents agree.
    pub(super) done: Option<Done>,
    /// Agreeing results from different agents the task needs (1: the first
    /// result counts; see `JobPlan::verify`).
    pub(super) need: u32,
    /// The results so far, one per agent, in the order they came.
    pub(super) votes: Vec<Vote>,
    /// Agents on which an attempt failed; tried last.
    pub(super) failed_on: Vec<String>,
    /// Attempts given up on because their agent looked lost: one that
    /// finishes after all still counts while the task has no result.
    pub(super) dropped: Vec<Attempt>,
    /// The error of the last failed attempt, to tell the user once, not
    /// once per attempt, when every attempt fails the same way.
    pub(super) last_error: Option<String>,
    /// Attempts that failed because their agent's own IPFS node was down.
    /// Up to `max_attempts` are not counted as failures; past that they are
    /// (a task that keeps taking nodes down must not run forever).
    pub(super) node_downs: u32,
    /// Times its output (a part) could not be fetched (`parts.rs`).
    pub(super) parts_lost: u32,
}

impl TaskEntry {
    pub(super) fn new(id: String, kind: TaskKind, need: u32) -> Self {
        TaskEntry {
            id,
            kind,
            attempts_made: 0,
            failures: 0,
            running: Vec::new(),
            done: None,
            need: need.max(1),
            votes: Vec::new(),
            failed_on: Vec::new(),
            dropped: Vec::new(),
            last_error: None,
            node_downs: 0,
            parts_lost: 0,
        }
    }
    /// Whether it needs another attempt started: fewer are running than
    /// results are missing.
    pub(super) fn pending(&self) -> bool {
        (self.running.len() as u32) < self.missing()
    }

    /// The results that count, grouped by what they say: each group's
    /// votes (indices into `votes`), largest group first, then the group
    /// whose first result came first.
    pub(super) fn groups(&self) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, v) in self.votes.iter().enumerate().filter(|(_, v)| v.counts) {
            match groups.iter_mut().find(|g| self.votes[g[0]].agrees(&v.result)) {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
        groups.sort_by_key(|g| (std::cmp::Reverse(g.len()), g[0]));
        groups
    }

    /// More agreeing results it needs (0 once done).
    pub(super) fn missing(&self) -> u32 {
        if self.done.is_some() {
            return 0;
        }
        let best = self.groups().first().map_or(0, Vec::len) as u32;
        self.need.saturating_sub(best)
    }

    /// The results that count.
    pub(super) fn counted(&self) -> u32 {
        self.votes.iter().filter(|v| v.counts).count() as u32
    }

    /// Whether `agent` returned a result for it (it gets no other attempt).
    pub(super) fn voted(&self, agent: &str) -> bool {
        self.votes.iter().any(|v| v.result.agent == agent)
    }

    /// Agents that returned a result for it, then those running it: none
    /// of them may get another attempt of it.
    pub(super) fn busy_agents(&self) -> (Vec<String>, Vec<String>) {
        let voted = self.votes.iter().map(|v| v.result.agent.clone()).collect();
        let running = self.running.iter().map(|a| a.agent.clone()).collect();
        (voted, running)
    }
}

/// The job's two task lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Map,
    Reduce,
}

/// One task of the table: its list and its place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TaskRef {
    pub(super) stage: Stage,
    pub(super) idx: usize,
}

/// Every task of the job: the maps (one per split), then the reduces (one
/// per partition), each list in id order.
#[derive(Debug, Clone)]
pub(super) struct Tasks {
    pub(super) maps: Vec<TaskEntry>,
    pub(super) reduces: Vec<TaskEntry>,
}

impl Tasks {
    /// The tasks of one stage.
    pub(super) fn of(&self, stage: Stage) -> &[TaskEntry] {
        match stage {
            Stage::Map => &self.maps,
            Stage::Reduce => &self.reduces,
        }
    }

    pub(super) fn get(&self, r: TaskRef) -> &TaskEntry {
        &self.of(r.stage)[r.idx]
    }

    pub(super) fn get_mut(&mut self, r: TaskRef) -> &mut TaskEntry {
        match r.stage {
            Stage::Map => &mut self.maps[r.idx],
            Stage::Reduce => &mut self.reduces[r.idx],
        }
    }

    /// The task with this id.
    pub(super) fn find(&self, task: &str) -> Option<TaskRef> {
        [Stage::Map, Stage::Reduce].into_iter().find_map(|stage| {
            let idx = self.of(stage).iter().position(|t| t.id == task)?;
            Some(TaskRef { stage, idx })
        })
    }

    /// Every task's place, maps then reduces.
    pub(super) fn refs(&self) -> Vec<(Stage, usize)> {
        let maps = (0..self.maps.len()).map(|i| (Stage::Map, i));
        maps.chain((0..self.reduces.len()).map(|i| (Stage::Reduce, i))).collect()
    }

    /// Every task, maps then reduces.
    pub(super) fn all(&self) -> impl Iterator<Item = &TaskEntry> {
        self.maps.iter().chain(self.reduces.iter())
    }

    pub(super) fn all_mut(&mut self) -> impl Iterator<Item = &mut TaskEntry> {
        self.maps.iter_mut().chain(self.reduces.iter_mut())
    }

    /// Maps whose outputs include any of `cids` lose their result and run
    /// again; a verified one needs all its agreeing results again (the
    /// agents that returned it cannot serve it: it is lost).
    pub(super) fn rerun_maps_of(&mut self, cids: &[String]) {
        for m in self.maps.iter_mut() {
            let lost = m.done.as_ref().is_some_and(|d| d.output.cids.iter().any(|c| cids.contains(c)));
            if lost {
                m.done = None;
                m.votes.clear();
            }
        }
    }
}
