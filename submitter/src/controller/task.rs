//! The task table: one entry per map and reduce task, its running,
//! dropped and finished attempts, and the lookup by task id (`TaskRef`
//! names a task in either list).

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
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Done {
    pub(super) agent: String,
    pub(super) attempt: u32,
    pub(super) speculative: bool,
    pub(super) elapsed_ms: u64,
    pub(super) output: TaskOutput,
}

#[derive(Debug, Clone)]
pub(super) struct TaskEntry {
    pub(super) id: String,
    /// For maps: the map kind. Reduces build theirs at assignment.
    pub(super) kind: TaskKind,
    pub(super) attempts_made: u32,
    pub(super) failures: u32,
    pub(super) running: Vec<Attempt>,
    pub(super) done: Option<Done>,
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
}

impl TaskEntry {
    pub(super) fn new(id: String, kind: TaskKind) -> Self {
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
    pub(super) fn pending(&self) -> bool {
        self.done.is_none() && self.running.is_empty()
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

    /// Every task, maps then reduces.
    pub(super) fn all(&self) -> impl Iterator<Item = &TaskEntry> {
        self.maps.iter().chain(self.reduces.iter())
    }

    pub(super) fn all_mut(&mut self) -> impl Iterator<Item = &mut TaskEntry> {
        self.maps.iter_mut().chain(self.reduces.iter_mut())
    }

    /// Maps whose outputs include any of `cids` lose their result and run again.
    pub(super) fn rerun_maps_of(&mut self, cids: &[String]) {
        for m in self.maps.iter_mut() {
            let lost = m.done.as_ref().is_some_and(|d| d.output.cids.iter().any(|c| cids.contains(c)));
            if lost {
                m.done = None;
            }
        }
    }
}
