//! An agent's reports about a task attempt (accepted, done, failed): a
//! result is a vote (`verify.rs`; without verification the first one
//! wins), failures are counted or excused, lost map outputs send their
//! maps back.

use ipdc_common::protocol::{EventKind, TaskEvent};

use super::task::{Attempt, Stage};
use super::{Action, Actions, Controller};

impl Controller {
    /// Handles an agent's report about a task attempt.
    pub fn on_event(&mut self, ev: &TaskEvent, now_ms: u64) -> Actions {
        let mut actions = Vec::new();
        if ev.job != self.plan.job || self.over() {
            return actions;
        }
        let Some(r) = self.tasks.find(&ev.task) else { return actions };
        let outvoted = self.agents.get(&ev.agent).is_some_and(|a| a.outvoted);
        let entry = self.tasks.get_mut(r);
        let same = |a: &Attempt| a.attempt == ev.attempt && a.agent == ev.agent;
        let pos = match entry.running.iter().position(same) {
            Some(pos) => pos,
            None => {
                // A late or duplicated report, ignored, unless it is the
                // result of an attempt given up on (its agent looked lost,
                // e.g. through a broker restart) and the task still needs
                // one from that agent (and the agent was not outvoted).
                let late_result = matches!(ev.kind, EventKind::Done { .. })
                    && entry.done.is_none()
                    && !entry.voted(&ev.agent)
                    && !outvoted;
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
        if let EventKind::Progress { bytes_read, lines } = ev.kind {
            // It runs: as good as an acknowledgement, and how far it is.
            let a = &mut entry.running[pos];
            (a.accepted, a.unanswered, a.read) = (true, 0, (bytes_read, lines));
            return actions;
        }
        if matches!(ev.kind, EventKind::Failed { .. }) {
            self.timeline.failed(r, ev.attempt);
        }
        let node_down_excused = matches!(ev.kind, EventKind::Failed { node_down: true, .. }) && {
            entry.node_downs += 1;
            entry.node_downs <= self.plan.max_attempts
        };
        match &ev.kind {
            EventKind::Progress { .. } => {}
            EventKind::Accepted => {
                entry.running[pos].accepted = true;
                entry.running[pos].unanswered = 0;
            }
            EventKind::Done { output } => {
                // A vote: the task is done once enough agree (the first
                // result, without verification); the others are cancelled.
                let finished = entry.running.remove(pos);
                self.release(&finished.agent);
                self.on_result(r, finished, output.clone(), now_ms, &mut actions);
            }
            EventKind::Failed { error, .. } if node_down_excused => {
                // Not the task's fault: the agent's own IPFS node is down.
                let usable = self.agents.get(&ev.agent).is_some_and(|a| a.usable());
                if usable {
                    let why = format!("cannot use its IPFS node ({error})");
                    let mut actions = self.on_agent_lost(&ev.agent, &why, now_ms);
                    self.lose_outputs_of(&ev.agent, &why, now_ms, &mut actions);
                    return actions;
                }
                let dropped = entry.running.remove(pos);
                entry.dropped.push(dropped.clone());
                self.release(&dropped.agent);
            }
            EventKind::Failed { error, detail, lost_inputs, .. } => {
                let failed = entry.running.remove(pos);
                let agent = failed.agent.clone();
                self.release(&agent);
                if r.stage == Stage::Reduce && !lost_inputs.is_empty() {
                    // Not the reducer's fault: the maps whose outputs are gone run again.
                    self.tasks.rerun_maps_of(lost_inputs);
                } else {
                    let entry = self.tasks.get_mut(r);
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
        self.timeline.sync(&self.tasks, now_ms);
        actions
    }
}
