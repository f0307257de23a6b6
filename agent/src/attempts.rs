//! The agent's one table of task attempts, from assignment to the report
//! it keeps for re-sending: queued (a FIFO per job, jobs served in turn so
//! that one job's long queue never starves another's), running, stopping
//! (cancelled while running, until its process is gone), finished (its
//! final report kept for a controller that asks again), and forgotten (the
//! report dropped to bound memory, the attempt still known so that a
//! duplicate assignment is not run twice). Pure bookkeeping: no I/O.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ipdc_common::protocol::{EventKind, Task};

/// Identifies one attempt of one task of one job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    pub job: String,
    pub task: String,
    pub attempt: u32,
}

impl AttemptKey {
    pub fn of(task: &Task) -> Self {
        AttemptKey { job: task.job.clone(), task: task.task.clone(), attempt: task.attempt }
    }
}

impl std::fmt::Display for AttemptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} attempt {}", self.job, self.task, self.attempt)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Queued(Box<Task>),
    Running,
    /// Cancelled while running; its process is being killed. `job_ended`:
    /// its job is over, so nothing of it is kept once it has stopped.
    Stopping {
        job_ended: bool,
    },
    Finished(EventKind),
    Forgotten,
}

/// What [`Attempts::cancel`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    WasQueued,
    WasRunning,
}

/// Finished attempts whose reports are remembered for re-sending.
const FINISHED_MEMORY: usize = 4096;

#[derive(Debug, Default)]
pub struct Attempts {
    states: HashMap<AttemptKey, State>,
    /// Queued attempts in order, per job.
    queues: BTreeMap<String, VecDeque<AttemptKey>>,
    /// The job served last, so the next pick starts after it.
    last_job: Option<String>,
    /// Finished attempts in the order they finished, oldest first.
    finished: VecDeque<AttemptKey>,
}

impl Attempts {
    /// Queues an attempt; false if this attempt is known already (QoS 1
    /// delivers twice, and a controller re-sends unacknowledged assignments).
    pub fn push(&mut self, task: Task) -> bool {
        let key = AttemptKey::of(&task);
        if self.states.contains_key(&key) {
            return false;
        }
        self.queues.entry(key.job.clone()).or_default().push_back(key.clone());
        self.states.insert(key, State::Queued(Box::new(task)));
        true
    }

    pub fn state(&self, key: &AttemptKey) -> Option<&State> {
        self.states.get(key)
    }

    /// Attempts running now (not counting stopping ones).
    pub fn running(&self) -> usize {
        self.states.values().filter(|s| matches!(s, State::Running)).count()
    }

    /// Takes the next queued attempt, jobs in turn, and marks it running.
    pub fn start_next(&mut self) -> Option<Task> {
        let job = {
            let after = self.last_job.as_deref();
            let later = after.and_then(|a| {
                self.queues.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)).next()
            });
            later.or_else(|| self.queues.iter().next()).map(|(j, _)| j.clone())
        }?;
        let queue = self.queues.get_mut(&job)?;
        let key = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(&job);
        }
        self.last_job = Some(job);
        let key = key?;
        match self.states.insert(key, State::Running) {
            Some(State::Queued(task)) => Some(*task),
            other => unreachable!("a queued key is in state Queued, not {other:?}"),
        }
    }

    /// Cancels an attempt: a queued one is dropped (and stays known, so a
    /// late copy of its assignment does not queue it again), a running one
    /// becomes Stopping. None when it was neither.
    pub fn cancel(&mut self, key: &AttemptKey) -> Option<Cancelled> {
        let state = self.states.get_mut(key)?;
        match state {
            State::Queued(_) => {
                *state = State::Forgotten;
                self.unqueue(key);
                Some(Cancelled::WasQueued)
            }
            State::Running => {
                *state = State::Stopping { job_ended: false };
                Some(Cancelled::WasRunning)
            }
            _ => None,
        }
    }

    fn unqueue(&mut self, key: &AttemptKey) {
        if let Some(q) = self.queues.get_mut(&key.job) {
            q.retain(|k| k != key);
            if q.is_empty() {
                self.queues.remove(&key.job);
            }
        }
    }

    /// An attempt's task ended with this report. True when it was running;
    /// false (and the report dropped) when it had been cancelled meanwhile.
    pub fn finish(&mut self, key: &AttemptKey, report: EventKind) -> bool {
        match self.states.get_mut(key) {
            Some(state @ State::Running) => *state = State::Finished(report),
            Some(State::Stopping { job_ended: true }) => {
                self.states.remove(key);
                return false;
            }
            Some(state @ State::Stopping { job_ended: false }) => {
                *state = State::Forgotten;
                return false;
            }
            _ => return false,
        }
        self.finished.push_back(key.clone());
        while self.finished.len() > FINISHED_MEMORY {
            if let Some(old) = self.finished.pop_front()
                && let Some(s @ State::Finished(_)) = self.states.get_mut(&old)
            {
                *s = State::Forgotten;
            }
        }
        true
    }

    /// Forgets a job: its queued attempts are dropped and its running ones
    /// become Stopping (returned, to be cancelled); everything else of it goes.
    pub fn end_job(&mut self, job: &str) -> Vec<AttemptKey> {
        self.queues.remove(job);
        let mut stop = Vec::new();
        self.states.retain(|k, s| {
            if k.job != job {
                return true;
            }
            match s {
                State::Running => {
                    *s = State::Stopping { job_ended: true };
                    stop.push(k.clone());
                    true
                }
                State::Stopping { job_ended } => {
                    *job_ended = true;
                    true
                }
                _ => false,
            }
        });
        self.finished.retain(|k| k.job != job);
        stop.sort();
        stop
    }

    /// Whether the job has queued or running attempts here.
    pub fn holds(&self, job: &str) -> bool {
        self.queues.contains_key(job) || self.states.iter().any(|(k, s)| k.job == job && *s == State::Running)
    }

    /// Where each attempt of `job` stands, for a controller that asks:
    /// queued and running ones (as `None`) and finished ones with their report.
    pub fn of_job(&self, job: &str) -> Vec<(AttemptKey, Option<&EventKind>)> {
        let mut v: Vec<_> = self
            .states
            .iter()
            .filter(|(k, _)| k.job == job)
            .filter_map(|(k, s)| match s {
                State::Queued(_) | State::Running => Some((k.clone(), None)),
                State::Finished(report) => Some((k.clone(), Some(report))),
                State::Stopping { .. } | State::Forgotten => None,
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every running attempt (for shutdown).
    pub fn all_running(&self) -> Vec<AttemptKey> {
        self.states.iter().filter(|(_, s)| **s == State::Running).map(|(k, _)| k.clone()).collect()
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
                ..Default::default()
            },
            memory_mb: 1,
            kind: TaskKind::Reduce { partition: 0, inputs: vec![] },
        }
    }

    fn key(job: &str, task: &str, attempt: u32) -> AttemptKey {
        AttemptKey { job: job.into(), task: task.into(), attempt }
    }

    #[test]
    fn jobs_take_turns() {
        let mut a = Attempts::default();
        for i in 0..3 {
            a.push(t("a", &format!("m{i}"), 1));
        }
        a.push(t("b", "m0", 1));
        let order: Vec<_> =
            std::iter::from_fn(|| a.start_next()).map(|t| format!("{}{}", t.job, t.task)).collect();
        assert_eq!(order, ["am0", "bm0", "am1", "am2"]);
        assert_eq!(a.running(), 4);
    }

    #[test]
    fn duplicate_assignments_are_dropped_but_new_attempts_are_not() {
        let mut a = Attempts::default();
        assert!(a.push(t("a", "m0", 1)));
        assert!(!a.push(t("a", "m0", 1)));
        a.start_next();
        assert!(!a.push(t("a", "m0", 1)), "a running attempt is still a duplicate");
        assert!(a.finish(&key("a", "m0", 1), EventKind::Accepted));
        assert!(!a.push(t("a", "m0", 1)), "so is a finished one");
        assert!(a.push(t("a", "m0", 2)));
    }

    #[test]
    fn cancel_and_end_job_remove_queued_attempts_and_stop_running_ones() {
        let mut a = Attempts::default();
        a.push(t("a", "m0", 1));
        a.push(t("a", "m1", 1));
        a.push(t("b", "m0", 1));
        assert_eq!(a.cancel(&key("a", "m1", 1)), Some(Cancelled::WasQueued));
        assert_eq!(a.cancel(&key("a", "m1", 1)), None);
        assert_eq!(a.start_next().unwrap().task, "m0");
        assert_eq!(a.end_job("a"), vec![key("a", "m0", 1)]);
        assert_eq!(a.state(&key("a", "m0", 1)), Some(&State::Stopping { job_ended: true }));
        // A stopping attempt's late result is not kept, nor anything of its ended job.
        assert!(!a.finish(&key("a", "m0", 1), EventKind::Accepted));
        assert_eq!(a.state(&key("a", "m0", 1)), None);
        assert_eq!(a.start_next().unwrap().job, "b");
        assert_eq!(a.start_next(), None);
        assert!(a.push(t("a", "m0", 1)), "an ended job's attempts are forgotten");
    }

    #[test]
    fn finished_reports_are_bounded_but_their_attempts_stay_known() {
        let mut a = Attempts::default();
        for i in 0..FINISHED_MEMORY + 1 {
            a.push(t("a", &format!("m-{i:05}"), 1));
            a.start_next();
            a.finish(&key("a", &format!("m-{i:05}"), 1), EventKind::Accepted);
        }
        assert_eq!(a.state(&key("a", "m-00000", 1)), Some(&State::Forgotten));
        assert!(!a.push(t("a", "m-00000", 1)));
        assert_eq!(a.of_job("a").len(), FINISHED_MEMORY);
    }
}
