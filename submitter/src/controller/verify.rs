//! Verified results (`verify = N`, or a spot check): a task's result counts
//! only once `need` results from different agents agree on its output CIDs
//! (the record encoding is deterministic, so honest agents doing the same
//! work return the same CIDs). Results are votes, one per agent; a
//! disagreement runs the task on one more agent until some output has
//! `need` votes, at most `need + EXTRA_RESULTS` results; the agents that
//! disagreed with the winner are named and get no more of the job's tasks
//! (their other results stop counting), and in a spot check the tasks they
//! alone vouched for run again.

use std::collections::BTreeSet;

use ipdc_common::protocol::TaskOutput;

use super::task::{Attempt, Done, Stage, TaskRef, Vote, inputs_key};
use super::{Action, Actions, Controller};

/// Results a task may get beyond the `need` agreeing ones before it fails
/// (verify = 2: one lying agent needs one more result, two need two).
pub const EXTRA_RESULTS: u32 = 2;

/// How many agreeing results from different agents each task needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Verification {
    /// Every task needs this many (1: the first result counts, as without
    /// verification).
    Every(u32),
    /// A spot check of a `fraction` of the tasks: those named (picked by the
    /// submitter, see [`spot_check`]) need two, the others one.
    Spot { fraction: f64, tasks: BTreeSet<String> },
}

impl Verification {
    /// Agreeing results `task` needs.
    pub fn votes(&self, task: &str) -> u32 {
        match self {
            Verification::Every(n) => (*n).max(1),
            Verification::Spot { tasks, .. } => {
                if tasks.contains(task) {
                    2
                } else {
                    1
                }
            }
        }
    }

    /// Different agents a job needs at least.
    pub fn agents_needed(&self) -> u32 {
        match self {
            Verification::Every(n) => (*n).max(1),
            Verification::Spot { tasks, .. } => {
                if tasks.is_empty() {
                    1
                } else {
                    2
                }
            }
        }
    }

    /// The setting as the user wrote it, for messages.
    pub fn setting(&self) -> String {
        match self {
            Verification::Every(n) => format!("verify = {n}"),
            Verification::Spot { fraction, .. } => format!("verify = {fraction}"),
        }
    }
}

/// A map task's id.
pub fn map_id(split: usize) -> String {
    format!("m-{split:05}")
}

/// A reduce task's id.
pub fn reduce_id(partition: u32) -> String {
    format!("r-{partition:05}")
}

/// The tasks a spot check of `fraction` verifies: that share of the job's
/// `maps + reducers` tasks, rounded, at least one, chosen by `seed` (the
/// submitter draws it from the OS's random source, so agents cannot tell
/// which tasks will be checked; tests give a fixed one).
pub fn spot_check(maps: usize, reducers: u32, fraction: f64, seed: u64) -> BTreeSet<String> {
    let mut ids: Vec<String> = (0..maps).map(map_id).chain((0..reducers).map(reduce_id)).collect();
    let k = ((fraction * ids.len() as f64).round() as usize).clamp(1, ids.len().max(1)).min(ids.len());
    // A partial Fisher-Yates shuffle driven by SplitMix64.
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in 0..k {
        let j = i + (next() % (ids.len() - i) as u64) as usize;
        ids.swap(i, j);
    }
    ids.truncate(k);
    ids.into_iter().collect()
}

/// One result of a task, for the summary.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VoteRecord {
    pub agent: String,
    pub attempt: u32,
    pub cids: Vec<String>,
}

/// A task whose agents did not all return the same result, for the summary.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Disagreement {
    pub task: String,
    /// Every result it got, in the order they came.
    pub results: Vec<VoteRecord>,
    /// The output that won, and the agents that returned it.
    pub won: Vec<String>,
    pub agreed_by: Vec<String>,
    /// The agents whose results differed from it.
    pub outvoted: Vec<String>,
}

/// "a", "a and b", "a, b and c".
fn and_list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// "agent a" or "agents a and b".
fn agents(names: &[String]) -> String {
    let noun = if names.len() == 1 { "agent" } else { "agents" };
    format!("{noun} {}", and_list(names))
}

impl Controller {
    /// Whether any task needs more than one result.
    pub(super) fn verifying(&self) -> bool {
        self.plan.verify.agents_needed() > 1
    }

    /// Tasks whose result more than one agent returned.
    pub fn verified_tasks(&self) -> usize {
        self.tasks.all().filter(|t| t.done.as_ref().is_some_and(|d| d.agreed_by.len() > 1)).count()
    }

    /// Tasks whose agents returned different results, in the order they were settled.
    pub fn disagreements(&self) -> &[Disagreement] {
        &self.disagreements
    }

    /// An attempt's result (the attempt is no longer running, its slot is
    /// released): one vote; the task is done when `need` votes agree.
    pub(super) fn on_result(
        &mut self,
        r: TaskRef,
        att: Attempt,
        output: TaskOutput,
        now_ms: u64,
        actions: &mut Actions,
    ) {
        let entry = self.tasks.get_mut(r);
        if entry.done.is_some() || entry.voted(&att.agent) {
            // One agent, one vote: a second result of it (e.g. an attempt
            // given up on, then run again there) counts for nothing.
            return;
        }
        let id = entry.id.clone();
        // Any other attempt of it on the same agent could only vote twice.
        let (again, others): (Vec<Attempt>, Vec<Attempt>) =
            entry.running.drain(..).partition(|a| a.agent == att.agent);
        entry.running = others;
        let result = Done {
            agent: att.agent.clone(),
            attempt: att.attempt,
            speculative: att.speculative,
            elapsed_ms: now_ms.saturating_sub(att.since_ms),
            output,
            agreed_by: Vec::new(),
            inputs: inputs_key(&att.task.kind),
            cached: false,
        };
        let new_output = !entry.votes.iter().any(|v| v.counts && v.agrees(&result));
        let others_before: Vec<String> =
            entry.votes.iter().filter(|v| v.counts).map(|v| v.result.agent.clone()).collect();
        entry.votes.push(Vote { result, counts: true });
        for a in again {
            self.release(&a.agent);
            actions.push(Action::Cancel { agent: a.agent, task: id.clone(), attempt: a.attempt });
        }
        let entry = self.tasks.get(r);
        let groups = entry.groups();
        if groups.first().is_some_and(|g| g.len() as u32 >= entry.need) {
            let winners = groups[0].clone();
            self.settle(r, &winners, now_ms, actions);
        } else if new_output && !others_before.is_empty() {
            let mut all = others_before;
            all.push(att.agent.clone());
            actions.push(Action::Warn {
                message: format!(
                    "task {id}: {} returned different results; running it on another agent to settle which is right",
                    agents(&all)
                ),
            });
        }
        if self.verifying() {
            self.check_verifiable(actions);
        }
    }

    /// `winners` (indices into the task's votes) agree: the task is done
    /// with their output; its other attempts are cancelled; the agents whose
    /// results differ are named and get no more tasks.
    fn settle(&mut self, r: TaskRef, winners: &[usize], now_ms: u64, actions: &mut Actions) {
        let entry = self.tasks.get_mut(r);
        let id = entry.id.clone();
        let agreed_by: Vec<String> = winners.iter().map(|&i| entry.votes[i].result.agent.clone()).collect();
        let mut done = entry.votes[winners[0]].result.clone();
        done.agreed_by = agreed_by.clone();
        // Results of other work (a reduce's earlier inputs) are not a dissent.
        let dissent: Vec<&Vote> = entry
            .votes
            .iter()
            .filter(|v| v.result.inputs == done.inputs && v.result.output.cids != done.output.cids)
            .collect();
        let outvoted: Vec<String> = dissent.iter().map(|v| v.result.agent.clone()).collect();
        let still_trusted: Vec<String> =
            dissent.iter().filter(|v| v.counts).map(|v| v.result.agent.clone()).collect();
        if !dissent.is_empty() {
            self.disagreements.push(Disagreement {
                task: id.clone(),
                results: entry
                    .votes
                    .iter()
                    .map(|v| VoteRecord {
                        agent: v.result.agent.clone(),
                        attempt: v.result.attempt,
                        cids: v.result.output.cids.clone(),
                    })
                    .collect(),
                won: done.output.cids.clone(),
                agreed_by: agreed_by.clone(),
                outvoted,
            });
        }
        entry.done = Some(done);
        // The others are no longer needed.
        let losers: Vec<Attempt> = entry.running.drain(..).collect();
        for l in losers {
            self.release(&l.agent);
            actions.push(Action::Cancel { agent: l.agent, task: id.clone(), attempt: l.attempt });
        }
        for agent in still_trusted {
            actions.push(Action::Warn {
                message: format!(
                    "agent {agent} returned a different result for task {id} than {}; it gets no more tasks of this job",
                    agents(&agreed_by)
                ),
            });
            self.outvote(&agent, now_ms, actions);
        }
    }

    /// `agent` was outvoted: it gets no more tasks of this job, its running
    /// attempts are cancelled, its results stop counting, and the tasks only
    /// it vouched for (unchecked ones, in a spot check) run again — and
    /// with a map among them, every reduce, whose inputs it was.
    fn outvote(&mut self, agent: &str, now_ms: u64, actions: &mut Actions) {
        let Some(slots) = self.agents.get_mut(agent) else { return };
        slots.outvoted = true;
        slots.running = 0;
        let mut rerun = Vec::new();
        let mut map_rerun = false;
        for (stage, idx) in self.tasks.refs() {
            let t = self.tasks.get_mut(TaskRef { stage, idx });
            let (gone, kept): (Vec<Attempt>, Vec<Attempt>) =
                t.running.drain(..).partition(|a| a.agent == agent);
            t.running = kept;
            for a in gone {
                actions.push(Action::Cancel {
                    agent: agent.to_string(),
                    task: t.id.clone(),
                    attempt: a.attempt,
                });
            }
            t.dropped.retain(|a| a.agent != agent);
            for v in t.votes.iter_mut().filter(|v| v.result.agent == agent) {
                v.counts = false;
            }
            let unvouched = t.done.as_ref().is_some_and(|d| {
                !t.votes
                    .iter()
                    .any(|v| v.counts && v.result.inputs == d.inputs && v.result.output.cids == d.output.cids)
            });
            if unvouched {
                t.done = None;
                rerun.push(t.id.clone());
                map_rerun |= stage == Stage::Map;
            }
        }
        if map_rerun {
            // Their inputs may have been its lies: every reduce runs again.
            for idx in 0..self.tasks.reduces.len() {
                let t = &mut self.tasks.reduces[idx];
                let had = t.done.take().is_some() || !t.running.is_empty() || !t.votes.is_empty();
                t.votes.clear();
                let running: Vec<Attempt> = t.running.drain(..).collect();
                let id = t.id.clone();
                for a in running {
                    self.release(&a.agent);
                    actions.push(Action::Cancel { agent: a.agent, task: id.clone(), attempt: a.attempt });
                }
                if had && !rerun.contains(&id) {
                    rerun.push(id);
                }
            }
        }
        if !rerun.is_empty() {
            actions.push(Action::Warn {
                message: format!(
                    "the results agent {agent} alone returned can no longer be trusted: {}",
                    if rerun.len() == 1 {
                        format!("task {} runs again", rerun[0])
                    } else {
                        format!("tasks {} run again", rerun.join(", "))
                    }
                ),
            });
        }
        self.wait_if_too_few_usable(now_ms, actions);
    }

    /// Fails the job when a task can no longer get the agreeing results it
    /// needs: too many results disagreed already, or too few agents that
    /// have not returned one for it are left.
    pub(super) fn check_verifiable(&mut self, actions: &mut Actions) {
        if self.over() {
            return;
        }
        if let Some(message) = self.unverifiable() {
            let end = self.fail(message, String::new());
            actions.extend(end);
        }
    }

    /// Why some task can no longer get its agreeing results, if one cannot.
    fn unverifiable(&self) -> Option<String> {
        let eligible: Vec<&String> =
            self.agents.iter().filter(|(_, a)| a.eligible()).map(|(n, _)| n).collect();
        for t in self.tasks.all() {
            if t.done.is_some() || (t.need == 1 && t.votes.is_empty()) {
                continue;
            }
            let missing = t.missing();
            let bound = t.need + EXTRA_RESULTS;
            let left = eligible.iter().filter(|a| !t.voted(a)).count() as u32;
            let too_many = t.counted() + missing > bound;
            if !too_many && left >= missing {
                continue;
            }
            let said: Vec<String> = t
                .votes
                .iter()
                .map(|v| {
                    let outvoted = if v.counts { "" } else { " (outvoted on another task)" };
                    format!("{} returned {}{outvoted}", v.result.agent, v.result.output.cids.join(","))
                })
                .collect();
            let why = if too_many {
                format!("{} results disagreed (at most {bound} are run)", t.counted())
            } else if t.votes.is_empty() {
                format!("the job has only {} agent(s) it can still give tasks to", eligible.len())
            } else {
                "the results so far disagree and the job has no other agent it can give the task to"
                    .to_string()
            };
            let mut message = format!(
                "task {} cannot be verified: {} needs {} agreeing results from different agents, and {why}",
                t.id,
                self.plan.verify.setting(),
                t.need
            );
            if !said.is_empty() {
                message += &format!(": {}", said.join("; "));
            }
            return Some(message);
        }
        None
    }
}
