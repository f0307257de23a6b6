//! The job controller as a pure state machine: task states, assignment to
//! agent slots, retries and the map→reduce phase change. It takes events and
//! the current time and returns actions; it does no I/O and reads no clock,
//! so unit tests drive every race directly. `driver.rs` does the I/O.
//!
//! Invariants:
//! - a task is Pending, Running (one attempt, on one agent) or Done;
//! - only an event carrying a task's current attempt changes it, so late and
//!   duplicated events (QoS 1 delivers twice) are ignored;
//! - a task's result is taken once; reducers start when every map is Done.

use std::collections::BTreeMap;

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
    /// Attempts per task before the job fails (Hadoop's default is 4).
    pub max_attempts: u32,
    /// An assignment not accepted within this long is given to another agent.
    pub accept_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Map,
    Reduce,
    Done,
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Pending,
    Running { agent: String, attempt: u32, since_ms: u64, accepted: bool },
    Done { agent: String, attempt: u32, output: TaskOutput },
}

#[derive(Debug, Clone)]
struct TaskEntry {
    id: String,
    kind: TaskKind,
    attempts: u32,
    state: State,
    /// Agents on which an attempt failed; tried last.
    failed_on: Vec<String>,
}

#[derive(Debug, Clone)]
struct AgentSlots {
    slots: u32,
    running: u32,
    lost: bool,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Assign {
        agent: String,
        task: Task,
    },
    Cancel {
        agent: String,
        task: String,
        attempt: u32,
    },
    /// Every reducer is done: fetch these parts (in partition order).
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
    pub executor: String,
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
}

impl Controller {
    /// `agents`: the picked agents, best first, with their slot counts.
    pub fn new(plan: JobPlan, agents: &[(String, u32)]) -> Self {
        let maps = plan
            .splits
            .iter()
            .enumerate()
            .map(|(i, &(start, end))| TaskEntry {
                id: format!("m-{i:05}"),
                kind: TaskKind::Map {
                    input_cid: plan.input_cid.clone(),
                    input_size: plan.input_size,
                    split: i as u32,
                    start,
                    end,
                },
                attempts: 0,
                state: State::Pending,
                failed_on: Vec::new(),
            })
            .collect();
        Controller {
            phase: Phase::Map,
            maps,
            reduces: Vec::new(),
            agents: agents
                .iter()
                .map(|(a, s)| (a.clone(), AgentSlots { slots: (*s).max(1), running: 0, lost: false }))
                .collect(),
            rank: agents.iter().map(|(a, _)| a.clone()).collect(),
            plan,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// First assignments. A job with no map tasks (empty input) goes straight to reduce.
    pub fn start(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.maps.is_empty() {
            self.begin_reduce();
        }
        self.schedule(now_ms, &mut actions);
        actions
    }

    /// Handles an agent's report about a task attempt.
    pub fn on_event(&mut self, ev: &TaskEvent, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if ev.job != self.plan.job || matches!(self.phase, Phase::Done | Phase::Failed) {
            return actions;
        }
        let Some(idx) = self.find(&ev.task) else { return actions };
        let entry = self.entry_mut(idx);
        let State::Running { agent, attempt, accepted, .. } = &mut entry.state else {
            return actions; // Pending or Done: a late or duplicated event
        };
        if *attempt != ev.attempt || *agent != ev.agent {
            return actions; // an older attempt
        }
        match &ev.kind {
            EventKind::Accepted => *accepted = true,
            EventKind::Done { output } => {
                let (agent, attempt) = (agent.clone(), *attempt);
                entry.state = State::Done { agent: agent.clone(), attempt, output: output.clone() };
                self.release(&agent);
                if self.phase == Phase::Map && self.maps.iter().all(|t| matches!(t.state, State::Done { .. }))
                {
                    self.begin_reduce();
                }
                if self.phase == Phase::Reduce
                    && self.reduces.iter().all(|t| matches!(t.state, State::Done { .. }))
                {
                    self.phase = Phase::Done;
                    actions.push(Action::Finished);
                    return actions;
                }
            }
            EventKind::Failed { error, detail } => {
                let agent = agent.clone();
                entry.failed_on.push(agent.clone());
                entry.state = State::Pending;
                let (id, attempts) = (entry.id.clone(), entry.attempts);
                self.release(&agent);
                if attempts >= self.plan.max_attempts {
                    self.phase = Phase::Failed;
                    actions.push(Action::Failed {
                        message: format!("task {id} failed {attempts} times; last on agent {agent}: {error}"),
                        detail: detail.clone(),
                    });
                    return actions;
                }
            }
        }
        self.schedule(now_ms, &mut actions);
        actions
    }

    /// An agent went offline: its running tasks go to others. Its finished map
    /// outputs stay usable while the store still serves them.
    pub fn on_agent_lost(&mut self, agent: &str, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(slots) = self.agents.get_mut(agent) else { return actions };
        if slots.lost || matches!(self.phase, Phase::Done | Phase::Failed) {
            return actions;
        }
        slots.lost = true;
        slots.running = 0;
        for t in self.maps.iter_mut().chain(self.reduces.iter_mut()) {
            if matches!(&t.state, State::Running { agent: a, .. } if a == agent) {
                t.state = State::Pending;
            }
        }
        if self.agents.values().all(|s| s.lost) {
            self.phase = Phase::Failed;
            actions.push(Action::Failed {
                message: "every agent of this job went offline".into(),
                detail: String::new(),
            });
            return actions;
        }
        self.schedule(now_ms, &mut actions);
        actions
    }

    /// Time passes: assignments never accepted go to another agent.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if matches!(self.phase, Phase::Done | Phase::Failed) {
            return actions;
        }
        let timeout = self.plan.accept_timeout_ms;
        let mut silent = Vec::new();
        for t in self.maps.iter_mut().chain(self.reduces.iter_mut()) {
            if let State::Running { agent, attempt, since_ms, accepted: false } = &t.state
                && now_ms.saturating_sub(*since_ms) >= timeout
            {
                actions.push(Action::Cancel { agent: agent.clone(), task: t.id.clone(), attempt: *attempt });
                silent.push(agent.clone());
                t.failed_on.push(agent.clone());
                t.state = State::Pending;
            }
        }
        for agent in &silent {
            // An agent that does not answer gets no more work from this job.
            if let Some(a) = self.agents.get_mut(agent) {
                a.lost = true;
                a.running = 0;
            }
        }
        if !silent.is_empty() && self.agents.values().all(|s| s.lost) {
            self.phase = Phase::Failed;
            actions.push(Action::Failed {
                message: format!(
                    "no agent answered an assignment within {} s (silent: {}); check that the agents are running and reach the broker",
                    timeout / 1000,
                    silent.join(", ")
                ),
                detail: String::new(),
            });
            return actions;
        }
        self.schedule(now_ms, &mut actions);
        actions
    }

    /// Part CIDs in partition order, once the job is Done.
    pub fn part_cids(&self) -> Vec<(String, u64)> {
        self.reduces
            .iter()
            .filter_map(|t| match &t.state {
                State::Done { output, .. } => Some((
                    output.cids.first().cloned().unwrap_or_default(),
                    output.sizes.first().copied().unwrap_or(0),
                )),
                _ => None,
            })
            .collect()
    }

    /// (maps done, maps total, reduces done, reduces total, input bytes read).
    pub fn progress(&self) -> Progress {
        let done = |ts: &[TaskEntry]| ts.iter().filter(|t| matches!(t.state, State::Done { .. })).count();
        let bytes_read = self
            .maps
            .iter()
            .map(|t| match &t.state {
                State::Done { output, .. } => output.bytes_read,
                _ => 0,
            })
            .sum();
        Progress {
            maps_done: done(&self.maps),
            maps: self.maps.len(),
            reduces_done: done(&self.reduces),
            reduces: self.plan.reducers as usize,
            bytes_read,
        }
    }

    /// Every finished task, maps then reduces.
    pub fn records(&self) -> Vec<TaskRecord> {
        self.maps
            .iter()
            .chain(self.reduces.iter())
            .filter_map(|t| match &t.state {
                State::Done { agent, attempt, output } => Some(TaskRecord {
                    task: t.id.clone(),
                    agent: agent.clone(),
                    attempt: *attempt,
                    executor: output.executor.clone(),
                    elapsed_ms: output.elapsed_ms,
                    bytes_read: output.bytes_read,
                    output_bytes: output.sizes.iter().sum(),
                    spills: output.spills,
                    stats: output.stats,
                }),
                _ => None,
            })
            .collect()
    }

    fn find(&self, task: &str) -> Option<usize> {
        if let Some(i) = self.maps.iter().position(|t| t.id == task) {
            return Some(i);
        }
        self.reduces.iter().position(|t| t.id == task).map(|i| i + self.maps.len())
    }

    fn entry_mut(&mut self, idx: usize) -> &mut TaskEntry {
        if idx < self.maps.len() { &mut self.maps[idx] } else { &mut self.reduces[idx - self.maps.len()] }
    }

    fn release(&mut self, agent: &str) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.running = a.running.saturating_sub(1);
        }
    }

    fn begin_reduce(&mut self) {
        self.phase = Phase::Reduce;
        let r = self.plan.reducers;
        self.reduces = (0..r)
            .map(|p| {
                // Partition p of every map output; empty partitions need no fetch.
                let inputs = self
                    .maps
                    .iter()
                    .filter_map(|m| match &m.state {
                        State::Done { output, .. } => {
                            let size = output.sizes.get(p as usize).copied().unwrap_or(0);
                            (size > 0).then(|| output.cids[p as usize].clone())
                        }
                        _ => None,
                    })
                    .collect();
                TaskEntry {
                    id: format!("r-{p:05}"),
                    kind: TaskKind::Reduce { partition: p, inputs },
                    attempts: 0,
                    state: State::Pending,
                    failed_on: Vec::new(),
                }
            })
            .collect();
    }

    /// Hands pending tasks of the current phase to free slots: the agent with
    /// the most free slots first (ties: better rank), avoiding agents on which
    /// the task already failed when another can take it.
    fn schedule(&mut self, now_ms: u64, actions: &mut Vec<Action>) {
        let tasks = match self.phase {
            Phase::Map => &mut self.maps,
            Phase::Reduce => &mut self.reduces,
            _ => return,
        };
        for t in tasks.iter_mut().filter(|t| t.state == State::Pending) {
            let free = |a: &AgentSlots| if a.lost { 0 } else { a.slots.saturating_sub(a.running) };
            let best = self
                .rank
                .iter()
                .filter(|a| free(&self.agents[*a]) > 0)
                .max_by_key(|a| {
                    let failed = t.failed_on.iter().filter(|f| f == a).count();
                    let pos = self.rank.iter().position(|r| r == *a).unwrap_or(0);
                    (std::cmp::Reverse(failed), free(&self.agents[*a]), std::cmp::Reverse(pos))
                })
                .cloned();
            let Some(agent) = best else { break };
            self.agents.get_mut(&agent).expect("ranked agents exist").running += 1;
            t.attempts += 1;
            t.state = State::Running {
                agent: agent.clone(),
                attempt: t.attempts,
                since_ms: now_ms,
                accepted: false,
            };
            actions.push(Action::Assign {
                agent,
                task: Task {
                    job: self.plan.job.clone(),
                    task: t.id.clone(),
                    attempt: t.attempts,
                    reducers: self.plan.reducers,
                    code: self.plan.code.clone(),
                    memory_mb: self.plan.memory_mb,
                    kind: t.kind.clone(),
                },
            });
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
        JobPlan {
            job: "j".into(),
            input_cid: "in".into(),
            input_size: splits as u64 * 10,
            splits: (0..splits as u64).map(|i| (i * 10, i * 10 + 10)).collect(),
            reducers,
            code: CodeSpec {
                map_cid: "m".into(),
                reduce_cid: "r".into(),
                combiner: false,
                force_native: None,
                native_fallback: None,
            },
            memory_mb: 64,
            max_attempts: 4,
            accept_timeout_ms: 10_000,
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
                EventKind::Failed { error: "map() raised ValueError".into(), detail: "Traceback...".into() },
            )
        };
        let (a2, t2) = assigns(&c.on_event(&fail(&t1, &a1), 1)).remove(0);
        assert_ne!(a1, a2, "the retry goes to the other agent");
        assert_eq!(t2.attempt, 2);
        let (a3, t3) = assigns(&c.on_event(&fail(&t2, &a2), 2)).remove(0);
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
    fn an_unaccepted_assignment_moves_to_another_agent() {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1), ("b".into(), 1)]);
        let (a1, t1) = assigns(&c.start(0)).remove(0);
        assert!(c.tick(5_000).is_empty());
        let actions = c.tick(10_000);
        assert!(actions.contains(&Action::Cancel { agent: a1.clone(), task: t1.task.clone(), attempt: 1 }));
        let (a2, _) = assigns(&actions).remove(0);
        assert_ne!(a1, a2);
    }

    #[test]
    fn an_accepted_assignment_does_not_time_out() {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
        let (a1, t1) = assigns(&c.start(0)).remove(0);
        c.on_event(&ev(&t1, &a1, EventKind::Accepted), 1);
        assert!(c.tick(60_000).is_empty());
    }

    #[test]
    fn when_no_agent_answers_the_job_fails_with_a_message() {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
        c.start(0);
        let end = c.tick(10_000);
        assert!(
            matches!(&end[..], [Action::Cancel { .. }, Action::Failed { message, .. }] if message.contains("no agent answered"))
        );
    }

    #[test]
    fn a_lost_agents_running_tasks_go_to_the_others() {
        let mut c = Controller::new(plan(2, 1), &[("a".into(), 1), ("b".into(), 1)]);
        let first = assigns(&c.start(0));
        let lost = &first[0].0;
        let (d_agent, d_task) = &first[1];
        c.on_event(&done(d_task, d_agent, 1), 1);
        let again = assigns(&c.on_agent_lost(lost, 2));
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
