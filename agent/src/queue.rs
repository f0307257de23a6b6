//! The agent's task queue: a FIFO per job, served round-robin across jobs so
//! that one job's long queue never starves another's (multi-master), and
//! duplicate assignments (QoS 1 delivers twice) are recognised.

use std::collections::{BTreeMap, HashSet, VecDeque};

use ipdc_common::protocol::Task;

/// Identifies one attempt of one task of one job.
pub type AttemptKey = (String, String, u32);

pub fn key(task: &Task) -> AttemptKey {
    (task.job.clone(), task.task.clone(), task.attempt)
}

#[derive(Default)]
pub struct TaskQueue {
    jobs: BTreeMap<String, VecDeque<Task>>,
    /// The job served last, so the next pick starts after it.
    last_job: Option<String>,
    /// Every attempt seen (queued, running or finished), to drop duplicates.
    seen: HashSet<AttemptKey>,
}

impl TaskQueue {
    /// Queues a task; false if this attempt was seen before.
    pub fn push(&mut self, task: Task) -> bool {
        if !self.seen.insert(key(&task)) {
            return false;
        }
        self.jobs.entry(task.job.clone()).or_default().push_back(task);
        true
    }

    /// The next task, taking jobs in turn.
    pub fn pop(&mut self) -> Option<Task> {
        let next_job = {
            let after = self.last_job.as_deref();
            let later = after.and_then(|a| {
                self.jobs.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)).next()
            });
            later.or_else(|| self.jobs.iter().next()).map(|(j, _)| j.clone())
        }?;
        let q = self.jobs.get_mut(&next_job)?;
        let task = q.pop_front();
        if q.is_empty() {
            self.jobs.remove(&next_job);
        }
        self.last_job = Some(next_job);
        task
    }

    /// Removes a queued attempt; true if it was queued.
    pub fn cancel(&mut self, job: &str, task: &str, attempt: u32) -> bool {
        let Some(q) = self.jobs.get_mut(job) else { return false };
        let before = q.len();
        q.retain(|t| !(t.task == task && t.attempt == attempt));
        let removed = q.len() != before;
        if q.is_empty() {
            self.jobs.remove(job);
        }
        removed
    }

    /// Drops every queued task of a job.
    pub fn end_job(&mut self, job: &str) {
        self.jobs.remove(job);
        self.seen.retain(|(j, _, _)| j != job);
    }

    /// The queued attempts of a job.
    pub fn queued_of(&self, job: &str) -> Vec<AttemptKey> {
        self.jobs.get(job).map(|q| q.iter().map(key).collect()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.jobs.values().map(|q| q.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipdc_common::protocol::{CodeSpec, TaskKind};

    fn t(job: &str, task: &str, attempt: u32) -> Task {
        Task {
            job: job.into(),
            task: task.into(),
            attempt,
            reducers: 1,
            code: CodeSpec {
                map_cid: String::new(),
                reduce_cid: String::new(),
                combiner: false,
                force_native: None,
                native_fallback: None,
                limits: Default::default(),
                files: Default::default(),
            },
            memory_mb: 1,
            kind: TaskKind::Reduce { partition: 0, inputs: vec![] },
        }
    }

    #[test]
    fn jobs_take_turns() {
        let mut q = TaskQueue::default();
        for i in 0..3 {
            q.push(t("a", &format!("m{i}"), 1));
        }
        q.push(t("b", "m0", 1));
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|t| format!("{}{}", t.job, t.task)).collect();
        assert_eq!(order, ["am0", "bm0", "am1", "am2"]);
    }

    #[test]
    fn duplicate_assignments_are_dropped_but_new_attempts_are_not() {
        let mut q = TaskQueue::default();
        assert!(q.push(t("a", "m0", 1)));
        assert!(!q.push(t("a", "m0", 1)));
        q.pop();
        assert!(!q.push(t("a", "m0", 1)), "a running or finished attempt is still a duplicate");
        assert!(q.push(t("a", "m0", 2)));
    }

    #[test]
    fn cancel_and_end_job_remove_queued_tasks() {
        let mut q = TaskQueue::default();
        q.push(t("a", "m0", 1));
        q.push(t("a", "m1", 1));
        q.push(t("b", "m0", 1));
        assert!(q.cancel("a", "m1", 1));
        assert!(!q.cancel("a", "m1", 1));
        q.end_job("b");
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop().unwrap().task, "m0");
        assert!(q.is_empty());
    }
}
