//! The result's parts as this machine fetches them while the job runs
//! (`run/early.rs`). A job that holds its parts is done only once each one
//! is here: a part that cannot be fetched, or that only a lost agent's node
//! held, makes its task run again (and, through the reducer's lost
//! inputs, the maps it needs) instead of failing the job at the end.

use super::task::TaskEntry;
use super::{Action, Actions, Controller};

/// Which attempt's output a fetch was of: a part made again is another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRef {
    pub part: usize,
    pub cid: String,
    pub attempt: u32,
}

impl Controller {
    /// The job is done only once every part is fetched
    /// ([`Controller::part_fetched`]), not when its last task is.
    pub fn hold_parts(&mut self) {
        self.holds_parts = true;
    }

    /// The tasks whose outputs are the parts: the reduces, or a map-only job's maps.
    pub(super) fn part_tasks(&self) -> &[TaskEntry] {
        if self.plan.reducers == 0 { &self.tasks.maps } else { &self.tasks.reduces }
    }

    fn part_tasks_mut(&mut self) -> &mut [TaskEntry] {
        if self.plan.reducers == 0 { &mut self.tasks.maps } else { &mut self.tasks.reduces }
    }

    /// The parts made so far, each with the attempt that made it.
    pub fn parts_done(&self) -> Vec<PartRef> {
        let done = self.part_tasks().iter().enumerate().filter_map(|(part, t)| {
            let d = t.done.as_ref()?;
            Some(PartRef { part, cid: d.output.cids.first()?.clone(), attempt: d.attempt })
        });
        done.collect()
    }

    /// Whether `r` is the part its task has now.
    fn is_current(&self, r: &PartRef) -> bool {
        self.parts_done().contains(r)
    }

    /// Whether every part is here (always, for a job that does not hold them).
    pub(super) fn parts_held(&self) -> bool {
        !self.holds_parts || self.parts_done().iter().all(|r| self.fetched.contains(r))
    }

    /// Part `r` is on this machine.
    pub fn part_fetched(&mut self, r: PartRef) -> Actions {
        let mut actions = Vec::new();
        if self.is_current(&r) && !self.fetched.contains(&r) {
            self.fetched.push(r);
            self.update_phase(&mut actions);
        }
        actions
    }

    /// Part `r` could not be fetched (`error` says why): its task runs
    /// again, not counted as a failure, up to `max_attempts` times; past
    /// that the job fails with the error.
    pub fn part_lost(&mut self, r: PartRef, error: &str, now_ms: u64) -> Actions {
        let mut actions = Vec::new();
        if self.over() || !self.is_current(&r) {
            return actions;
        }
        let max = self.plan.max_attempts;
        let task = &mut self.part_tasks_mut()[r.part];
        task.parts_lost += 1;
        let agent = task.done.as_ref().map(|d| d.agent.clone()).unwrap_or_default();
        if task.parts_lost > max {
            let message = format!(
                "part {} ({}) could not be fetched from agent {agent}'s node, {max} times over: {error}",
                r.part, r.cid
            );
            return self.fail(message, String::new());
        }
        let id = task.id.clone();
        reset(task, &agent);
        actions.push(Action::Warn {
            message: format!(
                "part {} ({}) could not be fetched from agent {agent}'s node ({error}); {id} runs again (not counted as a failure)",
                r.part, r.cid
            ),
        });
        self.update_phase(&mut actions);
        self.schedule(now_ms, &mut actions);
        actions
    }

    /// With `agent` gone or its node down, the parts not fetched yet that
    /// only its node held are lost: their tasks run again now. Returns
    /// their names.
    pub(super) fn lose_unfetched_parts_of(&mut self, agent: &str) -> Vec<String> {
        if !self.holds_parts || self.over() {
            return Vec::new();
        }
        let lost: Vec<usize> = self
            .parts_done()
            .into_iter()
            .filter(|r| !self.fetched.contains(r))
            .map(|r| r.part)
            .filter(|&p| {
                let d = self.part_tasks()[p].done.as_ref().expect("a part made");
                !d.cached && d.agreed_by.iter().all(|a| a == agent)
            })
            .collect();
        let mut names = Vec::new();
        for p in lost {
            let task = &mut self.part_tasks_mut()[p];
            names.push(task.id.clone());
            reset(task, agent);
        }
        names
    }
}

/// A task whose output is lost: it needs all its results again, from
/// another agent than `agent` first.
fn reset(task: &mut TaskEntry, agent: &str) {
    task.done = None;
    task.votes.clear();
    task.failed_on.push(agent.to_string());
}
