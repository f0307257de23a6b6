//! What time passing does: unacknowledged assignments are re-sent, then
//! given to another agent; quiet attempts are queried, then run again; the
//! wait for lost agents runs out; the submitter's own outage resets clocks.

use std::collections::BTreeSet;

use super::{AGENTS_BACK_MS, Action, Actions, Controller};

/// Unanswered queries after which an accepted attempt is taken as forgotten.
const QUERY_LIMIT: u32 = 3;

impl Controller {
    /// The submitter's own connection to the broker is back after an
    /// outage, during which it heard nothing (ticks were skipped): what the
    /// agents did not acknowledge or answer meanwhile is not their fault, so
    /// the clocks of those waits start again.
    pub fn on_reconnect(&mut self, now_ms: u64) {
        for t in self.tasks.all_mut() {
            for a in t.running.iter_mut() {
                if !a.accepted {
                    a.since_ms = now_ms;
                    a.last_sent_ms = 0; // sent again at the next tick
                }
                a.last_query_ms = now_ms;
                a.unanswered = 0;
            }
        }
        if self.short_since.is_some() {
            self.short_since = Some(now_ms);
        }
    }

    /// Time passes: re-send unacknowledged assignments, give up on silent
    /// agents, ask about quiet attempts, start backups for stragglers.
    pub fn tick(&mut self, now_ms: u64) -> Actions {
        let mut actions = Vec::new();
        if self.over() {
            return actions;
        }
        if self.short_since.is_some() && self.usable_agents() >= self.agents_needed() {
            self.short_since = None; // the tasks that needed more are done
        }
        if let Some(since) = self.short_since
            && now_ms.saturating_sub(since) >= AGENTS_BACK_MS
        {
            let (usable, needed) = (self.usable_agents(), self.agents_needed());
            let message = if usable == 0 {
                format!(
                    "no agent of this job could work for {} s (offline, its IPFS node did not answer, or low on disk)",
                    AGENTS_BACK_MS / 1000
                )
            } else {
                format!(
                    "{} needs {needed} agents for each task, and only {usable} of this job could work for {} s (the others offline, or their IPFS nodes did not answer)",
                    self.plan.verify.setting(),
                    AGENTS_BACK_MS / 1000
                )
            };
            return self.fail(message, String::new());
        }
        let p = &self.plan;
        let mut silent = BTreeSet::new();
        let mut query = BTreeSet::new();
        let mut forgotten = Vec::new();
        for t in self.tasks.all_mut() {
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
            if let Some(r) = self.tasks.find(&task) {
                self.tasks.get_mut(r).running.retain(|a| a.attempt != attempt);
                self.release(&agent);
                actions.push(Action::Warn {
                    message: format!("agent {agent} no longer knows {task} attempt {attempt} (restarted?); running it again"),
                });
                actions.push(Action::Cancel { agent, task, attempt });
            }
        }
        for agent in &silent {
            // An agent that does not acknowledge gets no more work from this job.
            for t in self.tasks.all() {
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
        if !silent.is_empty() && self.verifying() {
            self.check_verifiable(&mut actions);
            if self.over() {
                return actions;
            }
        }
        self.wait_if_too_few_usable(now_ms, &mut actions);
        self.schedule(now_ms, &mut actions);
        if self.plan.speculative {
            self.speculate(now_ms, &mut actions);
        }
        self.timeline.sync(&self.tasks, now_ms);
        actions
    }
}
